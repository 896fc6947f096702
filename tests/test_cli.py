"""The CLI as users call it: run_tuning.sh in a subprocess, exit codes and one-line errors."""

from __future__ import annotations

import os
import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
from conftest import ROOT

from tuning.files.onnx_io import read_metadata


def run_tuning_sh(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # The test interpreter's environment counts as activated, so the script does not build .venv.
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(ROOT / "run_tuning.sh"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """Exit ``code`` and one ``error:`` line, the last on stderr; before it only tune's progress lines."""
    assert result.returncode == code, result.stderr
    *progress, last = [line for line in result.stderr.splitlines() if line.strip()]
    assert last.startswith("error: ") and all(line.startswith("tune: ") for line in progress), result.stderr
    for fragment in fragments:
        assert fragment in last


def test_run_tuning_sh_with_inc_style_flags(tmp_path):
    output = tmp_path / "out" / "mnist-12-int8.onnx"
    result = run_tuning_sh(
        "--input_model=models/mnist-12.onnx",
        "--config",
        "configs/mnist.yaml",
        f"--output_model={output}",
        "--set",
        f"output.dir={tmp_path / 'run'}",
        "--set",
        "tuning.max_trials=2",
    )
    assert result.returncode == 0, result.stderr
    assert f"-> {output}" in result.stdout
    assert "top-1 error" in result.stdout and "objective latency" in result.stdout
    assert re.search(r"^ +0 +fp32 baseline ", result.stdout, re.M)
    # The configured format (configs/mnist.yaml: QDQ) first, then the other.
    assert re.search(r"^ +1( \*)? +QDQ, minmax, fp32: none ", result.stdout, re.M)
    assert re.search(r"^ +2( \*)? +QOperator, minmax, fp32: none ", result.stdout, re.M)
    assert re.search(r"Chosen: trial [12] \(", result.stdout)
    # max_trials 2 cuts the greedy search after its first stage: the console says what was not made and what to raise,
    # after one progress line per stage.
    assert "tune: search stage 2, each node alone in fp32: 6 candidates (2 made so far" in result.stderr
    assert re.search(r"^warning: the search was cut by tuning.max_trials after 2 candidates: not made: 6 candidates "
                     r"of stage 'each node alone in fp32' .*raise tuning.max_trials to at least 8$", result.stdout, re.M)  # fmt: skip
    # The answer comes last: the error change from the summary's accuracies, then the speed verdict.
    summary = json.loads((tmp_path / "run" / "tuning_summary.json").read_text())
    change = 100 * (summary["fp32_top1_accuracy"] - summary["int8_top1_accuracy"])
    answer = result.stdout.rstrip().splitlines()[-1]
    assert answer.startswith(f"Answer: top-1 error int8 {100 * (1 - summary['int8_top1_accuracy']):.2f} % vs fp32 ")
    assert f"({change:+.2f} pp); int8 vs fp32: batch 1 " in answer
    assert answer.endswith(summary["latency_measurement"]["verdict"]["line"].split("; on ", 1)[1])
    metadata = read_metadata(onnx.load(str(output)))
    assert metadata["source_sha256"] == "5c688690f8bacf667d4c2074af5ad0646ca328d7ab03eccf944a65b320171bdd"
    assert not (ROOT / "nc_workspace").exists() and not (tmp_path / "nc_workspace").exists()
    assert (tmp_path / "run" / "nc_workspace" / "inc.log").is_file()


def test_config_error_is_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tuning:\n  max_trails: 3\n")
    assert_one_line_error(run_tuning_sh(f"--config={bad}"), 2, "unknown key 'tuning.max_trails'", "max_trials")


def test_missing_input_model_is_exit_code_3(tmp_path):
    result = run_tuning_sh(f"--input_model={tmp_path / 'absent.onnx'}", "--set", "model.url=null")
    assert_one_line_error(result, 3, "absent.onnx")


def test_unmet_criterion_is_exit_code_4_and_keeps_the_existing_output(tmp_path):
    output = tmp_path / "kept.onnx"
    output.write_bytes(b"previous model")
    result = run_tuning_sh(
        f"--output_model={output}",
        "--set",
        "tuning.accuracy_criterion.tolerance=0",
        "--set",
        "tuning.max_trials=1",
        "--set",
        "tuning.strategy=basic",
        "--set",
        # QOperator: its first candidate quantizes every op and loses accuracy (QDQ's keeps the bias Add in fp32).
        "quantization.format=QOperator",
        "--set",
        f"output.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, 4, "no int8 model meeting the accuracy criterion")
    assert output.read_bytes() == b"previous model"
