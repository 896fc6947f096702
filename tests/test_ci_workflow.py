"""The GitHub workflow does what CI users expect: pip cache, the report in the job summary, the report and
the JUnit files kept. Its summary step is run here with bash, as the runner would run it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "quantization-gate.yml"


def _job() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["gate"]


def _step(name: str) -> dict[str, Any]:
    return next(step for step in _job()["steps"] if step.get("name") == name)


def test_pip_downloads_are_cached_on_the_lock_files() -> None:
    setup = next(step for step in _job()["steps"] if str(step.get("uses", "")).startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    assert "requirements*.lock" in setup["with"]["cache-dependency-path"]


def test_the_report_and_both_junit_files_are_uploaded_even_after_a_failure() -> None:
    upload = _step("Keep the report and the JUnit files")
    assert upload["if"] == "always()"
    paths = upload["with"]["path"].split()
    tests_junit = _job()["env"]["PYTEST_ADDOPTS"].removeprefix("--junitxml=")
    assert {"outputs/ci/report/", "outputs/ci/gate-junit.xml", tests_junit} <= set(paths)
    assert "--junit outputs/ci/gate-junit.xml" in (ROOT / ".ci" / "run").read_text().replace('"$out', "outputs/ci")


def _run_summary_step(workdir: Path) -> str:
    summary = workdir / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    result = subprocess.run(
        ["bash", "-e", "-c", _step("Report in the job summary")["run"]],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return summary.read_text(encoding="utf-8")


def test_the_summary_step_writes_the_report_tables_without_broken_image_links(tmp_path: Path) -> None:
    report = tmp_path / "outputs" / "ci" / "report" / "report.md"
    report.parent.mkdir(parents=True)
    report.write_text("# Quantization report\n\n| model | top-1 error |\n| :--- | ---: |\n| int8 | 1.11 % |\n\n"
                      "![latency distribution per model](latency.png)\n")  # fmt: skip
    summary = _run_summary_step(tmp_path)
    assert "| int8 | 1.11 % |" in summary and "# Quantization report" in summary
    assert "![" not in summary and "artifact quantization-report" in summary


def test_the_summary_step_says_when_there_is_no_report(tmp_path: Path) -> None:
    assert "No report" in _run_summary_step(tmp_path)
