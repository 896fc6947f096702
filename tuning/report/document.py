"""report.json: every number of a report as the JSON document docs/report-schema.md describes."""

from __future__ import annotations

from typing import Any

from tuning.config.enums import Runtime
from tuning.config.schema import BenchmarkSection
from tuning.measure import benchmark
from tuning.measure.paired import TURN_IMAGES
from tuning.measure.runtimes import SessionSettings
from tuning.report.answer import report_answer
from tuning.report.numbers import Report, other_scale, package_version
from tuning.report.speed import ratios_vs_float

SCHEMA_VERSION = 2  # 2: performance per runtime (docs/report-schema.md, "Migrating from 1")


def json_document(report: Report) -> dict[str, Any]:
    """The content of report.json."""
    settings = report.config.benchmark
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_by": f"tuning {package_version()}",
        "created_utc": report.created_utc,
        "answer": report_answer(report).to_json(),
        "preprocessing": report.config.preprocessing,
        "other_pixel_scale": other_scale(report.config.dataset.pixel_scale).value,
        "evaluation": {
            "dataset": report.config.dataset.name,
            "split": report.config.evaluation.split.value,
            "images": report.evaluation_images,
            "class_names": list(report.class_names),
        },
        "benchmark": {
            "performance_measured": report.performance_measured,
            "runtimes": [
                {"runtime": runtime.value, "installed": runtime not in report.unavailable_runtimes,
                 "note": report.unavailable_runtimes.get(runtime)}
                for runtime in report.config.benchmark.runtimes
            ],  # fmt: skip
            "warmup": settings.warmup,
            "iterations": settings.iterations,
            "min_time_s": settings.min_time_s,
            "rounds": settings.rounds,
            "batch_sizes": list(benchmark.batch_sizes(settings)),
            "intra_op_threads": settings.intra_op_threads,
            "runs_at_batch": {
                str(b): dict(zip(("warmup", "timed"), benchmark.runs_at_batch(settings, b)))
                for b in timed_batch_sizes(settings)
            },
            "interleaving": (
                f"turns of >= {TURN_IMAGES} images of each model in consecutive calls, the first call of a turn untimed "
                "when the turn has several, fresh sessions per session set (round)"
            ),
            "throughput_statistic": "batch_size / median batch time",
            "ratio_statistic": (
                "median over session sets of the paired per-call ratios; *_rounds: that median with its "
                "order-statistic confidence interval (min, max; coverage) widened by the A/A pair's excursion"
            ),
            "session_options": SessionSettings.of(report.config).describe(),
        },
        "environment": {
            "cpu_model": report.environment.cpu_model,
            "cpu_flags": report.environment.cpu_flags,
            "cpu_count": report.environment.cpu_count,
            "usable_cpus": report.environment.usable_cpus,
            "system": report.environment.system,
            "machine": report.environment.machine,
            "versions": report.environment.versions,
        },
        "models": [result.to_json() for result in report.models],
        "ratios_vs_float": {runtime.value: _ratios_json(report, runtime) for runtime in report.measured_runtimes},
        "ratios_vs_onnxruntime_float": {
            runtime.value: _ratios_json(report, runtime, Runtime.ONNXRUNTIME) for runtime in report.measured_runtimes
        }
        if Runtime.ONNXRUNTIME in report.measured_runtimes
        else {},
        "flipped_images": {
            "model": report.int8_result.entry.name,
            "pixel_scale": report.config.dataset.pixel_scale.value,
            "images": [flip.to_json() for flip in report.flips],
        },
        "nncf_reference": None if report.nncf_reference is None else report.nncf_reference.to_json(),
    } | ({"tuning": report.tuning} if report.tuning is not None else {})


def _ratios_json(report: Report, runtime: Runtime, base_runtime: Runtime | None = None) -> dict[str, dict[str, Any]]:
    """``ratios_vs_float``: per model, each ratio's median (``latency_p50``, ``throughput``) and, as
    ``*_rounds``, that median with the range of the per-round values; null where not measured."""
    return {
        name: {
            "latency_p50": None if ratios.latency_p50 is None else ratios.latency_p50.value,
            "latency_p50_rounds": None if ratios.latency_p50 is None else ratios.latency_p50.to_json(),
            "throughput": {str(b): None if spread is None else spread.value for b, spread in ratios.throughput.items()},
            "throughput_rounds": {
                str(b): None if spread is None else spread.to_json() for b, spread in ratios.throughput.items()
            },
        }
        for name, ratios in ratios_vs_float(report, runtime, base_runtime).items()
    }


def timed_batch_sizes(settings: BenchmarkSection) -> list[int]:
    """Batch 1 for latency and the throughput batch sizes."""
    return sorted({1, *benchmark.batch_sizes(settings)})
