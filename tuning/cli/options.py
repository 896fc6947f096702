"""What every command shares: the config options, the console flags and how a config is built from them.

Every option can come from the environment (prefix ``MNIST_TUNING_``, see :data:`ENV_PREFIX`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from tuning.config.loading import load_config, output_input_clashes, parse_override
from tuning.config.schema import PipelineConfig
from tuning.config.shipped import default_config, installed_overrides
from tuning.errors import ConfigError
from tuning.files.inputs import same_file
from tuning.files.locks import check_writable, output_locks
from tuning.files.paths import user_path

# MNIST_TUNING_CONFIG, MNIST_TUNING_SET, MNIST_TUNING_QUIET, MNIST_TUNING_VERBOSE for the options every
# command has; MNIST_TUNING_<COMMAND>_<OPTION> for the others (click's auto_envvar_prefix).
ENV_PREFIX = "MNIST_TUNING"



class UserPath(click.ParamType):
    """A path from a flag, an argument or its environment variable, checked by :func:`~tuning.files.paths.user_path`.

    ``kind`` "file" refuses an existing folder, "folder" an existing file, in click's usage-error line.
    """

    name = "path"

    def __init__(self, kind: str | None = None) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        if isinstance(value, Path):
            return value  # a default, or converted already
        path = user_path(value, _source(param, ctx))
        if self.kind == "file" and path.is_dir():
            self.fail(f"File {str(path)!r} is a directory.", param, ctx)
        if self.kind == "folder" and path.exists() and not path.is_dir():
            self.fail(f"Directory {str(path)!r} is a file.", param, ctx)
        return path


USER_PATH = UserPath()
USER_FILE = UserPath("file")
USER_FOLDER = UserPath("folder")


def _source(param: click.Parameter | None, ctx: click.Context | None) -> str:
    """How the user gave ``param``: its environment variable, or its longest flag, or its argument name."""
    if param is None:
        return "path"
    if ctx is not None and ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT:
        envvar = param.envvar if isinstance(param.envvar, str) else None
        return envvar or f"{ENV_PREFIX}_{ctx.info_name}_{param.name}".upper()
    flags = [opt for opt in param.opts if opt.startswith("--")]
    return max(flags, key=len) if flags else param.human_readable_name


# The values click (and so every MNIST_TUNING_* flag) reads as booleans; every other variable is read the same way.
_TRUE, _FALSE = {"1", "true", "t", "yes", "y", "on"}, {"0", "false", "f", "no", "n", "off", ""}


def env_flag(name: str) -> bool:
    """The environment variable ``name`` as a boolean, read like click reads flags; ConfigError if it is neither."""
    text = os.environ.get(name, "").strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ConfigError(f"{name}={os.environ[name][:40]!r}: expected a boolean (true/false, 1/0, yes/no, on/off)")


config_option = click.option(
    "--config",
    "config_path",
    type=USER_FILE,
    envvar=f"{ENV_PREFIX}_CONFIG",
    show_envvar=True,
    help="YAML config (schema: README, 'Configuration'). Default: the project's configs/mnist.yaml; an installed "
    "package outside the clone uses its own copy, with MNIST from the user cache and outputs in the current folder.",
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
    type=USER_FOLDER,
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
    if param.name == "verbose" and value:
        _requested.add("verbose")


# What main() must know after a command failed, when click's context is gone.
_requested: set[str] = set()


def verbose_requested(argv: Sequence[str] | None) -> bool:
    """Whether --verbose was given (parsed, or at least present in the arguments, if parsing never got there)."""
    return "verbose" in _requested or any(arg in ("-v", "--verbose") for arg in (argv or []))


def current_console(json_output: bool = False) -> Console:
    meta = click.get_current_context().meta
    quiet, verbose = meta.get("tuning.quiet", False), meta.get("tuning.verbose", False)
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    return Console(quiet=quiet, verbose=verbose, json=json_output)


def config_file(config_path: Path | None) -> Path | None:
    """The config file a command reads: ``--config``, else the shipped one (tuning/config/shipped.py)."""
    return default_config() if config_path is None else config_path


def build_config(config_path: Path | None, assignments: tuple[str, ...], **flag_overrides: Any) -> PipelineConfig:
    """Load the YAML, then apply --set assignments, then the dedicated flags (the most specific wins)."""
    path = config_file(config_path)
    overrides = installed_overrides(path)
    overrides.update(parse_override(assignment) for assignment in assignments)
    overrides.update({key: value for key, value in flag_overrides.items() if value is not None})
    return load_config(path, overrides)


Named = Sequence[tuple[str, "Path | None"]]


@contextlib.contextmanager
def outputs_guarded(outputs: Named, inputs: Named) -> Iterator[None]:
    """Before any work: refuse an output that is an input or another output (exit 2), or that cannot be written
    (exit 5); then hold every output's lock for the block, so a second run on one of them stops at once."""
    given = [(name, Path(path)) for name, path in outputs if path is not None]
    read = [(name, Path(path)) for name, path in inputs if path is not None]
    clash = output_input_clashes(given, read)
    if clash:
        raise ConfigError(clash)
    for index, (name, path) in enumerate(given):
        for other_name, other in given[index + 1 :]:
            if same_file(path, other):
                raise ConfigError(f"{name} and {other_name} name the same file ({path}); each output needs its own")
    for name, path in given:
        check_writable(path, name)
    with output_locks([path for _, path in given]):
        yield
