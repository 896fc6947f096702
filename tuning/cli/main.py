"""Command-line interface: thin click commands over the pipeline's stages.

Exit codes: 0 success, 1 a gate failed, 2 usage or config error, 3 bad input file
(model, dataset, report, download), 4 tuning found no model, 5 output not writable,
130 interrupted.

Output: results go to stdout, progress lines and warnings to stderr; with ``--json`` stdout holds
one JSON document (schema: docs/cli.md) and every human line goes to stderr. Every option can come
from the environment (prefix ``MNIST_TUNING_``, see :data:`ENV_PREFIX`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from tuning.config.enums import QuantFormat, Runtime
from tuning.config.loading import load_config, output_input_clashes, parse_override
from tuning.config.schema import SHIPPED_CONFIG, PipelineConfig
from tuning.errors import (
    OUTPUT_ERRNOS,
    ConfigError,
    Interrupted,
    OutputError,
    PipelineError,
    one_line,
)
from tuning.inc import distributed
from tuning.measure.environment import distribution_version

DEFAULT_CONFIG = SHIPPED_CONFIG
# MNIST_TUNING_CONFIG, MNIST_TUNING_SET, MNIST_TUNING_QUIET, MNIST_TUNING_VERBOSE for the options every
# command has; MNIST_TUNING_<COMMAND>_<OPTION> for the others (click's auto_envvar_prefix).
ENV_PREFIX = "MNIST_TUNING"
# What --version reports besides this package: the libraries whose versions decide the results.
VERSIONED_DISTRIBUTIONS = ("neural-compressor", "onnxruntime", "onnx", "openvino")  # openvino: the optional extra
PACKAGE = "mnist-int8-tuning"

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


def _console_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """-q/--quiet and -v/--verbose on every command; read back with :func:`_console`."""
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


def _console(json_output: bool = False) -> Console:
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


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    versions = ", ".join(f"{name} {distribution_version(name) or 'not installed'}" for name in VERSIONED_DISTRIBUTIONS)
    python = ".".join(map(str, sys.version_info[:3]))
    click.echo(f"{ctx.find_root().info_name} {distribution_version(PACKAGE)} ({versions}, Python {python})")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    allow_from_autoenv=False,
    callback=_print_version,
    help="Print the versions of this package, INC, onnxruntime, onnx and OpenVINO (the optional extra), then exit.",
)
def cli() -> None:
    """Accuracy-driven INC post-training quantization of an ONNX classifier.

    \b
    Typical run (what run_tuning.sh does):
      python -m tuning tune --input_model=models/mnist-12.onnx \\
          --config=configs/mnist.yaml --output_model=models/mnist-12-int8.onnx

    \b
    Every option can also come from the environment: MNIST_TUNING_CONFIG, MNIST_TUNING_SET,
    MNIST_TUNING_QUIET, MNIST_TUNING_VERBOSE, and MNIST_TUNING_<COMMAND>_<OPTION> for the
    others (e.g. MNIST_TUNING_GATE_JUNIT). A flag on the command line wins.
    """


@cli.command()
@config_option
@set_option
@_console_options
def fetch(config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """Download model.url to model.path unless a copy with model.sha256 is already there."""
    from tuning.files.fetch import ensure_file, sha256_of

    console = _console()
    config = build_config(config_path, assignments)
    path = ensure_file(
        config.path("model.path"),
        config.model.url,
        config.model.sha256,
        max_bytes=config.model.max_bytes,
        deadline_s=config.model.download_timeout_s,
    )
    verdict = "verified" if config.model.sha256 else "not verified (model.sha256 is not set)"
    console.result(f"{path}: sha256 {sha256_of(path)} {verdict}")


@cli.command()
@config_option
@set_option
@click.option(
    "--input_model",
    "--input-model",
    type=click.Path(path_type=Path),
    help="Overrides model.path; the config's model.sha256 and model.url then apply only if it is the same file.",
)
@click.option(
    "--input_sha256", "--input-sha256", help="Overrides model.sha256: the sha256 --input_model must have."
)
@click.option("--output_model", "--output-model", type=click.Path(path_type=Path), help="Overrides output.model.")
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
@_console_options
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
    console = _console()
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
    # Importing INC (with torch and scikit-learn) takes seconds: say so before it starts.
    console.progress("tune: loading Intel Neural Compressor, onnxruntime and torch (takes a few seconds)")
    from tuning.pipeline import run_tuning, summary_lines

    summary = run_tuning(config, verbose=console.verbose, progress=console.progress)
    if summary is None:  # a worker rank of an MPI run: rank 0 reports every rank's trials
        return
    console.result("\n".join(summary_lines(summary)))


@cli.command()
@config_option
@set_option
@click.option("--input_model", "--input-model", type=click.Path(path_type=Path), help="Default: model.path.")
@dataset_location_option
@click.option(
    "--mode", type=click.Choice(["accuracy", "performance"]), default="performance", show_default=True
)
@click.option(
    "--batch_size", "--batch-size", type=click.IntRange(min=1, max=1_000_000), default=1, show_default=True
)
@click.option(
    "--runtime",
    type=click.Choice([runtime.value for runtime in Runtime]),
    default=Runtime.ONNXRUNTIME.value,
    show_default=True,
    help="Where the model runs. openvino: OpenVINO's defaults (its precision is printed); openvino-f32 / "
    "openvino-bf16 set its precision hint. OpenVINO needs the extra: bash scripts/setup_env.sh openvino.",
)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout (docs/cli.md).")
@_console_options
def benchmark(
    config_path: Path | None,
    assignments: tuple[str, ...],
    input_model: Path | None,
    dataset_location: Path | None,
    mode: str,
    batch_size: int,
    runtime: str,
    json_output: bool,
) -> None:
    """Benchmark one model on one runtime, printing the lines of INC's examples (what run_benchmark.sh does).

    \b
    accuracy:    Batch size = 1 / Accuracy: 0.98910  (top-1 on the evaluation split)
    performance: Batch size = 1 / Latency: 0.041 ms / Throughput: 24390.2 images/sec
    then one line with the conditions. Warm-up and iterations: benchmark: section of the config.
    """
    from tuning.cli.documents import benchmark_document
    from tuning.measure.benchmark import run_benchmark

    console = _console(json_output)
    config = build_config(config_path, assignments, **{"dataset.root": dataset_location})
    model_path = input_model or config.path("model.path")
    target_runtime = Runtime(runtime)
    run = run_benchmark(config, model_path, mode, batch_size, target_runtime)
    for warning in run.warnings:
        console.warning(warning)
    *results, conditions = run.lines()
    console.result("\n".join(results))
    console.note(conditions)
    if json_output:
        console.document(benchmark_document(run, model_path, mode, target_runtime, config))


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
@dataset_location_option
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), help="Default: <output.dir>/report.")
@click.option("--skip-performance", is_flag=True, help="Accuracy, size and ops only; latency and throughput null.")
@_console_options
def report(
    config_path: Path | None,
    assignments: tuple[str, ...],
    float_model: Path | None,
    int8_model: Path | None,
    references: tuple[str, ...],
    dataset_location: Path | None,
    out_dir: Path | None,
    skip_performance: bool,
) -> None:
    """Compare the float, int8 and reference models: report.json, report.md and PNG plots.

    Accuracy at the configured and the other pixel scale, agreement with the float model,
    latency and throughput (interleaved, one run), size and op types, on every runtime of
    benchmark.runtimes (onnxruntime; OpenVINO with the openvino extra). Schema: docs/report-schema.md.
    """
    from tuning.report.numbers import model_entries
    from tuning.report.run import run_report

    console = _console()
    config = build_config(config_path, assignments, **{"dataset.root": dataset_location})
    entries = model_entries(
        float_model or config.path("model.path"),
        int8_model or config.path("output.model"),
        references or config.benchmark.reference_models,
    )
    files = run_report(config, entries, out_dir or config.path("output.dir") / "report", performance=not skip_performance)
    console.note(files.summary_table)
    plots = ", ".join(str(plot) for plot in files.plots)
    console.result(f"Report: {files.html} (one page), {files.markdown}, {files.json}; plots: {plots}")


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
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout (docs/cli.md).")
@_console_options
def gate(
    report: Path | None,
    config_path: Path | None,
    assignments: tuple[str, ...],
    max_int8_top1_error_pct: float | None,
    max_accuracy_drop_pp: float | None,
    max_latency_ratio: float | None,
    min_throughput_ratio: float | None,
    baseline: Path | None,
    junit_path: Path | None,
    write_baseline: Path | None,
    json_output: bool,
) -> None:
    """Check REPORT (default <output.dir>/report/report.json) against the gates: section.

    Accuracy and ratios are read on gates.runtime (onnxruntime unless set; OpenVINO's precision is
    named on every line). Exit 0 when every check passes, 1 when one fails, 2 for a usage or config error,
    3 for a missing or malformed report or baseline. Checks and formats: docs/gate.md.
    Under GitHub Actions (GITHUB_ACTIONS=true) failed and skipped checks are also printed as
    workflow annotations (::error / ::warning lines).
    """
    from tuning.cli.documents import gate_document
    from tuning.errors import GateFailed
    from tuning.files.atomic import write_text_atomic
    from tuning.gate.checks import (
        baseline_json,
        evaluate_gates,
        github_annotations,
        junit_xml,
        load_baseline,
        load_report,
    )

    console = _console(json_output)
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
    report_path = report or config.path("output.dir") / "report" / "report.json"
    baseline_inputs = [("gates.baseline", config.gates.baseline)] if config.gates.baseline else []
    for option, output, inputs in (
        ("--junit", junit_path, [("the report", report_path), *baseline_inputs]),
        ("--write-baseline", write_baseline, [("the report", report_path)]),  # it may replace gates.baseline
    ):
        clash = output_input_clashes([(option, output)], inputs) if output is not None else None
        if clash:
            raise ConfigError(clash)
    report_data = load_report(report_path)
    # Accepting a new baseline replaces the old one, so comparing against the old one would only get in the way.
    accepted = None if write_baseline or config.gates.baseline is None else load_baseline(config.gates.baseline)
    checks = evaluate_gates(report_data, config.gates, accepted)
    for check in checks:
        if not (console.quiet and check.status == "PASS"):
            console.result(f"{check.status} {check.message}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(checks):
            console.result(line)
    if junit_path is not None:
        write_text_atomic(junit_path, junit_xml(checks))
    failed = [check for check in checks if not check.passed]
    written = write_baseline if write_baseline is not None and not failed else None
    if written is not None:
        write_text_atomic(written, baseline_json(report_data, config.gates.runtime))
    if json_output:
        console.document(gate_document(checks, report_path, config.gates.runtime, written))
    if failed:
        unwritten = f"; baseline {write_baseline} not written" if write_baseline else ""
        names = ", ".join(check.name for check in failed)
        raise GateFailed(f"gate FAILED ({len(failed)} of {len(checks)} checks): {names}{unwritten}")
    if written is not None:
        console.result(f"baseline written to {written}")
    skipped = sum(1 for check in checks if check.skipped)
    console.result(f"gate: passed ({len(checks)} checks" + (f", {skipped} skipped)" if skipped else ")"))


def _raise_interrupted(signum: int, _frame: object) -> None:
    # KeyboardInterrupt, not an Exception: INC's fit() swallows Exceptions and would carry on.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _fail(message: str, code: int, same_on_every_rank: bool = False) -> None:
    """Print ``error: message`` on one line and exit with ``code``.

    Under MPI, a rank failing on its own before the trials reached rank 0 would leave the others
    waiting forever, so it stops the whole job (mpirun exits with ``code``). A config that
    distributed tuning refuses fails every rank alike before any work: rank 0 alone reports it.
    """
    if same_on_every_rank and distributed.error_prefix():
        sys.exit(code)
    click.echo(one_line(f"error: {distributed.error_prefix()}{message}"), err=True)
    if not same_on_every_rank:
        distributed.abort_unless_settled(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every PipelineError into one line and its exit code."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        # No prog_name: click takes it from how we were started (mnist-tuning, or python -m tuning).
        cli.main(args=argv, standalone_mode=False, auto_envvar_prefix=ENV_PREFIX)
    except click.exceptions.Abort:
        _fail("interrupted; no partial output was kept", Interrupted.exit_code)
    except click.ClickException as exc:
        # click's own block is three lines (usage, hint, error); the project's rule is one.
        context = getattr(exc, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _fail(f"{exc.format_message()}{hint}", ConfigError.exit_code, same_on_every_rank=True)
    except PipelineError as exc:
        _fail(str(exc), exc.exit_code, same_on_every_rank=isinstance(exc, distributed.RefusedConfig))
    except KeyboardInterrupt:
        _fail("interrupted; no partial output was kept", Interrupted.exit_code)
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}cannot write output ({exc.strerror})", OutputError.exit_code)
