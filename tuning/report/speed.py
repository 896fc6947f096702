"""Views of a report's timings: the timed (model, runtime) series tables and plots show, and every model's
speed against the float model's."""

from __future__ import annotations

from dataclasses import dataclass

from tuning.config.enums import Runtime
from tuning.measure import benchmark
from tuning.measure.benchmark import Performance, Spread
from tuning.report.numbers import Report, Role


@dataclass(frozen=True)
class Series:
    """One timed (model, runtime) pair as tables and plots show it: plots colour it by model and draw
    it in a line style per runtime."""

    label: str
    model_index: int
    runtime_index: int
    performance: Performance


def measured_series(report: Report) -> list[Series]:
    """Every timed (model, runtime) pair, runtime by runtime, labelled ``int8`` when onnxruntime is the one
    configured runtime and ``int8 · openvino`` otherwise."""
    several = not report.onnxruntime_only
    return [
        Series(
            f"{result.entry.name} · {runtime.value}" if several else result.entry.name,
            model_index,
            runtime_index,
            performance,
        )
        for runtime_index, runtime in enumerate(report.measured_runtimes)
        for model_index, result in enumerate(report.models)
        if (performance := result.performance(runtime)) is not None
    ]


@dataclass(frozen=True)
class SpeedRatios:
    """One model's p50 latency and throughput against the float model's. Each ratio is the median of its
    per-round values (both ran interleaved in every round) with their range; None where either model was not
    timed (e.g. a runtime that cannot load it)."""

    latency_p50: Spread | None
    throughput: dict[int, Spread | None]  # by batch size


def ratios_vs_float(report: Report, runtime: Runtime, base_runtime: Runtime | None = None) -> dict[str, SpeedRatios]:
    """Every model on ``runtime`` against the float model on ``base_runtime`` (default: the same runtime), by
    model name; the float model itself is left out when both runtimes are the same."""
    base_runtime = runtime if base_runtime is None else base_runtime
    base = report.float_result.performance(base_runtime)
    ratios: dict[str, SpeedRatios] = {}
    for result in report.models:
        if result.entry.role is Role.FLOAT and runtime is base_runtime:
            continue
        perf = result.performance(runtime)
        if base is None or perf is None:
            sizes = benchmark.batch_sizes(report.config.benchmark)
            ratios[result.entry.name] = SpeedRatios(None, {b: None for b in sizes})
        else:
            ratios[result.entry.name] = SpeedRatios(
                perf.latency_ratio(base),
                {t.batch_size: perf.throughput_ratio(base, t.batch_size) for t in perf.throughput},
            )
    return ratios
