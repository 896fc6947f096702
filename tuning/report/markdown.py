"""report.md: the report's numbers as Markdown tables and prose, linking the plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tuning.config.enums import Runtime
from tuning.graph.nodes import Precision
from tuning.measure import benchmark
from tuning.measure.benchmark import Spread, threads_phrase
from tuning.measure.figures import count, count_range, error_pct, factor, pct, ratio, us, us_range
from tuning.measure.runtimes import SessionSettings, conditions_phrase
from tuning.report.numbers import (
    TUNING_SUMMARY,
    ModelResult,
    Report,
    Role,
    other_scale,
    package_version,
)
from tuning.report.plots import (
    CONFUSION_PLOT,
    FLIPS_PLOT,
    PLOT_TITLES,
    THROUGHPUT_PLOT,
    THROUGHPUT_SPREAD,
)

_SCALE_MISMATCH_PP = 1.0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "l") -> str:
    # The first column is a label; the others are numbers and read best right-aligned.
    marks = [":---"] + ["---:" if align == "r" else ":---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(report: Report) -> str:
    """The table people read first: one row per model. Accuracy is onnxruntime's; speed is onnxruntime's when
    measured, else the first measured runtime's. With other runtimes configured, every column names its runtime
    (the side-by-side table has each runtime's own accuracy)."""
    largest = max(benchmark.batch_sizes(report.config.benchmark))
    other = other_scale(report.config.dataset.pixel_scale).value
    measured = report.measured_runtimes
    runtime = Runtime.ONNXRUNTIME if Runtime.ONNXRUNTIME in measured else next(iter(measured), None)
    on, speed_on = ("", "") if report.onnxruntime_only else (", onnxruntime", f", {runtime.value}" if runtime else "")
    rows = []
    for result in report.models:
        accuracy = result.accuracy
        agreement = f"{pct(accuracy.agreement_with_float)} / {accuracy.flips:,}"
        on_runtime = result.runtimes.get(runtime) if runtime else None
        perf = on_runtime.performance if on_runtime else None
        missing = "cannot load" if on_runtime is not None and on_runtime.error else "not measured"
        rows.append(
            [
                _label(result),
                pct(accuracy.top1_error),
                pct(result.accuracy_other_scale.top1_error),
                "—" if result.entry.role is Role.FLOAT else agreement,
                us(perf.latency.p50) if perf is not None else missing,
                f"{count(perf.throughput_at(largest).images_per_s)} img/s" if perf is not None else missing,
                f"{count(result.size_bytes)} B",
            ]
        )
    header = [
        "model",
        f"top-1 error ({report.config.dataset.pixel_scale.value} pixels{on})",
        f"top-1 error at {other} pixels{on}",
        f"agreement with fp32 / flips{on.replace(', ', ' (') + ')' if on else ''}",
        f"p50 latency (batch 1{speed_on})",
        f"throughput @ batch {largest}{speed_on}",
        "size",
    ]
    return _table(header, rows, align="r")


def runtimes_table(report: Report) -> str:
    """Every model on every configured runtime side by side: accuracy on the whole split, how many
    predictions differ from onnxruntime's, and speed against fp32 on onnxruntime (same run, interleaved)."""
    largest = max(benchmark.batch_sizes(report.config.benchmark))
    ort = Runtime.ONNXRUNTIME
    base = report.float_result.performance(ort)
    rows = []
    for runtime in report.config.benchmark.runtimes:
        for result in report.models:
            if runtime in report.unavailable_runtimes:
                rows.append([result.entry.name, runtime.value, "not installed", "", "", "", "", "", ""])
                continue
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
    return _table(header, rows, align="r")


def _precision(conditions: dict[str, Any]) -> str:
    """``fp32 graph`` on onnxruntime (it runs what the graph says); OpenVINO's inference precision read back."""
    if conditions["runtime"] == "onnxruntime":
        return "as in the graph"
    requested = "INFERENCE_PRECISION_HINT" in conditions["requested"]
    return f"{conditions['inference_precision']} ({'set' if requested else 'default'})"


def _label(result: ModelResult) -> str:
    """The model's name; a reference model says so (the float and int8 models are named for their role)."""
    name = result.entry.name
    return f"{name} (reference)" if result.entry.role is Role.REFERENCE else name


def _mismatch_notes(report: Report) -> list[str]:
    configured = report.config.preprocessing
    notes = []
    for result in report.models:
        this, other = result.accuracy, result.accuracy_other_scale
        if 100 * (this.top1_error - other.top1_error) > _SCALE_MISMATCH_PP:
            notes.append(
                f"**{result.entry.name}** has {pct(this.top1_error)} error with {this.pixel_scale.value} pixels but "
                f"{pct(other.top1_error)} with {other.pixel_scale.value} pixels: it expects "
                f"{other.pixel_scale.value} input, not this pipeline's preprocessing."
            )
        declared = result.declared_preprocessing
        if declared is not None and declared != configured:
            notes.append(
                f"**{result.entry.name}** declares preprocessing {json.dumps(declared, sort_keys=True)} in its "
                f"metadata; this report uses {json.dumps(configured, sort_keys=True)}."
            )
    return notes


def markdown(report: Report, summary: str, plots: list[str]) -> str:
    sections = [
        _intro_section(report),
        _summary_section(report, summary),
        _performance_section(report, plots),
        _conditions_section(report),
        _tuning_section(report),
        _accuracy_section(report),
        _flips_section(report, plots),
        _operators_section(report),
        _models_section(report),
    ]
    return "\n\n".join(sections) + "\n"


def _intro_section(report: Report) -> str:
    config = report.config
    return (
        "# Quantization report\n\n"
        f"Generated {report.created_utc} by tuning {package_version()}; {report.evaluation_images:,} "
        f"{config.dataset.name} {config.evaluation.split.value} images, preprocessing "
        f"`{json.dumps(config.preprocessing, sort_keys=True)}`. Machine-readable: `report.json` "
        "(schema: docs/report-schema.md); one page with every table and picture: `report.html`."
    )


def _summary_section(report: Report, summary: str) -> str:
    lines = [
        "## Summary",
        "",
        summary,
        "",
        "Agreement: share of test images on which the model predicts the same class as fp32; flips: images on "
        "which it does not. Error at the other pixel scale feeds the same images scaled the other way "
        "([0, 1] against 0..255, same mean and std), to expose a model calibrated for the other preprocessing.",
    ]
    notes = _mismatch_notes(report)
    if notes:
        lines += ["", *(f"- ⚠ {note}" for note in notes)]
    return "\n".join(lines)


def _performance_section(report: Report, plots: list[str]) -> str:
    runtimes_section = _runtimes_section(report)
    if not report.performance_measured:
        return "\n\n".join(
            [*runtimes_section, "## Ratios against fp32\n\nPerformance was not measured (`--skip-performance`)."]
        )
    sizes = benchmark.batch_sizes(report.config.benchmark)
    several = not report.onnxruntime_only
    ratios = _table(
        ["model", *(["runtime"] if several else []), "p50 latency ratio", *(f"throughput ratio @ {b}" for b in sizes)],
        [
            [
                name,
                *([runtime.value] if several else []),
                ratio(_spread(r["latency_p50_rounds"])),
                *(ratio(_spread(r["throughput_rounds"][str(b)])) for b in sizes),
            ]
            for runtime in report.measured_runtimes
            for name, r in report.ratios_vs_float(runtime).items()
        ],
        align="r",
    )
    measured = [(series.label, series.performance) for series in report.measured_series()]
    latency = _table(
        ["model (batch 1)", "p50", "p90", "p99", "mean", "timed runs"],
        [
            [name, *(us(p.latency.percentile(q)) for q in (50, 90, 99)), us(p.latency.mean), count(p.latency.runs)]
            for name, p in measured
        ],
        align="r",
    )
    throughput = _table(
        ["img/s", *(f"batch {b}" for b in sizes)],
        [[name, *(count(p.throughput_at(b).images_per_s) for b in sizes)] for name, p in measured],
        align="r",
    )
    captions = {THROUGHPUT_PLOT: f"Throughput bars: {THROUGHPUT_SPREAD}; a dip inside them is noise, not a trend."}
    images = "\n\n".join(
        "\n\n".join([f"![{PLOT_TITLES[name]}]({name})", *([captions[name]] if name in captions else [])])
        for name in plots
        if name not in (CONFUSION_PLOT, FLIPS_PLOT)
    )
    return "\n\n".join(
        [
            *runtimes_section,
            "## Ratios against fp32 (same run, interleaved)",
            ratios,
            "Latency ratio below 1 and throughput ratio above 1 mean faster than fp32"
            + (" on the same runtime." if several else "."),
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


def _spread(document: dict[str, float] | None) -> Spread | None:
    """A ``{value, min, max}`` of report.json as a Spread; None when not measured (e.g. a model the runtime
    cannot load)."""
    return None if document is None else Spread.from_json(document)


def _conditions_section(report: Report) -> str:
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
            f"throughput at batch sizes {sizes} on batch-capable copies (checked to give the original's outputs)",
            f"- Models interleaved in turns of about {benchmark.INTERLEAVE_IMAGES} images; throughput is batch size / "
            "median batch time; a figure pools every round's runs, a ratio is the median of the per-round ratios, "
            "and the range in brackets is the spread over the rounds (a wide range: the machine was busy)",
            f"- CPU: {env.cpu_model}; {flags}; {env.usable_cpus} usable of {env.cpu_count} cores; "
            f"{env.machine}, {env.system}",
            *_runtime_conditions(report),
            "- Versions: " + ", ".join(f"{name} {version}" for name, version in env.versions.items()),
        ]
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


def _tuning_section(report: Report) -> str:
    tuning = report.tuning
    if tuning is None:
        note = report.tuning_note or "No tuning summary (`<output.dir>/" + TUNING_SUMMARY + "`) found."
        return f"## Tuning candidates\n\n{note}"
    measurement = tuning["latency_measurement"]
    timed = measurement is not None
    largest = measurement["throughput_batch_size"] if timed else None
    header = ["trial", "candidate", "fp32-graph nodes int8 / fp32 / folded", "top-1 error", "criterion"]
    if timed:
        header += ["p50 (batch 1)", "p50 ratio (per round)", f"img/s @ {largest}", "throughput ratio"]
    header.append("chosen")
    rows = []
    for trial in tuning["candidates"]:
        row = [
            str(trial["index"]),
            _candidate_description(trial),
            " / ".join(str(list((trial["source_precisions"] or {}).values()).count(p)) for p in ("int8", "fp32", "folded")),
            error_pct(trial["accuracy"]),
            _verdict(trial),
        ]
        if timed and trial["latency_ratio"] is not None:
            row += [
                us(trial["latency_p50_ms"]),
                ratio(Spread.of_rounds(trial["latency_ratio_rounds"])),
                count(trial["throughput_images_per_s"]),
                ratio(Spread.of_rounds(trial["throughput_ratio_rounds"])),
            ]
        elif timed:
            screened = trial.get("screening_ratio")
            status = (
                f"{measurement.get('runtime')} cannot load it"
                if trial.get("unloadable")
                else f"screened out at {factor(screened)}" if screened is not None else "not timed"
            )
            row += ["—", status, "—", "—"]
        row.append("**yes**" if trial["chosen"] else "")
        rows.append(row)
    lines = [
        "## Tuning candidates",
        "",
        f"Every candidate the tuning run tried (objective `{tuning['objective']}`, from `{tuning['summary_path']}`). "
        f"Chosen: trial {tuning['chosen_trial']}: {tuning['reason']}.",
        "",
        _table(header, rows),
    ]
    if timed:
        entries = measurement["session_options"].get("config_entries", {})
        lines += [
            "",
            "Timed at tuning time, in another run than this report's tables (so absolute figures differ; compare "
            f"ratios): {measurement['models']}; {measurement['rounds']} rounds of at least "
            f"{measurement['iterations']} images and {measurement['min_time_s']:g} s per model at batch 1 and at "
            f"batch {largest}, {threads_phrase(measurement['intra_op_threads'])}, session config entries "
            f"`{json.dumps(entries, sort_keys=True)}`"
            + (f", on {conditions_phrase(measurement['runtime_conditions'])}" if "runtime_conditions" in measurement else "")
            + f". Choice rule: {measurement['choice_rule']}.",
        ]
    return "\n".join(lines)


def _verdict(trial: dict[str, Any]) -> str:
    if trial["index"] == 0:
        return "baseline"
    if trial["meets_criterion"] is None:
        return "not loadable" if trial.get("unloadable") else "not scored (screened out)"
    return "meets" if trial["meets_criterion"] else "misses"


def _candidate_description(trial: dict[str, Any]) -> str:
    if trial["index"] == 0:
        return "fp32 baseline"
    fp32 = ", ".join(trial["fp32_compute_nodes"] or []) or "none"  # what the graph holds, not what was asked
    if trial["quant_format"] is None:
        return f"INC trial, fp32: {fp32}"
    text = f"{trial['quant_format']}, {trial['calibration_algorithm'] or 'no calibration'}, fp32: {fp32}"
    return text + (f" (same model as trial {trial['same_model_as']})" if trial["same_model_as"] is not None else "")


def _accuracy_section(report: Report) -> str:
    classes = report.float_result.accuracy.confusion.shape[0]
    table = _table(
        ["class", *(result.entry.name for result in report.models)],
        [
            [report.class_label(k), *(error_pct(result.accuracy.per_class_accuracy[k]) for result in report.models)]
            for k in range(classes)
        ],
        align="r",
    )
    return (
        f"## Per-class top-1 error ({report.config.dataset.pixel_scale.value} pixels)\n\n"
        "Share of each class's test images the model classifies wrongly.\n\n"
        f"{table}\n\n![{PLOT_TITLES[CONFUSION_PLOT]}]({CONFUSION_PLOT})"
    )


def _flips_section(report: Report, plots: list[str]) -> str:
    int8 = report.int8_result
    counts = int8.accuracy
    heading = f"## Flips: images {int8.entry.name} classifies differently from fp32"
    if not report.flips:
        return f"{heading}\n\nNone: {int8.entry.name} predicts the class fp32 predicts on every test image."
    lines = [
        heading,
        "",
        f"{counts.flips:,} of {counts.images:,} test images ({report.config.dataset.pixel_scale.value} pixels): "
        f"{counts.flips_to_wrong:,} that fp32 classifies correctly and {int8.entry.name} wrongly (what quantization "
        f"cost), {counts.flips_to_correct:,} the other way round, "
        f"{counts.flips - counts.flips_to_wrong - counts.flips_to_correct:,} wrong in both. Every one is listed in "
        "`report.json` (`flipped_images`: position in the split, true class, both predictions).",
    ]
    if FLIPS_PLOT in plots:
        lines += ["", f"![{PLOT_TITLES[FLIPS_PLOT]}]({FLIPS_PLOT})"]
    return "\n".join(lines)


def _operators_section(report: Report) -> str:
    op_types = sorted({op for result in report.models for op in result.op_types})
    counts = _table(
        ["op type", *(result.entry.name for result in report.models)],
        [[op, *(str(result.op_types.get(op, 0)) for result in report.models)] for op in op_types],
        align="r",
    )
    nodes = _table(
        ["model", "int8 nodes", "fp32 nodes", "Quantize/Dequantize nodes"],
        [
            [
                result.entry.name,
                *(
                    f"{len(result.precisions[kind.value])}: {', '.join(result.precisions[kind.value]) or '—'}"
                    for kind in Precision
                ),
            ]
            for result in report.models
        ],
    )
    return f"## Operators\n\n{counts}\n\n{nodes}"


def _models_section(report: Report) -> str:
    table = _table(
        ["model", "role", "path", "sha256", "declared preprocessing"],
        [
            [
                result.entry.name,
                result.entry.role.value,
                f"`{result.entry.path}`",
                f"`{result.sha256}`",
                f"`{json.dumps(result.declared_preprocessing, sort_keys=True)}`"
                if result.declared_preprocessing
                else "none",
            ]
            for result in report.models
        ],
    )
    return f"## Models\n\n{table}"
