"""The gate command in a subprocess: exit codes, one-line errors, JUnit and baseline files.

The checks themselves are unit-tested in tests/test_gate.py (part of the fast subset); these run
``python -m tuning gate`` as CI does, so they stay out of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import CONFIG
from test_gate import make_report, write_json

from tuning.gate.baseline import load_baseline

ROOT = Path(__file__).resolve().parent.parent




def run_gate(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuning", "gate", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_passes_on_good_numbers_and_writes_junit(tmp_path):
    junit = tmp_path / "ci" / "gate.xml"
    result = run_gate(write_json(tmp_path, make_report()), "--junit", junit)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "PASS int8 top-1 error: 1.11 % <= 1.50 % allowed",
        "PASS accuracy drop vs float: 0.01 pp <= 0.10 pp allowed",
        # configs/mnist.yaml checks speed; a report without intervals is judged on its points.
        "PASS latency ratio int8/float: 0.80x <= 1.30x allowed (p50 on onnxruntime)",
        "PASS throughput ratio int8/float: 1.30x >= 0.75x required (batch 256 on onnxruntime)",
        "gate: passed (4 checks)",
    ]
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "4"


def test_cli_exits_1_listing_each_failed_check(tmp_path):
    report = write_json(tmp_path, make_report(int8_accuracy=0.5452, other_scale_accuracy=0.9892))
    junit = tmp_path / "gate.xml"
    result = run_gate(report, "--junit", junit)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL int8 top-1 error: 45.48 % > 1.50 % allowed (model int8: models/int8.onnx")
    assert lines[1].startswith("FAIL accuracy drop vs float: 44.38 pp > 0.10 pp allowed")
    assert "likely calibrated for the other preprocessing" in lines[1]
    assert result.stderr == (
        "error: gate FAILED (2 of 4 checks): int8 top-1 error, accuracy drop vs float\n"
    )
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "2"


def test_cli_flags_override_the_config(tmp_path):
    report = write_json(tmp_path, make_report(latency_p50=1.5))
    result = run_gate(report, "--max-latency-ratio", "1.2", "--max-int8-top1-error-pct", "1.0")
    assert result.returncode == 1
    assert "FAIL int8 top-1 error: 1.11 % > 1.00 % allowed" in result.stdout
    assert "FAIL latency ratio int8/float: 1.50x > 1.20x allowed (p50 on onnxruntime)" in result.stdout


def test_cli_reads_the_default_report_under_the_output_dir(tmp_path):
    # No report argument: <output.dir>/report/report.json, whose numbers (a 2.23 % error) are the ones judged.
    (tmp_path / "out" / "report").mkdir(parents=True)
    default = write_json(tmp_path / "out" / "report", make_report(int8_accuracy=0.9777))
    result = run_gate("--set", f"output.dir={tmp_path / 'out'}", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["report"] == str(default) and document["passed"] is False
    error = next(check for check in document["checks"] if check["name"] == "int8 top-1 error")
    assert error["status"] == "FAIL" and error["measured"] == pytest.approx(100 * (1 - 0.9777))


def test_cli_write_baseline_then_gate_against_it(tmp_path):
    baseline = tmp_path / "baselines" / "mnist.json"
    result = run_gate(write_json(tmp_path, make_report()), "--write-baseline", baseline)
    assert result.returncode == 0, result.stderr
    assert f"baseline written to {baseline}" in result.stdout
    assert load_baseline(baseline)["int8_top1_accuracy"] == 0.9889

    slower = write_json(tmp_path, make_report(latency_p50=1.0), "slower.json")
    result = run_gate(slower, "--baseline", baseline)
    assert result.returncode == 1
    assert "FAIL latency ratio vs baseline: 1.00x > 0.88x allowed" in result.stdout


def test_cli_does_not_write_a_baseline_for_a_failing_report(tmp_path):
    baseline = tmp_path / "baseline.json"
    result = run_gate(write_json(tmp_path, make_report(int8_accuracy=0.5)), "--write-baseline", baseline)
    assert result.returncode == 1
    assert f"baseline {baseline} not written" in result.stderr
    assert not baseline.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--set", "gates.max_latncy_ratio=1.2"),
        ("--max-accuracy-drop-pp", "-0.5"),
        ("--set", "gates.max_int8_top1_error_pct=-1"),
        ("--max-latency-ratio", "fast"),
    ],
)
def test_cli_exits_2_on_usage_or_config_errors(tmp_path, args):
    result = run_gate(write_json(tmp_path, make_report()), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    # Ours print one "error:" line; click's own usage errors end with one "Error:" line.
    assert result.stderr.strip().splitlines()[-1].lower().startswith("error: ")
    assert "Traceback" not in result.stderr


def test_cli_exits_2_naming_the_unknown_gate_key(tmp_path):
    result = run_gate(write_json(tmp_path, make_report()), "--set", "gates.max_latncy_ratio=1.2")
    assert result.stderr == (
        f"error: {CONFIG}: unknown key 'gates.max_latncy_ratio' (did you mean 'max_latency_ratio'?)\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "report file not found"),
        ("{ not json", "not valid JSON"),
        (json.dumps({**make_report(), "schema_version": 7}), "schema_version 7 is not supported"),
    ],
)
def test_cli_exits_3_on_a_bad_report_with_one_line(tmp_path, content, expected):
    report = tmp_path / "report.json"
    if content is not None:
        report.write_text(content)
    result = run_gate(report)
    assert result.returncode == 3
    assert result.stderr.startswith(f"error: {report}: ") and expected in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_cli_exits_3_on_a_missing_baseline(tmp_path):
    result = run_gate(write_json(tmp_path, make_report()), "--baseline", tmp_path / "none.json")
    assert result.returncode == 3
    assert result.stderr == f"error: {tmp_path / 'none.json'}: baseline file not found\n"
