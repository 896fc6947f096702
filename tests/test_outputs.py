"""A run's outputs are replaced together or not at all; killed runs leave nothing that lasts.

Real runs of the CLI on a small MLP built here (INC tunes it in seconds), real SIGKILLs at random
moments, a real RLIMIT_FSIZE for a full disk, a real read-only bind mount where the system allows it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import assert_one_line_error
from tiny_models import mlp

from tuning.config.loading import load_config, parse_override
from tuning.config.schema import PipelineConfig
from tuning.errors import OutputError
from tuning.files.atomic import (
    atomic_outputs,
    write_text_atomic,
)
from tuning.pipeline import run_tuning


def temporaries(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob(".*.tmp"))


# --- the transaction, in-process -----------------------------------------------------------------


@pytest.mark.fast
@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["file", "absent", "directory"]), min_size=1, max_size=5), st.binary(max_size=64))
def test_outputs_are_replaced_together_or_not_at_all(tmp_path_factory, kinds: list[str], payload: bytes) -> None:
    folder = tmp_path_factory.mktemp("set")
    paths = [folder / f"out{i}" for i in range(len(kinds))]
    for path, kind in zip(paths, kinds):
        if kind == "file":
            path.write_bytes(b"old " + path.name.encode())
        elif kind == "directory":
            path.mkdir()
    before = {path: path.read_bytes() if path.is_file() else None for path in paths}
    try:
        with atomic_outputs():
            for path in paths:
                write_text_atomic(path, f"new {path.name} {payload.hex()}")
    except OutputError as exc:
        assert "directory" in kinds and "\n" not in str(exc)
        assert {path: path.read_bytes() if path.is_file() else None for path in paths} == before
    else:
        assert "directory" not in kinds
        assert all(path.read_text() == f"new {path.name} {payload.hex()}" for path in paths)
    assert temporaries(folder) == []


@pytest.mark.fast
def test_an_exception_inside_the_block_keeps_every_old_output(tmp_path: Path) -> None:
    first, second = tmp_path / "model.onnx", tmp_path / "summary.json"
    first.write_text("old model")
    with pytest.raises(RuntimeError), atomic_outputs():
        write_text_atomic(first, "new model")
        raise RuntimeError("the summary failed")
    assert first.read_text() == "old model" and not second.exists() and temporaries(tmp_path) == []


@pytest.mark.fast
@pytest.mark.parametrize("failing_rename", [1, 2, 3])
def test_a_rename_failing_half_way_puts_the_earlier_outputs_back(tmp_path: Path, monkeypatch, failing_rename: int) -> None:
    # A rename failing after others succeeded cannot be produced on demand on a real file system
    # (the directory check runs first), so this one test makes os.replace fail on its n-th call.
    import tuning.files.atomic

    paths = [tmp_path / name for name in ("a", "b", "c")]
    paths[0].write_text("old a")
    paths[2].write_text("old c")
    calls = []
    real_replace = os.replace

    def replace(source, destination):  # type: ignore[no-untyped-def]
        calls.append(destination)
        if len(calls) == failing_rename:
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(tuning.files.atomic.os, "replace", replace)
    with pytest.raises(OutputError, match="No space left"):
        with atomic_outputs():
            for path in paths:
                write_text_atomic(path, f"new {path.name}")
    monkeypatch.setattr(tuning.files.atomic.os, "replace", real_replace)
    assert paths[0].read_text() == "old a" and not paths[1].exists() and paths[2].read_text() == "old c"
    assert temporaries(tmp_path) == []


# Stale temporaries of a killed run, and a user's files named like them: tests/test_output_locks.py.


# --- real runs ------------------------------------------------------------------------------------


def tune_args(model: Path, out: Path, seed: int = 0) -> list[str]:
    return [
        sys.executable, "-m", "tuning", "tune", f"--config={ROOT / 'configs' / 'mnist.yaml'}",
        f"--input_model={model}", f"--output_model={out / 'model.onnx'}",
        "--set", "model.sha256=null", "--set", f"dataset.root={ROOT / 'data'}", "--set", f"output.dir={out / 'run'}",
        "--set", "tuning.objective=accuracy", "--set", "tuning.accuracy_criterion.kind=absolute",
        "--set", "tuning.accuracy_criterion.tolerance=0.5", "--set", f"calibration.seed={seed}",
    ]  # fmt: skip


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def one_error_line(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The error line of a failed run (test_cli's rule: the last on stderr, after tune's progress lines)."""
    assert_one_line_error(result, code, *fragments)
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return mlp(tmp_path_factory.mktemp("tiny") / "mlp.onnx")


def test_sigkill_at_random_moments_leaves_old_or_new_outputs_and_the_next_run_cleans_up(tmp_path, tiny) -> None:
    out = tmp_path / "out"
    model, summary = out / "model.onnx", out / "run" / "tuning_summary.json"
    run_tuning(tiny_config(tiny, out, seed=0))  # the old outputs (in this process: INC is imported once)
    old_model = model.read_bytes()
    run_tuning(tiny_config(tiny, tmp_path / "reference", seed=1))  # what the killed runs would write
    new_model = (tmp_path / "reference" / "model.onnx").read_bytes()
    assert new_model != old_model  # another calibration sample: the two states can be told apart
    valid = {hashlib.sha256(old_model).hexdigest(), hashlib.sha256(new_model).hexdigest()}

    rng = random.Random(14)
    # Random moments over a run (a run takes ~5-15 s here), and moments right when a temporary output appears.
    moments = [("random", rng.uniform(0.5, 10)) for _ in range(2)] + [("write-window", 0.0)] * 2
    for kind, delay in moments:
        process = subprocess.Popen(tune_args(tiny, out, seed=1), cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        if kind == "random":
            time.sleep(delay)
        else:
            deadline = time.monotonic() + 300
            while not list(out.glob(".model.onnx.*.tmp")) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert model.read_bytes() in (old_model, new_model), kind
        state = json.loads(summary.read_text())  # never half-written
        assert state["output_sha256"] in valid
    run_tuning(tiny_config(tiny, out, seed=1))
    assert model.read_bytes() == new_model
    assert json.loads(summary.read_text())["output_sha256"] == hashlib.sha256(new_model).hexdigest()
    assert temporaries(out) == [], temporaries(out)


def tiny_config(model: Path, out: Path, seed: int = 0) -> PipelineConfig:
    """The overrides of tune_args, for runs in this process (INC is imported once, not per run)."""
    args = tune_args(model, out, seed)
    overrides = dict(parse_override(args[i + 1]) for i, flag in enumerate(args) if flag == "--set")
    overrides |= {"model.path": str(model), "output.model": str(out / "model.onnx")}
    return load_config(ROOT / "configs" / "mnist.yaml", overrides)


def test_a_summary_that_cannot_be_written_keeps_the_old_model(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "out"
    (out / "run" / "tuning_summary.json").mkdir(parents=True)
    (out / "model.onnx").write_bytes(b"previous model")
    with pytest.raises(OutputError, match="tuning_summary.json"):
        run_tuning(tiny_config(tiny, out))
    assert (out / "model.onnx").read_bytes() == b"previous model" and temporaries(out) == []


def test_report_md_a_directory_keeps_report_json_and_plots(tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    for name in ("report.json", "confusion-int8.png"):
        (report_dir / name).write_bytes(b"previous " + name.encode())
    (report_dir / "report.md").mkdir()
    result = run([
        sys.executable, "-m", "tuning", "report", "--skip-performance", f"--out-dir={report_dir}",
        f"--float-model={ROOT / 'models' / 'mnist-12.onnx'}", f"--int8-model={ROOT / 'models' / 'zoo-mnist-12-int8.onnx'}",
        "--set", "benchmark.reference_models=[]", "--set", f"dataset.root={ROOT / 'data'}",
        "--set", f"output.dir={tmp_path}",
    ])  # fmt: skip
    one_error_line(result, 5, "report.md")
    for name in ("report.json", "confusion-int8.png"):
        assert (report_dir / name).read_bytes() == b"previous " + name.encode()
    assert temporaries(report_dir) == []


def test_symlinks_planted_in_the_workspace_are_not_followed(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "out"
    workspace = out / "run" / "nc_workspace"
    workspace.mkdir(parents=True)
    victims = {name: tmp_path / f"victim-{name}" for name in ("Optimized_model.onnx", "inc.log", "deploy.yaml")}
    for name, victim in victims.items():
        victim.write_text(f"precious {name}")
        (workspace / name).symlink_to(victim)
    victim_folder = tmp_path / "victim-folder"
    victim_folder.mkdir()
    (workspace / "history").symlink_to(victim_folder, target_is_directory=True)
    run_tuning(tiny_config(tiny, out))
    for name, victim in victims.items():
        assert victim.read_text() == f"precious {name}"
    assert list(victim_folder.iterdir()) == []
    assert (workspace / "inc.log").is_file() and not (workspace / "inc.log").is_symlink()


def test_a_workspace_that_is_a_symlink_is_replaced(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "out"
    (out / "run").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "run" / "nc_workspace").symlink_to(elsewhere, target_is_directory=True)
    run_tuning(tiny_config(tiny, out))
    assert list(elsewhere.iterdir()) == [] and not (out / "run" / "nc_workspace").is_symlink()


@pytest.mark.parametrize("limit_kib", [8, 40])
def test_a_full_disk_under_output_dir_is_exit_5_and_leaves_no_truncated_model(tmp_path, tiny, limit_kib) -> None:
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing the child
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kib * 1024, limit_kib * 1024))

    out = tmp_path / "out"
    (out / "model.onnx").parent.mkdir(parents=True)
    (out / "model.onnx").write_bytes(b"previous model")
    line = one_error_line(run(tune_args(tiny, out), preexec_fn=small_files), 5)
    assert "File too large" in line
    assert (out / "model.onnx").read_bytes() == b"previous model" and temporaries(out) == []
    workspace = out / "run" / "nc_workspace"
    assert [path.name for path in workspace.iterdir()] == ["inc.log"]  # INC's cut-short model was removed


def test_a_read_only_checkout_is_exit_5(tmp_path: Path, tiny: Path) -> None:
    source, mount = tmp_path / "checkout", tmp_path / "mounted"
    (source / "outputs" / "nc_workspace").mkdir(parents=True)  # a checkout that ran before
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True).returncode != 0:
        pytest.skip("bind mounts are not permitted here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], capture_output=True).returncode != 0:
            pytest.skip("read-only remounts are not permitted here")
        args = tune_args(tiny, mount)
        args[args.index(f"--output_model={mount / 'model.onnx'}")] = "--output_model=models/int8.onnx"
        args[args.index(f"output.dir={mount / 'run'}")] = "output.dir=outputs"
        result = subprocess.run(args, cwd=mount, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        one_error_line(result, 5, "Read-only file system")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_classifier_checks_on_a_real_batch(tmp_path: Path) -> None:
    from tiny_models import failing_at_run_time

    from tuning.errors import InputError

    cases = {
        "five-classes": (mlp(tmp_path / "five.onnx", classes=5), "declares 5 classes, but the dataset has 10"),
        "declares-10-returns-20": (mlp(tmp_path / "wide.onnx", classes=20, declared_classes=10), "returns [2, 20]"),
        "declares-1e12": (mlp(tmp_path / "huge.onnx", classes=10, declared_classes=10**12), "declares 1000000000000"),
        "fails-at-run-time": (failing_at_run_time(tmp_path / "bad.onnx"), "onnxruntime cannot run the model"),
    }
    for name, (model, fragment) in cases.items():
        out = tmp_path / name
        with pytest.raises(InputError, match=re.escape(fragment)) as caught:
            run_tuning(tiny_config(model, out))
        assert "\n" not in str(caught.value) and not (out / "model.onnx").exists(), name
        assert not (out / "run" / "nc_workspace" / "history.snapshot").exists()  # refused before INC ran
    # And on the command line: one line, exit 3, no onnxruntime log before it.
    one_error_line(run(tune_args(cases["fails-at-run-time"][0], tmp_path / "cli")), 3, "cannot run the model")
