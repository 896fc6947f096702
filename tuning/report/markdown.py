"""report.md: the report's numbers as Markdown tables and prose, linking the plots."""

from __future__ import annotations

import json

from tuning.config.enums import Runtime
from tuning.measure import benchmark
from tuning.measure.figures import count, pct, us
from tuning.report.answer import report_answer
from tuning.report.markdown_models import accuracy_section, flips_section, models_section, operators_section
from tuning.report.markdown_speed import conditions_section, performance_section
from tuning.report.markdown_table import markdown_table
from tuning.report.markdown_tuning import tuning_section
from tuning.report.numbers import ModelResult, Report, Role, other_scale, package_version

_SCALE_MISMATCH_PP = 1.0


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
    return markdown_table(header, rows, align="r")


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
        performance_section(report, plots),
        conditions_section(report),
        tuning_section(report),
        accuracy_section(report),
        flips_section(report, plots),
        operators_section(report),
        models_section(report),
    ]
    return "\n\n".join(sections) + "\n"


def _intro_section(report: Report) -> str:
    config = report.config
    return (
        "# Quantization report\n\n"
        f"**Answer:** {report_answer(report).line()}\n\n"
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


