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


def test_ci_runs_the_whole_suite_with_the_test_command_the_readme_names() -> None:
    ci_commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "scripts/test.sh" in line]
    assert ci_commands == ["bash scripts/test.sh all"]
    two_commands = (ROOT / "README.md").read_text().split("## The two commands", 1)[1].split("\n## ", 1)[0]
    readme_lines = [line for line in two_commands.splitlines() if line.startswith("bash scripts/test.sh")]
    assert any(line.split("#")[0].strip() == ci_commands[0] and "as .ci/run runs it" in line for line in readme_lines)
    assert any(line.split("#")[0].strip() == "bash scripts/test.sh" and "fast" in line for line in readme_lines)


def test_the_test_command_selects_the_fast_subset_unless_told_all() -> None:
    # Every test of tests/test_gate.py is fast; none of tests/test_gate_cli.py is (it runs the gate in subprocesses).
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}  # CI's would write its JUnit

    def collected(*args: str) -> list[str]:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "test.sh"), *args, "--collect-only", "-q", "-p", "no:cacheprovider",
             "tests/test_gate_cli.py", "tests/test_gate.py"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return [line for line in done.stdout.splitlines() if "::" in line]

    everything, default, fast = collected("all"), collected(), collected("fast")
    assert default == fast
    assert {test.split("::")[0] for test in default} == {"tests/test_gate.py"}
    assert set(default) < set(everything) and any(test.startswith("tests/test_gate_cli.py") for test in everything)
