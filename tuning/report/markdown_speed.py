"""report.md's speed sections: runtimes side by side, ratios against fp32, performance, and the conditions
every figure was measured under."""

from __future__ import annotations

import json
from typing import Any

from tuning.config.enums import Runtime
from tuning.measure import benchmark
from tuning.measure.figures import count, count_range, error_pct, ratio, us, us_range
from tuning.measure.runtimes import SessionSettings, conditions_phrase
from tuning.report.markdown_table import markdown_table
from tuning.report.numbers import Report
from tuning.report.plots import CONFUSION_PLOT, FLIPS_PLOT, PLOT_TITLES, SPEEDUP_PLOT, plot_captions
from tuning.report.speed import measured_series, ratios_vs_float


def runtimes_table(report: Report) -> str:
    """Every model on every configured runtime side by side: accuracy on the whole split, how many
    predictions differ from onnxruntime's, and speed against fp32 on onnxruntime (same run, interleaved)."""
    largest = max(benchmark.batch_sizes(report.config.benchmark))
    ort = Runtime.ONNXRUNTIME
    base = report.float_result.performance(ort)
    rows = []
    # A runtime that is not installed has no row (a row of blanks per model made the table long and wide);
    # the line under the table names it and says how to install it.
    installed = [runtime for runtime in report.config.benchmark.runtimes if runtime not in report.unavailable_runtimes]
    for runtime in installed:
        for result in report.models:
            on = result.runtimes[runtime]
            if on.error is not None:
                rows.append([result.entry.name, runtime.value, "cannot load", "", "", "", "", "", ""])
                continue
            perf = on.performance
            timed = perf is not None
            rows.append(
                [
                    result.entry.name,
                    runtime.value,
                    _precision(on.conditions),
                    error_pct(on.top1_accuracy),
                    count(on.differing_from_onnxruntime),
                    us_range(perf.latency.p50_spread) if timed else "not measured",
                    ratio(perf.latency_ratio(base) if timed and base else None),
                    count_range(perf.throughput_at(largest).images_per_s_spread) if timed else "not measured",
                    ratio(perf.throughput_ratio(base, largest) if timed and base else None),
                ]
            )
    header = [
        "model", "runtime", "precision", "top-1 error", "predictions ≠ onnxruntime", "p50 (batch 1)",
        "p50 vs fp32 onnxruntime", f"img/s @ {largest}", "img/s vs fp32 onnxruntime",
    ]  # fmt: skip
    return markdown_table(header, rows, align="r")


def _precision(conditions: dict[str, Any]) -> str:
    """``fp32 graph`` on onnxruntime (it runs what the graph says); OpenVINO's inference precision read back."""
    if conditions["runtime"] == "onnxruntime":
        return "as in the graph"
    requested = "INFERENCE_PRECISION_HINT" in conditions["requested"]
    return f"{conditions['inference_precision']} ({'set' if requested else 'default'})"


def performance_section(report: Report, plots: list[str]) -> str:
    runtimes_section = _runtimes_section(report)
    if not report.performance_measured:
        return "\n\n".join(
            [*runtimes_section, "## Ratios against fp32\n\nPerformance was not measured (`--skip-performance`)."]
        )
    sizes = benchmark.batch_sizes(report.config.benchmark)
    several = not report.onnxruntime_only
    ratios = markdown_table(
        ["model", *(["runtime"] if several else []), "p50 latency ratio", *(f"throughput ratio @ {b}" for b in sizes)],
        [
            [
                name,
                *([runtime.value] if several else []),
                ratio(ratios.latency_p50),
                *(ratio(ratios.throughput[b]) for b in sizes),
            ]
            for runtime in report.measured_runtimes
            for name, ratios in ratios_vs_float(report, runtime).items()
        ],
        align="r",
    )
    measured = [(series.label, series.performance) for series in measured_series(report)]
    latency = markdown_table(
        ["model (batch 1)", "p50", "p90", "p99", "mean", "timed runs"],
        [
            [name, *(us(p.latency.percentile(q)) for q in (50, 90, 99)), us(p.latency.mean), count(p.latency.runs)]
            for name, p in measured
        ],
        align="r",
    )
    throughput = markdown_table(
        ["img/s", *(f"batch {b}" for b in sizes)],
        [[name, *(count(p.throughput_at(b).images_per_s) for b in sizes)] for name, p in measured],
        align="r",
    )
    captions = plot_captions(report)

    def figure(name: str) -> str:
        return "\n\n".join([f"![{PLOT_TITLES[name]}]({name})", *([captions[name]] if name in captions else [])])

    images = "\n\n".join(figure(name) for name in plots if name not in (SPEEDUP_PLOT, CONFUSION_PLOT, FLIPS_PLOT))
    return "\n\n".join(
        [
            *runtimes_section,
            "## Ratios against fp32 (same run, interleaved)",
            ratios,
            "Latency ratio below 1 and throughput ratio above 1 mean faster than fp32"
            + (" on the same runtime." if several else "."),
            *([figure(SPEEDUP_PLOT)] if SPEEDUP_PLOT in plots else []),
            "## Performance",
            latency,
            throughput,
            images,
        ]
    )


def _runtimes_section(report: Report) -> list[str]:
    """The side-by-side table, whenever a runtime other than onnxruntime is configured (even alone: it then
    holds the only accuracy measured on it)."""
    if report.onnxruntime_only:
        return []
    notes = [f"- {runtime.value}: not measured: {reason}" for runtime, reason in report.unavailable_runtimes.items()]
    notes += [
        f"- {result.entry.name} on {runtime.value}: {on.error}"
        for result in report.models
        for runtime, on in result.runtimes.items()
        if on.error is not None
    ]
    return [
        "## Runtimes side by side",
        runtimes_table(report),
        "Top-1 error on the whole split on each runtime; predictions ≠ onnxruntime: images on which the same "
        "model predicts another class than on onnxruntime. Speed against fp32 on onnxruntime, all interleaved in one "
        "run: median (min–max over the rounds). Precision: what OpenVINO computes in where the graph says fp32, read "
        "back from the compiled model (`default`: OpenVINO's choice for this CPU).",
        *(["\n".join(notes)] if notes else []),
    ]


def conditions_section(report: Report) -> str:
    settings, env = report.config.benchmark, report.environment
    session = SessionSettings.of(report.config).describe()
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in env.cpu_flags.items())
    sizes = ", ".join(map(str, benchmark.batch_sizes(settings)))
    return "\n".join(
        [
            "## Conditions",
            "",
            f"- Threads: {session['intra_op_num_threads']} intra-op, {session['inter_op_num_threads']} inter-op; "
            f"graph optimization {session['graph_optimization_level']}, {session['execution_mode']}, "
            f"{', '.join(session['providers'])}; session config entries "
            f"`{json.dumps(session['config_entries'], sort_keys=True)}` (`{{}}`: onnxruntime's defaults, what "
            "`onnxruntime.InferenceSession(path)` gives; int8 models made by this pipeline record them in their "
            "metadata, `tuning.session_options.*`)",
            f"- Timing: {benchmark.timing_conditions(settings)}; latency at batch 1 on the model as given, "
            f"throughput at batch sizes {sizes} on batch-capable copies (checked to give the original's outputs)"
            + _shapes_note(report),
            *([f"- {report.nncf_reference.sentence()}"] if report.nncf_reference else []),
            "- Models take turns in blocks of consecutive warm calls; throughput is batch size / median batch time; a figure pools every "
            "session set's calls (range in brackets: over the sets); a ratio is the median over session sets of the "
            "paired per-call ratios, in brackets its 95 % interval widened by the fp32 A/A pair (docs/measurement.md)",
            f"- CPU: {env.cpu_model}; {flags}; {env.usable_cpus} usable of {env.cpu_count} cores; "
            f"{env.machine}, {env.system}",
            *_runtime_conditions(report),
            "- Versions: " + ", ".join(f"{name} {version}" for name, version in env.versions.items()),
        ]
    )


def _shapes_note(report: Report) -> str:
    """How OpenVINO's timed models were shaped, when any was timed: compiled per batch size, as deployed."""
    if not report.performance_measured or all(runtime is Runtime.ONNXRUNTIME for runtime in report.measured_runtimes):
        return ""
    return (
        "; OpenVINO compiles every model for each timed batch size (static shapes: `Model.reshape` before "
        "`compile_model`, as benchmark_app's `-shape` does), onnxruntime runs each graph's own shapes; "
        "accuracy runs on the model's own shapes"
    )


def _runtime_conditions(report: Report) -> list[str]:
    """One line per configured runtime: how it ran the models, read back from what it compiled."""
    lines = []
    for runtime in report.config.benchmark.runtimes:
        if runtime in report.unavailable_runtimes:
            lines.append(f"- Runtime {runtime.value}: not measured: {report.unavailable_runtimes[runtime]}")
            continue
        phrases = sorted(
            {
                conditions_phrase(on.conditions)
                for result in report.models
                if (on := result.runtimes[runtime]).error is None
            }
        )
        lines.append(f"- Runtime {runtime.value}: {'; '.join(phrases) or 'no model loads on it'}")
    return lines
