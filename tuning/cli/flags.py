"""The flag vocabulary every command shares, and the environment variable of every option.

One name per thing across commands (docs/cli.md, "Every flag and variable"): ``-c/--config`` the config,
``-m/--model`` the model a command reads, ``-o/--output-model`` the int8 model ``tune`` writes (and ``report``
and ``gate`` read), ``--run-dir`` its run folder, ``--dataset-location`` the dataset, ``-n/--iterations`` and
``-t/--min-time`` how long a benchmark runs. The spellings of INC's examples (``--input_model``,
``--output_model``, ``--dataset_location``; ``run_tuning.sh`` passes them) and the earlier names stay accepted as
hidden aliases: they work, ``--help`` leaves them out, docs/cli.md lists them.

Every option can come from the environment (prefix :data:`ENV_PREFIX`): a shared option under one name for every
command (``MNIST_TUNING_MODEL``), the others as ``MNIST_TUNING_<COMMAND>_<FLAG>`` (:func:`name_environment_variables`).
The names an option had before stay accepted after the documented one, and ``--help`` names only that one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Callable

import click

from tuning.cli.options import ENV_PREFIX, USER_FILE, USER_FOLDER, UserPath, given_as

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class Option(click.Option):
    """A click option with hidden aliases: spellings it accepts that ``--help`` does not show.

    ``earlier_variable``: the ``MNIST_TUNING_<COMMAND>_...`` suffix the option was read from before, kept
    accepted after the documented name. ``--help`` names only the documented variable.
    """

    def __init__(
        self, param_decls: Sequence[str], aliases: Sequence[str] = (), earlier_variable: str | None = None, **attrs: Any
    ) -> None:
        super().__init__([*param_decls, *aliases], **attrs)
        self.aliases = tuple(aliases)
        self.earlier_variable = earlier_variable

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts, envvar = self.opts, self.envvar
        self.opts = [opt for opt in opts if opt not in self.aliases]
        if isinstance(envvar, (list, tuple)) and envvar:
            self.envvar = envvar[0]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.envvar = opts, envvar

    def get_error_hint(self, ctx: click.Context) -> str:
        # click's hint joins every spelling ('-m' / '--model' / '--input-model' / ...): name the one given.
        return f"'{given_as(self, ctx)}'"


option = functools.partial(click.option, cls=Option)


def variables(param: click.Parameter) -> list[str]:
    """The environment variables ``param`` reads, the documented one first."""
    if param.envvar is None:
        return []
    return [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)


def aliases(param: click.Parameter) -> tuple[str, ...]:
    """The hidden spellings of ``param`` (none for a plain click option or an argument)."""
    return param.aliases if isinstance(param, Option) else ()


config_option = option(
    "-c",
    "--config",
    "config_path",
    type=USER_FILE,
    envvar=f"{ENV_PREFIX}_CONFIG",
    show_envvar=True,
    help="The YAML config; every key and its default: docs/configuration.md. Default: the project's "
    "configs/mnist.yaml (an installed package outside the clone: its own copy, with MNIST from the user cache "
    "and the output model in the current folder).",
)
set_option = option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    envvar=f"{ENV_PREFIX}_SET",
    show_envvar=True,
    help="Override one config key, e.g. --set tuning.max_trials=5 (repeatable; value read as YAML; "
    "from the environment: assignments separated by spaces).",
)


def _shared(name: str, command: str, earlier: str | None) -> list[str]:
    """The variable every command reads for a shared option, then the one its ``earlier`` flag had (if any)."""
    old = [f"{ENV_PREFIX}_{command}_{earlier[2:]}".replace("-", "_").upper()] if earlier else []
    return [f"{ENV_PREFIX}_{name}", *old]


def model_option(command: str, help_text: str, earlier: str = "--input-model") -> Decorator:
    """-m/--model: the model the command reads; INC's --input_model and the command's ``earlier`` flag stay aliases,
    and that flag's variable an earlier name."""
    return option(
        "-m", "--model", "model", aliases=_aliases("--model", "--input-model", "--input_model", earlier),
        type=UserPath("file" if command == "report" else None),
        envvar=_shared("MODEL", command, earlier), show_envvar=True, help=help_text,
    )  # fmt: skip


def output_model_option(command: str, help_text: str, earlier: str | None = None) -> Decorator:
    """-o/--output-model: the int8 model tune writes (output.model); INC's --output_model and the command's
    ``earlier`` flag stay aliases, and that flag's variable an earlier name."""
    return option(
        "-o", "--output-model", "output_model", aliases=_aliases("--output-model", "--output_model", earlier),
        type=UserPath("file" if command == "report" else None),
        envvar=_shared("OUTPUT_MODEL", command, earlier), show_envvar=True, help=help_text,
    )  # fmt: skip


def _aliases(canonical: str, *spellings: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(spelling for spelling in spellings if spelling and spelling != canonical))


def run_dir_option(help_text: str) -> Decorator:
    """--run-dir: output.dir, the run folder (summary, INC's workspace and log, report/)."""
    return option(
        "--run-dir", "run_dir", type=USER_FOLDER, envvar=f"{ENV_PREFIX}_RUN_DIR", show_envvar=True, help=help_text
    )


def dataset_location_option(command: str) -> Decorator:
    """--dataset-location: dataset.root (the flag of INC's examples, which spell it --dataset_location)."""
    return option(
        "--dataset-location", "dataset_location", aliases=("--dataset_location",), type=USER_FOLDER,
        envvar=_shared("DATASET_LOCATION", command, "--dataset-location"), show_envvar=True,
        help="Overrides dataset.root: the folder holding the IDX files (never downloaded into).",
    )  # fmt: skip


def length_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """How long a benchmark runs (the benchmark: section; OpenVINO's benchmark_app has -niter and -t)."""
    for decorator in reversed(
        (
            option("-n", "--iterations", metavar="N", type=click.IntRange(1, 10_000_000),
                   help="Overrides benchmark.iterations: timed images per model and batch size, at least."),
            option("-t", "--min-time", "min_time_s", metavar="SECONDS", type=click.FloatRange(0, 60),
                   help="Overrides benchmark.min_time_s: timed seconds per model and batch size, at least "
                   "(benchmark_app's -t)."),
            option("--rounds", metavar="N", type=click.IntRange(1, 100),
                   help="Overrides benchmark.rounds: session sets, each with fresh sessions; intervals are over them."),
            option("--warmup", metavar="N", type=click.IntRange(0, 10_000_000),
                   help="Overrides benchmark.warmup: untimed images before each model's timing."),
        )
    ):  # fmt: skip
        command = decorator(command)
    return command


def length_overrides(
    iterations: int | None, min_time_s: float | None, rounds: int | None, warmup: int | None
) -> dict[str, Any]:
    """The config keys :func:`length_options` set, for :func:`~tuning.cli.options.build_config`."""
    return {
        "benchmark.iterations": iterations,
        "benchmark.min_time_s": min_time_s,
        "benchmark.rounds": rounds,
        "benchmark.warmup": warmup,
    }


def name_environment_variables(command: click.Command) -> click.Command:
    """Give every option without a variable of its own ``MNIST_TUNING_<COMMAND>_<FLAG>``: its first long flag in
    capitals with ``_`` for ``-``, as documented, then its ``earlier_variable``. (click's automatic names, used
    before, came from the Python parameter name: ``--junit`` was ``..._JUNIT_PATH``.)"""
    for param in command.params:
        if not isinstance(param, click.Option) or param.envvar or not param.allow_from_autoenv:
            continue
        flag = next(opt for opt in param.opts if opt.startswith("--"))
        earlier = param.earlier_variable if isinstance(param, Option) else None
        param.envvar = [
            f"{ENV_PREFIX}_{command.name}_{suffix}".upper()
            for suffix in (flag[2:].replace("-", "_"), *([earlier] if earlier else []))
        ]
        param.show_envvar = True
    return command
