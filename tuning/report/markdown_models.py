"""report.md's sections on each model: per-class error, flips, operators, files."""

from __future__ import annotations

import json

from tuning.graph.nodes import Precision
from tuning.measure.figures import error_pct
from tuning.report.markdown_table import markdown_table
from tuning.report.numbers import Report
from tuning.report.plots import CONFUSION_PLOT, FLIPS_PLOT, PLOT_TITLES


def accuracy_section(report: Report) -> str:
    classes = report.float_result.accuracy.confusion.shape[0]
    table = markdown_table(
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


def flips_section(report: Report, plots: list[str]) -> str:
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


def operators_section(report: Report) -> str:
    op_types = sorted({op for result in report.models for op in result.op_types})
    counts = markdown_table(
        ["op type", *(result.entry.name for result in report.models)],
        [[op, *(str(result.op_types.get(op, 0)) for result in report.models)] for op in op_types],
        align="r",
    )
    nodes = markdown_table(
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


def models_section(report: Report) -> str:
    table = markdown_table(
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
