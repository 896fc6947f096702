"""What every command shares: the config options, the console flags and how a config is built from them.

Every option can come from the environment (prefix ``MNIST_TUNING_``, see :data:`ENV_PREFIX`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from tuning.config.loading import load_config, parse_override
from tuning.config.schema import SHIPPED_CONFIG, PipelineConfig

DEFAULT_CONFIG = SHIPPED_CONFIG
# MNIST_TUNING_CONFIG, MNIST_TUNING_SET, MNIST_TUNING_QUIET, MNIST_TUNING_VERBOSE for the options every
# command has; MNIST_TUNING_<COMMAND>_<OPTION> for the others (click's auto_envvar_prefix).
ENV_PREFIX = "MNIST_TUNING"

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=f"{ENV_PREFIX}_CONFIG",
    show_envvar=True,
    help="YAML config (schema: README, 'Configuration'). Default: the project's configs/mnist.yaml; an installed "
    "package without that folder uses the built-in defaults (the README's table).",
)
set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    envvar=f"{ENV_PREFIX}_SET",
    show_envvar=True,
    help="Override one config key, e.g. --set tuning.max_trials=5 (repeatable; value read as YAML; "
    "from the environment: assignments separated by spaces).",
)
dataset_location_option = click.option(
    "--dataset_location",
    "--dataset-location",
    "dataset_location",
    type=click.Path(path_type=Path, file_okay=False),
    help="Overrides dataset.root (the flag of INC's examples).",
)


@dataclass
class Console:
    """Where a command's lines go. Quiet: results, warnings and errors only; verbose: also details.

    With ``--json`` stdout carries the document alone, so the human result lines move to stderr.
    """

    quiet: bool = False
    verbose: bool = False
    json: bool = False
    started: float = field(default_factory=time.perf_counter)

    def progress(self, text: str) -> None:
        """What the command is doing now (stderr); dropped by --quiet, timed by --verbose."""
        if self.quiet:
            return
        elapsed = f"[{time.perf_counter() - self.started:5.1f} s] " if self.verbose else ""
        click.echo(f"{elapsed}{text}", err=True)

    def result(self, text: str) -> None:
        click.echo(text, err=self.json)

    def note(self, text: str) -> None:
        """Context for a result (conditions, file lists); dropped by --quiet."""
        if not self.quiet:
            self.result(text)

    def warning(self, text: str) -> None:
        click.echo(text, err=True)

    def document(self, document: dict[str, Any]) -> None:
        click.echo(json.dumps(document, indent=2))


_CONSOLE_FLAGS = (  # applied in reverse so that --help lists --quiet first
    ("verbose", "-v", "Also print details: INC's own log on tune, elapsed time on progress lines."),
    ("quiet", "-q", "Print only results, warnings and errors (no progress lines or notes)."),
)


def console_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """-q/--quiet and -v/--verbose on every command; read back with :func:`current_console`."""
    for name, short, help_text in _CONSOLE_FLAGS:
        command = click.option(
            short,
            f"--{name}",
            is_flag=True,
            expose_value=False,
            envvar=f"{ENV_PREFIX}_{name.upper()}",
            show_envvar=True,
            callback=_remember,
            help=help_text,
        )(command)
    return command


def _remember(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta[f"tuning.{param.name}"] = value


def current_console(json_output: bool = False) -> Console:
    meta = click.get_current_context().meta
    quiet, verbose = meta.get("tuning.quiet", False), meta.get("tuning.verbose", False)
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    return Console(quiet=quiet, verbose=verbose, json=json_output)


def build_config(config_path: Path | None, assignments: tuple[str, ...], **flag_overrides: Any) -> PipelineConfig:
    """Load the YAML, then apply --set assignments, then the dedicated flags (the most specific wins)."""
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    overrides = dict(parse_override(assignment) for assignment in assignments)
    overrides.update({key: value for key, value in flag_overrides.items() if value is not None})
    return load_config(config_path, overrides)
