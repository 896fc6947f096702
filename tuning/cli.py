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
    """Quantize the float model with INC until the accuracy criterion is met; write the int8 model.

    The int8 model carries its preprocessing, the source model's sha256, the config hash
    and the measured fp32/int8 top-1 accuracy in its metadata_props.
    """
    from tuning.pipeline import run_tuning

    config = build_config(config_path, assignments, **{"model.path": input_model, "output.model": output_model})
    summary = run_tuning(config, verbose=verbose)
    fp32_error = 1 - summary.fp32_top1_accuracy
    int8_error = 1 - summary.int8_top1_accuracy
    click.echo(
        f"Tuned {summary.source_model} -> {summary.output_model} in {summary.seconds:.1f} s "
        f"({summary.int8_trials} INC trial{'s' if summary.int8_trials != 1 else ''})"
    )
    click.echo(f"  {'model':<6}{'top-1 error':>13}{'size':>12}")
    click.echo(f"  {'fp32':<6}{fp32_error:>13.2%}{summary.source_bytes:>10,} B")
    click.echo(f"  {'int8':<6}{int8_error:>13.2%}{summary.output_bytes:>10,} B")
    click.echo(f"  error change: {100 * (int8_error - fp32_error):+.2f} percentage points")
    for trial in summary.trials[1:]:
        verdict = "meets" if trial.meets_criterion else "misses"
        click.echo(
            f"  trial {trial.index}: top-1 {trial.accuracy:.2%}, {verdict} the criterion, "
            f"{len(trial.int8_nodes)} int8 / {len(trial.fp32_nodes)} fp32 nodes"
        )
    click.echo(f"Summary: {summary.summary_path}")


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}; no partial output was kept")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every PipelineError into one line and its exit code."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        cli.main(args=argv, prog_name="python -m tuning", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: interrupted; no partial output was kept", err=True)
        sys.exit(Interrupted.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ConfigError.exit_code)
    except PipelineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted; no partial output was kept", err=True)
        sys.exit(Interrupted.exit_code)
