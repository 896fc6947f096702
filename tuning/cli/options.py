"""What every command shares besides its flags (those: :mod:`tuning.cli.flags`): paths from the user, the console
(quiet, verbose, JSON), how a config is built from the file and the flags, and the guard around outputs.
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

# Every option's environment variable starts with it (tuning.cli.flags names them).
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
        path = user_path(value, given_as(param, ctx))
        if self.kind == "file" and path.is_dir():
            self.fail(f"File {str(path)!r} is a directory.", param, ctx)
        if self.kind == "folder" and path.exists() and not path.is_dir():
            self.fail(f"Directory {str(path)!r} is a file.", param, ctx)
        return path


USER_FILE = UserPath("file")
USER_FOLDER = UserPath("folder")


def given_as(param: click.Parameter | None, ctx: click.Context | None) -> str:
    """How the user gave ``param``: its environment variable, the flag spelling typed, its first long flag, or its
    argument name; what an error line about it repeats."""
    if param is None:
        return "path"
    if ctx is not None and ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT:
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        return next((name for name in names if os.environ.get(name)), names[0] if names else param.name)
    spellings = param.opts + param.secondary_opts
    if ctx is not None and isinstance(ctx.find_root().obj, CommandLine):
        # The spelling the user typed (--input_model, -m, --model): the one an error line should repeat.
        for arg in ctx.find_root().obj.args:
            typed = next((flag for flag in spellings if arg == flag or arg.startswith(f"{flag}=")), None)
            if typed:
                return typed
    flags = [opt for opt in spellings if opt.startswith("--")]
    return flags[0] if flags else param.human_readable_name


@dataclass(frozen=True)
class CommandLine:
    """The arguments as given (click's context ``obj``), so that messages name the flag spelling the user typed."""

    args: tuple[str, ...]


# The values click (and so every MNIST_TUNING_* flag) reads as booleans; every other variable is read the same way.
_TRUE, _FALSE = {"1", "true", "t", "yes", "y", "on"}, {"0", "false", "f", "no", "n", "off", ""}


def env_flag(name: str) -> bool:
    """The environment variable ``name`` as a boolean, read like click reads flags; ConfigError if it is neither."""
    text = os.environ.get(name, "").strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ConfigError(f"{name}={os.environ[name][:40]!r}: expected a boolean (true/false, 1/0, yes/no, on/off)")


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


def build_config(
    config_path: Path | None, assignments: tuple[str, ...], *, writes_outputs: bool = True, **flag_overrides: Any
) -> PipelineConfig:
    """Load the YAML, then apply --set assignments, then the dedicated flags (the most specific wins).

    ``writes_outputs`` False for the commands that read ``output.model`` rather than write it (report, gate).
    """
    path = config_file(config_path)
    overrides = installed_overrides(path)
    overrides.update(parse_override(assignment) for assignment in assignments)
    overrides.update({key: value for key, value in flag_overrides.items() if value is not None})
    return load_config(path, overrides, writes_outputs=writes_outputs)


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
