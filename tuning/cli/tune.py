"""``tune``: quantize the float model with INC and write the int8 model with its summary."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from tuning.cli.flags import (
    config_option,
    dataset_location_option,
    model_option,
    option,
    output_model_option,
    run_dir_option,
    set_option,
)
from tuning.cli.options import build_config, config_file, console_options, current_console, outputs_guarded
from tuning.config.enums import QuantFormat
from tuning.inc import distributed

SUMMARY_NAME = "tuning_summary.json"  # what the pipeline writes into output.dir


@click.command()
@config_option
@set_option
@model_option(
    "tune",
    "The float model (overrides model.path); the config's model.sha256 and model.url then apply only if it is "
    "the same file.",
)
@option(
    "--input-sha256",
    aliases=("--input_sha256",),
    metavar="HEX",
    help="Overrides model.sha256: the sha256 the --model file must have.",
)
@output_model_option("tune", "The int8 model to write (overrides output.model).", earlier="--output-model")
@run_dir_option("The run folder (overrides output.dir). Default: <output model's stem>-run/ beside it.")
@dataset_location_option("tune")
@option(
    "--quant-format",
    aliases=("--quant_format",),
    type=click.Choice([fmt.value for fmt in QuantFormat]),
    help="Overrides quantization.format (the flag of INC's examples).",
)
@option(
    "--batch-size",
    aliases=("--batch_size",),
    type=click.IntRange(min=1),
    help="Overrides calibration.batch_size and evaluation.batch_size (the flag of INC's examples).",
)
@console_options
def tune(
    config_path: Path | None,
    assignments: tuple[str, ...],
    model: Path | None,
    input_sha256: str | None,
    output_model: Path | None,
    run_dir: Path | None,
    dataset_location: Path | None,
    quant_format: str | None,
    batch_size: int | None,
) -> None:
    """Quantize the float model with INC; write the int8 model meeting the accuracy criterion.

    tuning.objective accuracy: INC's first candidate meeting the criterion. latency: the fastest
    candidate meeting it, of a grid INC makes (fp32 fallbacks, QOperator/QDQ, calibration algorithms),
    every candidate timed against fp32 in one interleaved measurement. Every candidate is listed.
    The int8 model carries its preprocessing, the source model's sha256, the config hash, the
    measured fp32/int8 top-1 accuracy and the onnxruntime session options in its metadata_props.

    \b
    Examples:
      mnist-tuning tune -o my-int8.onnx     (run folder: my-int8-run/)
      mnist-tuning tune -m model.onnx -o model-int8.onnx -c my.yaml
      mnist-tuning tune -o my-int8.onnx --set tuning.max_trials=5
    INC's example flags (--input_model, --output_model, ...) work too.
    """
    console = current_console()
    config = build_config(
        config_path,
        assignments,
        **{
            "model.path": model,
            "model.sha256": input_sha256,
            "output.model": output_model,
            "output.dir": run_dir,
            "dataset.root": dataset_location,
            "quantization.format": quant_format,
            "calibration.batch_size": batch_size,
            "evaluation.batch_size": batch_size,
        },
    )
    summary_path = config.path("output.dir") / SUMMARY_NAME
    outputs = [("output.model", config.path("output.model")), (f"output.dir/{SUMMARY_NAME}", summary_path)]
    inputs = [("the config file", config_file(config_path)), ("model.path", config.model.path)]
    # Only rank 0 of an MPI run writes the outputs, so only it checks and locks them.
    with outputs_guarded(outputs, inputs) if distributed.world().rank == 0 else contextlib.nullcontext():
        # Importing INC (with scikit-learn and scipy) takes seconds: say so before it starts (rank 0 alone speaks).
        if distributed.world().rank == 0:
            console.progress("tune: loading Intel Neural Compressor and onnxruntime (takes a few seconds)")
        from tuning.pipeline import run_tuning

        summary = run_tuning(config, verbose=console.verbose, progress=console.progress)
    from tuning.pipeline import summary_lines

    if summary is None:  # a worker rank of an MPI run: rank 0 reports every rank's trials
        return
    console.result("\n".join(summary_lines(summary)))
