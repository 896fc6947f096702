"""``benchmark``: one model on one runtime, with the output lines of INC's examples."""

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
    set_option,
)
from tuning.cli.options import build_config, console_options, current_console
from tuning.config.enums import Runtime


@click.command()
@config_option
@set_option
@model_option("benchmark", "The model to measure. Default: model.path.")
@dataset_location_option("benchmark")
@option(
    "--mode",
    type=click.Choice(["accuracy", "performance"]),
    default="performance",
    show_default=True,
    help="accuracy: top-1 on the evaluation split; performance: latency and throughput.",
)
@option(
    "--batch-size",
    aliases=("--batch_size",),
    type=click.IntRange(min=1, max=1_000_000),
    default=1,
    show_default=True,
    help="Images per call (the flag of INC's examples).",
)
@length_options
@option(
    "--runtime",
    type=click.Choice([runtime.value for runtime in Runtime]),
    default=Runtime.ONNXRUNTIME.value,
    show_default=True,
    help="Where the model runs. openvino: OpenVINO's defaults (its precision is printed); openvino-f32 / "
    "openvino-bf16 set its precision hint. OpenVINO needs the extra: bash scripts/setup_env.sh openvino.",
)
@option("--json", "json_output", is_flag=True, earlier_variable="JSON_OUTPUT", help="Print one JSON document on stdout (docs/cli.md).")
@console_options
def benchmark(
    config_path: Path | None,
    assignments: tuple[str, ...],
    model: Path | None,
    dataset_location: Path | None,
    mode: str,
    batch_size: int,
    iterations: int | None,
    min_time_s: float | None,
    rounds: int | None,
    warmup: int | None,
    runtime: str,
    json_output: bool,
) -> None:
    """Benchmark one model on one runtime, printing the lines of INC's examples (what run_benchmark.sh does).

    \b
    accuracy:    Batch size = 1 / Accuracy: 0.98910  (top-1 on the evaluation split)
    performance: Batch size = 1 / Latency: 0.041 ms / Throughput: 24390.2 images/sec
    then one line with the conditions.

    \b
    Examples:
      mnist-tuning benchmark -m models/mnist-12-int8.onnx --batch-size 64
      mnist-tuning benchmark -m my-int8.onnx --mode accuracy
      mnist-tuning benchmark -m my-int8.onnx -n 200 -t 0.05 --rounds 3 --json
    """
    from tuning.cli.documents import benchmark_document
    from tuning.measure.benchmark import run_benchmark

    console = current_console(json_output)
    config = build_config(
        config_path,
        assignments,
        **{"dataset.root": dataset_location},
        **length_overrides(iterations, min_time_s, rounds, warmup),
    )
    model_path = model or config.path("model.path")
    target_runtime = Runtime(runtime)
    run = run_benchmark(config, model_path, mode, batch_size, target_runtime)
    for warning in run.warnings:
        console.warning(warning)
    *results, conditions = run.lines()
    console.result("\n".join(results))
    console.note(conditions)
    if json_output:
        console.document(benchmark_document(run, model_path, mode, target_runtime, config))
