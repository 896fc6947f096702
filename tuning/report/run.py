"""The comparison report: accuracy, speed, size and ops of the float, int8 and reference models.

:func:`run_report` builds the numbers (:mod:`tuning.report.builder`), then writes ``report.json``
(:mod:`tuning.report.document`), ``report.md`` (:mod:`tuning.report.markdown`), PNG plots
(:mod:`tuning.report.plots`) and ``report.html`` (:mod:`tuning.report.html`: the Markdown and the plots
in one file) into one folder, all replaced together or none. With ``benchmark.nncf_reference`` it first writes
NNCF's int8 model of the float model there (:mod:`tuning.external.nncf_int8`), a reference like any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuning.config.loading import output_input_clashes
from tuning.config.schema import PipelineConfig
from tuning.data import datasets
from tuning.errors import ConfigError
from tuning.external import nncf_int8
from tuning.external.nncf_int8 import NNCF_FILE, NNCF_NAME, NncfReference
from tuning.files.atomic import atomic_outputs, prepare_output_dir, staged_content, write_text_atomic
from tuning.files.onnx_io import describe, load_model
from tuning.report.answer import report_answer
from tuning.report.builder import build_report
from tuning.report.document import json_document
from tuning.report.html import html_page
from tuning.report.markdown import markdown, summary_table
from tuning.report.numbers import ModelEntry, Report, Role
from tuning.report.plots import (
    CONFUSION_PLOT,
    LATENCY_PLOT,
    SPEEDUP_PLOT,
    THROUGHPUT_PLOT,
    draw_plots,
)

OUTPUT_NAMES = (
    "report.json", "report.md", "report.html", SPEEDUP_PLOT, LATENCY_PLOT, THROUGHPUT_PLOT, CONFUSION_PLOT, NNCF_FILE,
)  # fmt: skip


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    html: Path
    plots: list[Path]
    summary_table: str
    answer: str  # the one line a reader wants first (tuning.report.answer)


def run_report(config: PipelineConfig, entries: Sequence[ModelEntry], out_dir: Path, performance: bool) -> ReportFiles:
    """Evaluate and (unless ``performance`` is False) benchmark every model, then write the report files."""
    clash = output_input_clashes(
        [(name, Path(out_dir) / name) for name in OUTPUT_NAMES], [(f"the {e.name} model", e.path) for e in entries]
    )
    if clash:
        raise ConfigError(clash)
    nncf = None
    if config.benchmark.nncf_reference:
        nncf = nncf_reference(config, entries, Path(out_dir))
        entries = [*entries, ModelEntry(NNCF_NAME, Role.REFERENCE, nncf.path)]
    report = build_report(config, entries, performance, nncf)
    return write_report(report, Path(out_dir))


def nncf_reference(config: PipelineConfig, entries: Sequence[ModelEntry], out_dir: Path) -> NncfReference:
    """NNCF's int8 model of the float model, calibrated on tuning's calibration images, written into ``out_dir``;
    a ConfigError when the nncf extra is missing (the key asked for a row that cannot be made)."""
    reason = nncf_int8.unavailable_reason()
    if reason is not None:
        raise ConfigError(f"benchmark.nncf_reference: {reason}")
    if any(entry.name == NNCF_NAME for entry in entries):
        raise ConfigError(f"benchmark.nncf_reference: a reference model is already named {NNCF_NAME}; rename it")
    float_entry = next(entry for entry in entries if entry.role is Role.FLOAT)
    spec = describe(load_model(float_entry.path), float_entry.path)
    calibration = datasets.calibration_images(config.dataset, config.calibration, spec.sample_shape)
    prepare_output_dir(out_dir)
    return nncf_int8.quantize_with_nncf(float_entry.path, calibration, out_dir / NNCF_FILE)


def write_report(report: Report, out_dir: Path) -> ReportFiles:
    """report.json, report.md, the plots it links and report.html, written into ``out_dir`` together or not at all."""
    json_path = out_dir / "report.json"
    markdown_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    with atomic_outputs():
        plots = draw_plots(report, out_dir)
        write_text_atomic(json_path, json.dumps(json_document(report), indent=2) + "\n")
        summary = summary_table(report)
        markdown_text = markdown(report, summary, [plot.name for plot in plots])
        write_text_atomic(markdown_path, markdown_text)
        # The page embeds the new plots, which are still staged beside their destinations.
        write_text_atomic(html_path, html_page(markdown_text, {plot.name: staged_content(plot) for plot in plots}))
    return ReportFiles(json_path, markdown_path, html_path, plots, summary, report_answer(report).line())
