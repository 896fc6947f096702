"""``report``: compare the float, int8 and reference models in report.json, report.md, plots and HTML."""

from __future__ import annotations

from pathlib import Path

import click

from tuning.cli.flags import (
    config_option,
    dataset_location_option,
    length_options,
    length_overrides,
    model_option,
    option,
    output_model_option,
    run_dir_option,
    set_option,
)
from tuning.cli.options import USER_FOLDER, build_config, config_file, console_options, current_console, outputs_guarded
from tuning.files.paths import user_path


@click.command()
@config_option
@set_option
@model_option("report", "The float model. Default: model.path.", earlier="--float-model")
@output_model_option(
    "report",
    "The int8 model, as tune's -o (overrides output.model, so the run folder follows it). Default: output.model.",
    earlier="--int8-model",
)
@run_dir_option("The run folder (overrides output.dir). Default: <output model's stem>-run/ beside it.")
@option(
    "--reference",
    "references",
    earlier_variable="REFERENCES",
    multiple=True,
    metavar="[NAME=]PATH",
    help="A model to compare with (repeatable). Default: benchmark.reference_models.",
)
@dataset_location_option("report")
@option(
    "--report-dir",
    aliases=("--out-dir",),
    earlier_variable="OUT_DIR",
    type=USER_FOLDER,
    help="Where the report goes. Default: <run folder>/report.",
)
@option("--skip-performance", is_flag=True, help="Accuracy, size and ops only; latency and throughput null.")
@length_options
@console_options
def report(
    config_path: Path | None,
    assignments: tuple[str, ...],
    model: Path | None,
    output_model: Path | None,
    run_dir: Path | None,
    references: tuple[str, ...],
    dataset_location: Path | None,
    report_dir: Path | None,
    skip_performance: bool,
    iterations: int | None,
    min_time_s: float | None,
    rounds: int | None,
    warmup: int | None,
) -> None:
    """Compare the float, int8 and reference models: report.json, report.md and PNG plots.

    Accuracy at the configured and the other pixel scale, agreement with the float model,
    latency and throughput (interleaved, one run), size and op types, on every runtime of
    benchmark.runtimes (onnxruntime; OpenVINO with the openvino extra). Schema: docs/report-schema.md.

    \b
    Examples:
      mnist-tuning report -o my-int8.onnx       (into my-int8-run/report/)
      mnist-tuning report -o my-int8.onnx --skip-performance   (accuracy only)
      mnist-tuning report -m fp32.onnx -o int8.onnx --report-dir out/
      mnist-tuning report -o my-int8.onnx -n 200 -t 0.05 --rounds 3   (short)
    """
    from tuning.report.numbers import model_entries
    from tuning.report.run import OUTPUT_NAMES, run_report

    console = current_console()
    config = build_config(
        config_path,
        assignments,
        writes_outputs=False,
        **{"dataset.root": dataset_location, "output.model": output_model, "output.dir": run_dir},
        **length_overrides(iterations, min_time_s, rounds, warmup),
    )
    for reference in references:
        user_path(reference, "--reference")
    entries = model_entries(
        model or config.path("model.path"),
        config.path("output.model"),
        references or config.benchmark.reference_models,
    )
    inputs = [(f"the {entry.name} model", user_path(entry.path, f"the {entry.name} model")) for entry in entries]
    folder = report_dir or config.path("output.dir") / "report"
    outputs = [(f"{folder}/{name}", folder / name) for name in OUTPUT_NAMES]
    with outputs_guarded(outputs, [*inputs, ("the config file", config_file(config_path))]):
        files = run_report(config, entries, folder, performance=not skip_performance)
    console.note(files.summary_table)
    plots = ", ".join(str(plot) for plot in files.plots)
    console.result(f"Report: {files.html} (one page), {files.markdown}, {files.json}; plots: {plots}")
