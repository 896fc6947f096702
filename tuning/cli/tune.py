"""``tune``: quantize the float model with INC and write the int8 model with its summary."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from tuning.cli.options import (
    USER_PATH,
    build_config,
    config_file,
    config_option,
    console_options,
    current_console,
    dataset_location_option,
    outputs_guarded,
    set_option,
)
from tuning.config.enums import QuantFormat
from tuning.inc import distributed

SUMMARY_NAME = "tuning_summary.json"  # what the pipeline writes into output.dir


@click.command()
@config_option
@set_option
@click.option(
    "--input_model",
    "--input-model",
    type=USER_PATH,
    help="Overrides model.path; the config's model.sha256 and model.url then apply only if it is the same file.",
)
@click.option(
    "--input_sha256", "--input-sha256", help="Overrides model.sha256: the sha256 --input_model must have."
)
@click.option("--output_model", "--output-model", type=USER_PATH, help="Overrides output.model.")
@dataset_location_option
@click.option(
    "--quant_format",
    "--quant-format",
    type=click.Choice([fmt.value for fmt in QuantFormat]),
    help="Overrides quantization.format (the flag of INC's examples).",
)
@click.option(
    "--batch_size",
    "--batch-size",
    type=click.IntRange(min=1),
    help="Overrides calibration.batch_size and evaluation.batch_size (the flag of INC's examples).",
)
@console_options
def tune(
    config_path: Path | None,
    assignments: tuple[str, ...],
    input_model: Path | None,
    input_sha256: str | None,
    output_model: Path | None,
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
    """
    console = current_console()
    config = build_config(
        config_path,
        assignments,
        **{
            "model.path": input_model,
            "model.sha256": input_sha256,
            "output.model": output_model,
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
        # Importing INC (with scikit-learn and scipy) takes seconds: say so before it starts.
        console.progress("tune: loading Intel Neural Compressor and onnxruntime (takes a few seconds)")
        from tuning.pipeline import run_tuning

        summary = run_tuning(config, verbose=console.verbose, progress=console.progress)
    from tuning.pipeline import summary_lines

    if summary is None:  # a worker rank of an MPI run: rank 0 reports every rank's trials
        return
    console.result("\n".join(summary_lines(summary)))
