"""Command-line interface: thin click commands over the pipeline's stages.

Exit codes: 0 success, 1 a gate failed, 2 usage or config error, 3 bad input file
(model, dataset, report, download), 4 tuning found no model, 5 output not writable,
130 interrupted.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from tuning import distributed
from tuning.config import PipelineConfig, load_config, parse_override
from tuning.errors import ConfigError, Interrupted, PipelineError

DEFAULT_CONFIG = Path("configs/mnist.yaml")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="YAML config (schema: README, 'Configuration').",
)
set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override one config key, e.g. --set tuning.max_trials=5 (repeatable; value read as YAML).",
)


def build_config(config_path: Path, assignments: tuple[str, ...], **flag_overrides: Any) -> PipelineConfig:
    """Load the YAML, then apply --set assignments, then the dedicated flags (the most specific wins)."""
    overrides = dict(parse_override(assignment) for assignment in assignments)
    overrides.update({key: value for key, value in flag_overrides.items() if value is not None})
    return load_config(config_path, overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Accuracy-driven INC post-training quantization of an ONNX classifier.

    \b
    Typical run (what run_tuning.sh does):
      python -m tuning tune --input_model=models/mnist-12.onnx \\
          --config=configs/mnist.yaml --output_model=models/mnist-12-int8.onnx
    """


@cli.command()
@config_option
@set_option
def fetch(config_path: Path, assignments: tuple[str, ...]) -> None:
    """Download model.url to model.path unless a copy with model.sha256 is already there."""
    from tuning.fetch import ensure_file, sha256_of

    config = build_config(config_path, assignments)
    path = ensure_file(config.model.path, config.model.url, config.model.sha256)
    click.echo(f"{path}: sha256 {sha256_of(path)} verified")


@cli.command()
@config_option
@set_option
@click.option("--input_model", "--input-model", type=click.Path(path_type=Path), help="Overrides model.path.")
@click.option("--output_model", "--output-model", type=click.Path(path_type=Path), help="Overrides output.model.")
@click.option("-v", "--verbose", is_flag=True, help="Also print INC's own log (always in <output.dir>/nc_workspace).")
def tune(
    config_path: Path, assignments: tuple[str, ...], input_model: Path | None, output_model: Path | None, verbose: bool
) -> None:
    """Quantize the float model with INC; write the int8 model meeting the accuracy criterion.

    tuning.objective accuracy: INC's first candidate meeting the criterion. latency: the fastest
    candidate meeting it, of a grid INC makes (fp32 fallbacks, QOperator/QDQ, calibration algorithms),
    every candidate timed against fp32 in one interleaved measurement. Every candidate is listed.
    The int8 model carries its preprocessing, the source model's sha256, the config hash, the
    measured fp32/int8 top-1 accuracy and the onnxruntime session options in its metadata_props.
    """
    from tuning.pipeline import run_tuning, summary_lines

    config = build_config(config_path, assignments, **{"model.path": input_model, "output.model": output_model})
    summary = run_tuning(config, verbose=verbose)
    if summary is None:  # a worker rank of an MPI run: rank 0 reports every rank's trials
        return
    click.echo("\n".join(summary_lines(summary)))


@cli.command()
@config_option
@set_option
@click.option("--input_model", "--input-model", type=click.Path(path_type=Path), help="Default: model.path.")
@click.option(
    "--mode", type=click.Choice(["accuracy", "performance"]), default="performance", show_default=True
)
@click.option("--batch_size", "--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
def benchmark(
    config_path: Path, assignments: tuple[str, ...], input_model: Path | None, mode: str, batch_size: int
) -> None:
    """Benchmark one model, printing the lines of INC's examples (what run_benchmark.sh does).

    \b
    accuracy:    Batch size = 1 / Accuracy: 0.98910  (top-1 on the evaluation split)
    performance: Batch size = 1 / Latency: 0.041 ms / Throughput: 24390.2 images/sec
    then one line with the conditions. Warm-up and iterations: benchmark: section of the config.
    """
    from tuning.benchmark import run_benchmark

    config = build_config(config_path, assignments)
    run = run_benchmark(config, input_model or config.model.path, mode, batch_size)
    for warning in run.warnings:
        click.echo(warning, err=True)
    for line in run.lines():
        click.echo(line)


@cli.command()
@config_option
@set_option
@click.option("--float-model", type=click.Path(path_type=Path, dir_okay=False), help="Default: model.path.")
@click.option(
    "--int8-model", type=click.Path(path_type=Path, dir_okay=False), help="Default: output.model (the tuned model)."
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    metavar="[NAME=]PATH",
    help="A model to compare with (repeatable). Default: benchmark.reference_models.",
)
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), help="Default: <output.dir>/report.")
@click.option("--skip-performance", is_flag=True, help="Accuracy, size and ops only; latency and throughput null.")
def report(
    config_path: Path,
    assignments: tuple[str, ...],
    float_model: Path | None,
    int8_model: Path | None,
    references: tuple[str, ...],
    out_dir: Path | None,
    skip_performance: bool,
) -> None:
    """Compare the float, int8 and reference models: report.json, report.md and PNG plots.

    Accuracy at the configured and the other pixel scale, agreement with the float model,
    latency and throughput (interleaved, one run), size and op types. Schema: docs/report-schema.md.
    """
    from tuning.report import run_report
    from tuning.report_data import model_entries

    config = build_config(config_path, assignments)
    entries = model_entries(
        float_model or config.model.path,
        int8_model or config.output.model,
        references or config.benchmark.reference_models,
    )
    files = run_report(config, entries, out_dir or config.output.dir / "report", performance=not skip_performance)
    click.echo(files.summary_table)
    click.echo(f"Report: {files.markdown}, {files.json}; plots: {', '.join(str(plot) for plot in files.plots)}")


@cli.command()
@click.argument("report", required=False, type=click.Path(path_type=Path, dir_okay=False))
@config_option
@set_option
@click.option("--max-int8-top1-error-pct", type=float, help="Overrides gates.max_int8_top1_error_pct.")
@click.option("--max-accuracy-drop-pp", type=float, help="Overrides gates.max_accuracy_drop_pp.")
@click.option("--max-latency-ratio", type=float, help="Overrides gates.max_latency_ratio.")
@click.option("--min-throughput-ratio", type=float, help="Overrides gates.min_throughput_ratio.")
@click.option("--baseline", type=click.Path(path_type=Path, dir_okay=False), help="Overrides gates.baseline.")
@click.option(
    "--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False), help="Also write the checks as JUnit XML."
)
@click.option(
    "--write-baseline",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Accept the report's numbers as the new baseline: write them here if every other check passes.",
)
def gate(
    report: Path | None,
    config_path: Path,
    assignments: tuple[str, ...],
    max_int8_top1_error_pct: float | None,
    max_accuracy_drop_pp: float | None,
    max_latency_ratio: float | None,
    min_throughput_ratio: float | None,
    baseline: Path | None,
    junit_path: Path | None,
    write_baseline: Path | None,
) -> None:
    """Check REPORT (default <output.dir>/report/report.json) against the gates: section.

    Exit 0 when every check passes, 1 when one fails, 2 for a usage or config error,
    3 for a missing or malformed report or baseline. Checks and formats: docs/gate.md.
    """
    from tuning.atomic import write_text_atomic
    from tuning.errors import GateFailed
    from tuning.gate import baseline_json, evaluate_gates, junit_xml, load_baseline, load_report

    config = build_config(
        config_path,
        assignments,
        **{
            "gates.max_int8_top1_error_pct": max_int8_top1_error_pct,
            "gates.max_accuracy_drop_pp": max_accuracy_drop_pp,
            "gates.max_latency_ratio": max_latency_ratio,
            "gates.min_throughput_ratio": min_throughput_ratio,
            "gates.baseline": baseline,
        },
    )
    report_data = load_report(report or config.output.dir / "report" / "report.json")
    # Accepting a new baseline replaces the old one, so comparing against the old one would only get in the way.
    accepted = None if write_baseline or config.gates.baseline is None else load_baseline(config.gates.baseline)
    checks = evaluate_gates(report_data, config.gates, accepted)
    for check in checks:
        click.echo(f"{check.status} {check.message}")
    if junit_path is not None:
        write_text_atomic(junit_path, junit_xml(checks))
    failed = [check for check in checks if not check.passed]
    if failed:
        unwritten = f"; baseline {write_baseline} not written" if write_baseline else ""
        names = ", ".join(check.name for check in failed)
        raise GateFailed(f"gate FAILED ({len(failed)} of {len(checks)} checks): {names}{unwritten}")
    if write_baseline is not None:
        write_text_atomic(write_baseline, baseline_json(report_data))
        click.echo(f"baseline written to {write_baseline}")
    skipped = sum(1 for check in checks if check.skipped)
    click.echo(f"gate: passed ({len(checks)} checks" + (f", {skipped} skipped)" if skipped else ")"))


def _raise_interrupted(signum: int, _frame: object) -> None:
    # KeyboardInterrupt, not an Exception: INC's fit() swallows Exceptions and would carry on.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _fail(message: str, code: int, same_on_every_rank: bool = False) -> None:
    """Print ``error: message`` and exit with ``code``.

    Under MPI, a rank failing on its own before the trials reached rank 0 would leave the others
    waiting forever, so it stops the whole job (mpirun exits with ``code``). A config that
    distributed tuning refuses fails every rank alike before any work: rank 0 alone reports it.
    """
    if same_on_every_rank and distributed.error_prefix():
        sys.exit(code)
    click.echo(f"error: {distributed.error_prefix()}{message}", err=True)
    if not same_on_every_rank:
        distributed.abort_unless_settled(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every PipelineError into one line and its exit code."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        cli.main(args=argv, prog_name="python -m tuning", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("interrupted; no partial output was kept", Interrupted.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ConfigError.exit_code)
    except PipelineError as exc:
        _fail(str(exc), exc.exit_code, same_on_every_rank=isinstance(exc, distributed.RefusedConfig))
    except KeyboardInterrupt:
        _fail("interrupted; no partial output was kept", Interrupted.exit_code)
