"""``gate``: the CI verdict on a report (checks, baseline, JUnit XML, GitHub annotations)."""

from __future__ import annotations

from pathlib import Path

import click

from tuning.cli.flags import config_option, option, output_model_option, run_dir_option, set_option
from tuning.cli.options import (
    USER_FILE,
    Console,
    build_config,
    config_file,
    console_options,
    current_console,
    env_flag,
    outputs_guarded,
)
from tuning.config.loading import output_input_clashes
from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError


@click.command()
@click.argument("report", required=False, type=USER_FILE)
@config_option
@set_option
@output_model_option("gate", "The int8 model tune wrote (overrides output.model): its run folder holds the report.")
@run_dir_option("The run folder whose report/report.json is checked (overrides output.dir).")
@option("--max-int8-top1-error-pct", type=float, help="Overrides gates.max_int8_top1_error_pct.")
@option("--max-accuracy-drop-pp", type=float, help="Overrides gates.max_accuracy_drop_pp.")
@option("--max-latency-ratio", type=float, help="Overrides gates.max_latency_ratio.")
@option("--min-throughput-ratio", type=float, help="Overrides gates.min_throughput_ratio.")
@option("--baseline", type=USER_FILE, help="Overrides gates.baseline.")
@option(
    "--junit", "junit_path", earlier_variable="JUNIT_PATH", type=USER_FILE, help="Also write the checks as JUnit XML."
)
@option(
    "--write-baseline",
    type=USER_FILE,
    help="Accept the report's numbers as the new baseline: write them here if every other check passes.",
)
@option("--json", "json_output", is_flag=True, earlier_variable="JSON_OUTPUT", help="Print one JSON document on stdout (docs/cli.md).")
@console_options
def gate(
    report: Path | None,
    config_path: Path | None,
    assignments: tuple[str, ...],
    output_model: Path | None,
    run_dir: Path | None,
    max_int8_top1_error_pct: float | None,
    max_accuracy_drop_pp: float | None,
    max_latency_ratio: float | None,
    min_throughput_ratio: float | None,
    baseline: Path | None,
    junit_path: Path | None,
    write_baseline: Path | None,
    json_output: bool,
) -> None:
    """Check REPORT (default <run folder>/report/report.json) against the gates: section.

    Accuracy and ratios are read on gates.runtime (onnxruntime unless set; OpenVINO's precision is
    named on every line). Exit 0 when every check passes, 1 when one fails, 2 for a usage or config error,
    3 for a missing or malformed report or baseline. Checks and formats: docs/gate.md.
    Under GitHub Actions (GITHUB_ACTIONS=true) failed and skipped checks are also printed as
    workflow annotations (::error / ::warning lines).

    \b
    Examples:
      mnist-tuning gate -o my-int8.onnx     (checks my-int8-run/report/)
      mnist-tuning gate path/to/report.json --junit gate.xml --json
      mnist-tuning gate -o my-int8.onnx --max-latency-ratio 1.0
    """
    console = current_console(json_output)
    config = build_config(
        config_path,
        assignments,
        writes_outputs=False,
        **{
            "gates.max_int8_top1_error_pct": max_int8_top1_error_pct,
            "gates.max_accuracy_drop_pp": max_accuracy_drop_pp,
            "gates.max_latency_ratio": max_latency_ratio,
            "gates.min_throughput_ratio": min_throughput_ratio,
            "gates.baseline": baseline,
            "output.model": output_model,
            "output.dir": run_dir,
        },
    )
    report_path = report or config.path("output.dir") / "report" / "report.json"
    baseline_input = [("gates.baseline", config.gates.baseline)] if config.gates.baseline is not None else []
    clash = output_input_clashes([("--junit", junit_path)], baseline_input) if junit_path is not None else None
    if clash:
        raise ConfigError(clash)
    # --write-baseline may replace gates.baseline: accepting new numbers does not read the old ones.
    inputs = [("the report", report_path), ("the config file", config_file(config_path))]
    outputs = [("--junit", junit_path), ("--write-baseline", write_baseline)]
    with outputs_guarded(outputs, inputs if write_baseline else inputs + baseline_input):
        _judge(report_path, config, console, junit_path, write_baseline, json_output)


def _judge(
    report_path: Path,
    config: PipelineConfig,
    console: Console,
    junit_path: Path | None,
    write_baseline: Path | None,
    json_output: bool,
) -> None:
    """Check the report, print the verdict, write the outputs; GateFailed when a check fails."""
    from tuning.cli.documents import gate_document
    from tuning.errors import GateFailed
    from tuning.files.atomic import write_text_atomic
    from tuning.gate.baseline import baseline_json, load_baseline
    from tuning.gate.checks import evaluate_gates
    from tuning.gate.outputs import github_annotations, junit_xml
    from tuning.gate.report_file import load_report

    report_data = load_report(report_path)
    # Accepting a new baseline replaces the old one, so comparing against the old one would only get in the way.
    accepted = None if write_baseline or config.gates.baseline is None else load_baseline(config.gates.baseline)
    checks = evaluate_gates(report_data, config.gates, accepted)
    for check in checks:
        if not (console.quiet and check.status == "PASS"):
            console.result(f"{check.status} {check.message}")
    if env_flag("GITHUB_ACTIONS"):
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
