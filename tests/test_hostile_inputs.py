"""Issue 22's classes, each with its inputs built for real: long names, symlink loops, NUL bytes, /proc files,
sparse padding after a valid .gz, real signals at the commit window, two processes on one output.

Commands run as users run them (``python -m tuning``, a subprocess). A hook (``sitecustomize.py`` on
PYTHONPATH, imported by Python at start-up) plays what cannot be timed from outside: an interrupt while the
CLI's modules import, a signal right after the first rename of a commit, a run holding its output.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_gate import make_report, write_json

from tuning.data import idx
from tuning.errors import INTERNAL_ERROR_EXIT_CODE, InputError
from tuning.files.fetch import sha256_of
from tuning.files.locks import TEMPORARY_NAME_EXTRA

CONFIG = ROOT / "configs" / "mnist.yaml"
MNIST_RAW = ROOT / "data" / "MNIST" / "raw"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_TUNING_") and k != "GITHUB_ACTIONS"}
    return {**env, **extra}


def tuning(*args: str | Path, hook: str | None = None, tmp: Path | None = None, **popen) -> subprocess.CompletedProcess:
    env = clean_env(**popen.pop("env", {}))
    if hook is not None:
        assert tmp is not None
        (tmp / "hook").mkdir(exist_ok=True)
        (tmp / "hook" / "sitecustomize.py").write_text(textwrap.dedent(hook))
        env["PYTHONPATH"] = f"{tmp / 'hook'}:{ROOT}"
    return subprocess.run(
        [sys.executable, "-m", "tuning", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, **popen,
    )  # fmt: skip


def error_line(result: subprocess.CompletedProcess, code: int) -> str:
    """The run's single stderr line, an ``error:`` line, after checking the exit code."""
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- 1. one validated user path; anything unexpected is one line, exit 70 ---------------------------------


def test_a_model_path_of_300_characters_is_one_line_exit_2(tmp_path: Path) -> None:
    line = error_line(tuning("tune", f"--input_model={tmp_path / ('m' * 300)}.onnx"), 2)
    assert line.startswith("error: --input_model: the name mmm") and "is 305 bytes long" in line


def test_a_symlink_loop_as_the_model_is_one_line_exit_2_from_a_flag_and_from_the_yaml(tmp_path: Path) -> None:
    loop = tmp_path / "loop.onnx"
    loop.symlink_to(loop)
    assert error_line(tuning("tune", f"--input_model={loop}"), 2) == (
        f"error: --input_model: {loop}: a loop of symbolic links"
    )
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  path: loop.onnx\n")
    assert error_line(tuning("tune", f"--config={config}"), 2) == (
        f"error: {config}: model.path: {loop}: a loop of symbolic links"
    )
    # The case that held before and regressed (a RuntimeError from Path.resolve()): the config's model.path, a
    # loop, compared with another --input_model. The loop is not used, so the run goes on to that model.
    result = tuning("tune", f"--config={config}", f"--input_model={tmp_path / 'other.onnx'}")
    assert result.returncode == 3 and result.stderr.splitlines()[-1].endswith(
        "other.onnx: model file not found and no model.url to download it from"
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--set", "model.path=123"], {}, "error: --set model.path: expected a path (text), got int 123"),
        (["--set", "output.dir=[1]"], {}, "error: --set output.dir: expected a path (text), got list [1]"),
        ([], {"MNIST_TUNING_TUNE_INPUT_MODEL": "a\x01b"}, None),  # control characters are legal, NUL is not
        (["--set", "model.path=/proc/self/pagemap"], {}, "error: --set model.path: /proc/self/pagemap is in /proc"),
    ],
)
def test_paths_from_set_and_the_environment_go_through_the_same_check(args, env, expected) -> None:
    result = tuning("tune", *args, "--output_model=/nonexistent-dir-for-test/x.onnx", env=env)
    if expected is None:
        assert result.returncode != INTERNAL_ERROR_EXIT_CODE and "Traceback" not in result.stderr
        return
    assert error_line(result, 2).startswith(expected)


def test_a_nul_byte_in_a_path_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('model:\n  path: "model\\0.onnx"\n')
    assert error_line(tuning("tune", f"--config={config}"), 2) == (
        f"error: {config}: model.path: the path contains a NUL byte, which no file name can hold"
    )
    line = error_line(tuning("tune", "--set", 'model.path="a\\0b"'), 2)
    assert line == "error: --set model.path: the path contains a NUL byte, which no file name can hold"


def test_a_dataset_file_that_links_into_proc_is_refused_exit_3(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in os.listdir(MNIST_RAW):
        (raw / name).symlink_to(MNIST_RAW / name)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "t10k-labels-idx1-ubyte.gz").symlink_to("/proc/self/pagemap")
    started = time.monotonic()
    result = tuning("benchmark", "--mode=accuracy", f"--dataset_location={tmp_path}")
    line = error_line(result, 3)
    assert "t10k-labels-idx1-ubyte.gz: dataset archive is a file of /proc or /sys" in line
    assert time.monotonic() - started < 60


def test_ctrl_c_while_the_cli_imports_is_one_line_exit_130(tmp_path: Path) -> None:
    hook = """
        import os, signal, sys
        class InterruptOnImport:
            def find_spec(self, name, path=None, target=None):
                if name == "tuning.cli.options":
                    os.kill(os.getpid(), signal.SIGINT)
                return None
        sys.meta_path.insert(0, InterruptOnImport())
    """
    result = tuning("gate", "--help", hook=hook, tmp=tmp_path)
    assert error_line(result, 130) == "error: interrupted (SIGINT) while starting; no output was replaced"


def test_an_unexpected_exception_is_one_line_exit_70_and_its_traceback_needs_verbose(tmp_path: Path) -> None:
    hook = """
        import tuning.gate.checks
        def broken(*args, **kwargs):
            raise ZeroDivisionError("played by the test")
        tuning.gate.checks.evaluate_gates = broken
    """
    report = write_json(tmp_path, make_report())
    line = error_line(tuning("gate", report, hook=hook, tmp=tmp_path), INTERNAL_ERROR_EXIT_CODE)
    assert line == (
        "error: internal error (ZeroDivisionError: played by the test); this is a bug of mnist-int8-tuning, not of "
        "your input: rerun with --verbose for the traceback, and please report it"
    )
    verbose = tuning("gate", report, "--verbose", hook=hook, tmp=tmp_path)
    assert verbose.returncode == INTERNAL_ERROR_EXIT_CODE
    assert "Traceback (most recent call last)" in verbose.stderr and "the traceback is above" in verbose.stderr


# --- 2. every read bounded, hashing included ------------------------------------------------------------


@pytest.mark.fast
def test_hashing_a_proc_file_stops_at_once() -> None:
    with pytest.raises(InputError, match="is a file of /proc or /sys"):
        sha256_of(Path("/proc/self/pagemap"))


@pytest.mark.fast
def test_hashing_stops_at_the_bound_whatever_the_size_said(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    with open(model, "wb") as handle:
        handle.truncate(3 * 1024 * 1024)  # sparse: nothing written, 3 MiB read
    with pytest.raises(InputError, match=r"model file is larger than model.max_bytes \(1048576 bytes\)"):
        sha256_of(model, max_bytes=1024 * 1024)
    assert len(sha256_of(model, max_bytes=3 * 1024 * 1024)) == 64


@pytest.mark.fast
def test_a_valid_gz_with_gigabytes_of_zero_padding_stops_at_the_compressed_bound(tmp_path: Path) -> None:
    name = "t10k-labels-idx1-ubyte"
    spec = idx.IdxFile("MNIST", name, idx.CONTENT_SHA256["MNIST"][name], None)
    archive = tmp_path / f"{name}.gz"
    shutil.copyfile(MNIST_RAW / f"{name}.gz", archive)
    with open(archive, "ab") as handle:
        handle.write(bytes(1024))  # a little padding, as some tools leave: still read
    assert idx.read_verified(tmp_path, spec)[1] == gzip.decompress((MNIST_RAW / f"{name}.gz").read_bytes())
    os.truncate(archive, 8 * 1024**3)  # 8 GiB of zeros after the stream, sparse on disk
    started = time.monotonic()
    with pytest.raises(InputError, match=r"dataset archive is larger than the archive size limit \(67108864 bytes\)"):
        idx.read_verified(tmp_path, spec)
    assert time.monotonic() - started < 20


# --- 3. no command writes over one of its inputs, the config included --------------------------------------


def test_gate_outputs_naming_the_config_are_refused_and_the_config_kept(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    shutil.copyfile(CONFIG, config)
    before = config.read_bytes()
    report = write_json(tmp_path, make_report())
    for flag in ("--junit", "--write-baseline"):
        line = error_line(tuning("gate", report, f"--config={config}", f"{flag}={config}"), 2)
        assert line == f"error: {flag} ({config}) is the config file ({config}); refusing to overwrite an input"
    link = tmp_path / "link.xml"
    os.link(config, link)
    assert "is the config file" in error_line(tuning("gate", report, f"--config={config}", f"--junit={link}"), 2)
    same = tmp_path / "same"
    line = error_line(tuning("gate", report, f"--junit={same}", f"--write-baseline={same}"), 2)
    assert line.endswith("each output needs its own")
    assert config.read_bytes() == before


def test_report_out_dir_holding_the_config_under_an_output_name_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config = out / "report.md"
    shutil.copyfile(CONFIG, config)
    before = config.read_bytes()
    line = error_line(tuning("report", f"--config={config}", f"--out-dir={out}", "--skip-performance"), 2)
    assert line.startswith(f"error: {out}/report.md ({config}) is the config file")
    assert config.read_bytes() == before and sorted(os.listdir(out)) == ["report.md"]


# --- 4. every interrupt signal handled alike, and the final message true --------------------------------------


COMMIT_HOOK = """
    import os, signal
    real_replace = os.replace
    def replace_then_signal(source, destination):
        real_replace(source, destination)
        if str(destination).endswith(os.environ["SIGNAL_AFTER"]):
            os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
    os.replace = replace_then_signal
"""


@pytest.mark.parametrize("signal_name", ["SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT"])
def test_a_signal_right_after_a_rename_is_reported_as_a_complete_write(tmp_path: Path, signal_name: str) -> None:
    report = write_json(tmp_path, make_report())
    baseline = tmp_path / "baseline.json"
    result = tuning(
        "gate", report, f"--write-baseline={baseline}", hook=COMMIT_HOOK, tmp=tmp_path,
        env={"SIGNAL": signal_name, "SIGNAL_AFTER": "baseline.json"},
    )  # fmt: skip
    line = error_line(result, 130) if "PASS" not in result.stderr else None
    assert result.returncode == 130
    assert (line or result.stderr.splitlines()[-1]) == (
        f"error: interrupted ({signal_name}) after writing {baseline}; those outputs are complete"
    )
    assert json.loads(baseline.read_text())["schema_version"] == 2
    assert sorted(os.listdir(tmp_path)) == ["baseline.json", "hook", "report.json"]  # no temporary, backup, lock


@pytest.mark.parametrize("signal_name", ["SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT"])
def test_a_signal_between_the_renames_of_one_commit_replaces_both_and_says_so(tmp_path: Path, signal_name: str) -> None:
    # The tune command's commit (the model and its summary), played by the same atomic_outputs block.
    model, summary = tmp_path / "model.onnx", tmp_path / "run" / "tuning_summary.json"
    summary.parent.mkdir()
    model.write_text("old model")
    summary.write_text("old summary")
    script = f"""
        import os, signal
        from pathlib import Path
        from tuning.cli.main import interrupted_message
        from tuning.files.atomic import atomic_outputs, write_text_atomic
        from tuning.files.signals import stop_on_interrupt_signals
        stop_on_interrupt_signals()
        real_replace = os.replace
        def replace_then_signal(source, destination):
            real_replace(source, destination)
            if str(destination).endswith("model.onnx"):
                os.kill(os.getpid(), signal.{signal_name})
        os.replace = replace_then_signal
        try:
            with atomic_outputs():
                write_text_atomic(Path({str(model)!r}), "new model")
                write_text_atomic(Path({str(summary)!r}), "new summary")
        except KeyboardInterrupt as exc:
            print(interrupted_message(str(exc)))
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == (
        f"interrupted ({signal_name}) after writing {model}, {summary}; those outputs are complete"
    ), done.stderr
    assert model.read_text() == "new model" and summary.read_text() == "new summary"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "run"] and os.listdir(tmp_path / "run") == [summary.name]


@pytest.mark.parametrize("signal_name", ["SIGHUP", "SIGQUIT"])
def test_hup_and_quit_before_the_commit_replace_nothing_and_say_so(tmp_path: Path, signal_name: str) -> None:
    hook = """
        import os, signal, tuning.gate.checks
        real = tuning.gate.checks.evaluate_gates
        def evaluate_then_signal(*args, **kwargs):
            os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
            return real(*args, **kwargs)
        tuning.gate.checks.evaluate_gates = evaluate_then_signal
    """
    report = write_json(tmp_path, make_report())
    junit = tmp_path / "gate.xml"
    junit.write_text("old")
    result = tuning("gate", report, f"--junit={junit}", hook=hook, tmp=tmp_path, env={"SIGNAL": signal_name})
    assert error_line(result, 130) == f"error: interrupted ({signal_name}); no output was replaced"
    assert junit.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["gate.xml", "hook", "report.json"]


# --- 5. every output checked before the work ---------------------------------------------------------------


def test_a_legal_output_name_too_long_for_its_temporary_fails_before_any_work(tmp_path: Path) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    output = tmp_path / ("m" * (limit - 5) + ".onnx")  # legal: exactly the file system's limit
    started = time.monotonic()
    line = error_line(tuning("tune", f"--output_model={output}"), 5)
    assert line.startswith("error: output.model: the name mmm") and f"at most {limit - TEMPORARY_NAME_EXTRA}" in line
    assert time.monotonic() - started < 30 and os.listdir(tmp_path) == []


# --- 6. exit codes and small lies ------------------------------------------------------------------------------


def test_a_closed_or_broken_stderr_keeps_the_exit_code(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "tuning", "tune", f"--config={tmp_path / 'missing.yaml'}"]
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stderr fails with EPIPE
    try:
        broken = subprocess.run(args, cwd=ROOT, stderr=write_end, stdout=subprocess.DEVNULL, env=clean_env())
    finally:
        os.close(write_end)
    assert broken.returncode == 2  # the config error's code, not 1 or 120
    no_stderr = subprocess.run(
        ["bash", "-c", 'exec "$@" 2>&-', "-", *args], cwd=ROOT, stdout=subprocess.DEVNULL, env=clean_env()
    )
    assert no_stderr.returncode == 2


def test_a_users_file_named_like_a_temporary_survives_the_next_run(tmp_path: Path) -> None:
    report = write_json(tmp_path, make_report())
    users = tmp_path / ".gate.xml.0123456789ab.tmp"
    users.write_text("mine")
    assert tuning("gate", report, f"--junit={tmp_path / 'gate.xml'}").returncode == 0
    assert users.read_text() == "mine"


def test_true_is_refused_for_float_keys_as_for_integer_keys() -> None:
    float_key = error_line(tuning("gate", "--set", "gates.max_latency_ratio=true"), 2)
    assert float_key.endswith("gates.max_latency_ratio: expected a number, got true")
    int_key = error_line(tuning("gate", "--set", "tuning.max_trials=true"), 2)
    assert "tuning.max_trials" in int_key


@pytest.mark.parametrize("variable", ["GITHUB_ACTIONS", "MNIST_TUNING_QUIET"])
def test_an_environment_boolean_that_is_not_one_is_an_error_for_every_variable(tmp_path: Path, variable: str) -> None:
    report = write_json(tmp_path, make_report())
    line = error_line(tuning("gate", report, env={variable: "maybe"}), 2)
    assert variable in line and "maybe" in line
    assert tuning("gate", report, env={variable: "Yes"}).returncode == 0


# --- 7. two runs on one output ------------------------------------------------------------------------------------


def test_a_second_run_on_the_same_output_stops_naming_the_first(tmp_path: Path) -> None:
    hook = """
        import os, time
        from pathlib import Path
        real_replace = os.replace
        def slow_replace(source, destination):
            if os.environ.get("HOLD") and str(destination).endswith("gate.xml"):
                Path(os.environ["HOLD"]).write_text(str(os.getpid()))
                time.sleep(5)
            real_replace(source, destination)
        os.replace = slow_replace
    """
    report = write_json(tmp_path, make_report())
    junit, holding = tmp_path / "gate.xml", tmp_path / "holding"
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(textwrap.dedent(hook))
    env = clean_env(PYTHONPATH=f"{tmp_path / 'hook'}:{ROOT}", HOLD=str(holding))
    first = subprocess.Popen(
        [sys.executable, "-m", "tuning", "gate", str(report), f"--junit={junit}"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not holding.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = tuning("gate", report, f"--junit={junit}")
        assert error_line(second, 5) == (
            f"error: {junit}: another run (pid {first.pid}) is writing this output; wait for it to end, or choose "
            "another output"
        )
    finally:
        assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    assert junit.read_text().startswith("<?xml")


def test_a_yaml_key_holding_a_newline_is_quoted_so_the_error_stays_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("deployment:\n  session_config_entries:\n    ? \"\\n\"\n    : null\n", encoding="utf-8")
    line = error_line(tuning("gate", "--config", config), 2)
    assert line.endswith("deployment.session_config_entries.'\\n': Input should be a valid string, got None")
