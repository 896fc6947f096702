"""Command-line interface: thin click commands over the pipeline's stages.

Exit codes: 0 success, 1 a gate failed, 2 usage or config error, 3 bad input file
(model, dataset, report, download), 4 tuning found no model, 5 output not writable (or held by
another run), 6 int8 slower than fp32 when the config says to fail then, 70 internal error (a bug),
130 interrupted (SIGINT, SIGTERM, SIGHUP or SIGQUIT).

Output: results go to stdout, progress lines and warnings to stderr; with ``--json`` stdout holds
one JSON document (schema: docs/cli.md) and every human line goes to stderr. Every option can come
from the environment (prefix ``MNIST_TUNING_``, see :data:`tuning.cli.options.ENV_PREFIX`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import traceback
from typing import NoReturn

import click

from tuning.cli.benchmark import benchmark
from tuning.cli.fetch import fetch
from tuning.cli.gate import gate
from tuning.cli.flags import name_environment_variables
from tuning.cli.options import CommandLine, verbose_requested
from tuning.cli.report import report
from tuning.cli.tune import tune
from tuning.errors import (
    INTERNAL_ERROR_EXIT_CODE,
    OUTPUT_ERRNOS,
    ConfigError,
    Interrupted,
    OutputError,
    PipelineError,
    one_line,
)
from tuning.files.atomic import committed_outputs
from tuning.files.signals import stop_on_interrupt_signals
from tuning.inc import distributed
from tuning.measure.environment import capture_environment, distribution_version

# What --version reports besides this package: the libraries whose versions decide the results.
VERSIONED_DISTRIBUTIONS = ("neural-compressor", "onnxruntime", "onnx", "openvino")  # openvino: the optional extra
PACKAGE = "mnist-int8-tuning"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    versions = ", ".join(f"{name} {distribution_version(name) or 'not installed'}" for name in VERSIONED_DISTRIBUTIONS)
    python = ".".join(map(str, sys.version_info[:3]))
    click.echo(f"{ctx.find_root().info_name} {distribution_version(PACKAGE)} ({versions}, Python {python})")
    # Every speed figure depends on the CPU class as much as on the versions (int8 pays with VNNI, hardly without).
    click.echo(f"CPU: {capture_environment().features()}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    allow_from_autoenv=False,
    callback=_print_version,
    help="Print the versions of this package, INC, onnxruntime, onnx and OpenVINO (the optional extra) and the CPU class, then exit.",
)
def cli() -> None:
    """Accuracy-driven INC post-training quantization of an ONNX classifier.

    \b
    A run, its report and the CI gate:
      mnist-tuning tune -o my-int8.onnx      (int8 model; run folder my-int8-run/)
      mnist-tuning report -o my-int8.onnx    (my-int8-run/report/report.html)
      mnist-tuning gate -o my-int8.onnx      (exit 1 when a check fails)

    \b
    The same flag names the same thing in every command:
      -c, --config          the YAML config (every key: docs/configuration.md)
      -m, --model           the model read (tune, report: float; benchmark: any)
      -o, --output-model    the int8 model tune writes, report and gate read
      --run-dir             its run folder (default: <its stem>-run/ beside it)
      --dataset-location    the folder holding MNIST's IDX files
      --set KEY.PATH=VALUE  any other config key
    INC's example flags (--input_model, --output_model, ...) work too.

    \b
    Every option can also come from the environment: MNIST_TUNING_CONFIG,
    MNIST_TUNING_SET, MNIST_TUNING_MODEL, MNIST_TUNING_OUTPUT_MODEL,
    MNIST_TUNING_RUN_DIR, MNIST_TUNING_DATASET_LOCATION, MNIST_TUNING_QUIET,
    MNIST_TUNING_VERBOSE, and MNIST_TUNING_<COMMAND>_<FLAG> for the others
    (e.g. MNIST_TUNING_GATE_JUNIT). A flag on the command line wins.
    Every flag and variable: docs/cli.md.
    """


for command in (fetch, tune, benchmark, report, gate):
    cli.add_command(name_environment_variables(command))


def _fail(message: str, code: int, same_on_every_rank: bool = False) -> NoReturn:
    """Print ``error: message`` on one line and exit with ``code``.

    Under MPI, a rank failing on its own before the trials reached rank 0 would leave the others
    waiting forever, so it stops the whole job (mpirun exits with ``code``). A config that
    distributed tuning refuses fails every rank alike before any work: rank 0 alone reports it.
    """
    if same_on_every_rank and distributed.error_prefix():
        exit_flushed(code)
    _print_error(one_line(f"error: {distributed.error_prefix()}{message}"))
    if not same_on_every_rank:
        distributed.abort_unless_settled(code)
    exit_flushed(code)


def _print_error(line: str) -> None:
    # A closed or broken stderr must not turn the documented exit code into another one.
    try:
        click.echo(line, err=True)
    except (OSError, ValueError):
        pass


def exit_flushed(code: int) -> NoReturn:
    """Exit with ``code`` even when stdout or stderr cannot be flushed (a closed pipe, a full disk).

    Python would otherwise fail its own final flush and exit with 120 instead. The objects alive now are
    frozen out of the interpreter's last garbage collections, which otherwise scan all of them: with INC
    and its dependencies loaded that took 2-3 s after a tuning run's outputs were complete. Finalizers,
    atexit handlers and reference counting still run; only cyclic garbage left at exit is not collected.
    """
    gc.freeze()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    sys.exit(code)


def interrupted_message(signal_name: str) -> str:
    """What an interrupt left: nothing replaced, or every output of a commit, complete (never half of one)."""
    written = committed_outputs()
    if not written:
        return f"interrupted ({signal_name}); no output was replaced"
    return f"interrupted ({signal_name}) after writing {', '.join(map(str, written))}; those outputs are complete"


def _internal_error(exc: BaseException, argv: list[str] | None) -> NoReturn:
    """One line for an exception no code of this package expected; the traceback with --verbose."""
    if verbose_requested(argv):
        with contextlib.suppress(OSError, ValueError):
            traceback.print_exception(exc)
        hint = "the traceback is above"
    else:
        hint = "rerun with --verbose for the traceback"
    _fail(
        f"internal error ({type(exc).__name__}: {exc}); this is a bug of mnist-int8-tuning, not of your input: "
        f"{hint}, and please report it",
        INTERNAL_ERROR_EXIT_CODE,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every exception into one ``error:`` line and its exit code (returns on success)."""
    stop_on_interrupt_signals()
    try:
        # No prog_name: click takes it from how we were started (mnist-tuning, or python -m tuning).
        args = sys.argv[1:] if argv is None else argv
        cli.main(args=args, standalone_mode=False, obj=CommandLine(tuple(args)))
    except click.exceptions.Abort as exc:  # click's wrapping of a KeyboardInterrupt, which names the signal
        cause = exc.__cause__ or exc.__context__
        name = str(cause) if isinstance(cause, KeyboardInterrupt) and str(cause) else "SIGINT"
        _fail(interrupted_message(name), Interrupted.exit_code)
    except click.ClickException as exc:
        # click's own block is three lines (usage, hint, error); the project's rule is one.
        context = getattr(exc, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _fail(f"{exc.format_message()}{hint}", ConfigError.exit_code, same_on_every_rank=True)
    except PipelineError as exc:
        _fail(str(exc), exc.exit_code, same_on_every_rank=isinstance(exc, distributed.RefusedConfig))
    except KeyboardInterrupt as exc:
        _fail(interrupted_message(str(exc) or "SIGINT"), Interrupted.exit_code)
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRNOS:
            _internal_error(exc, argv)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}cannot write output ({exc.strerror})", OutputError.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        _internal_error(exc, argv)
