"""Nothing INC does outlives or escapes its call: timer threads, tracebacks on stderr, swallowed errors.

These drive INC's own code (its ``time_limit``, its ``LazyImport``, its ``quantization.fit``), not stand-ins.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import pytest
from conftest import ROOT
from test_cli import assert_one_line_error
from tiny_models import mlp

from tuning.errors import InputError, TuningError
from tuning.inc.containment import contained_inc_call


def live_timers() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if isinstance(thread, threading.Timer) and thread.is_alive()}


@pytest.mark.parametrize("timeout_s", [0, 3600])
@pytest.mark.parametrize("ending", ["interrupt", "exception", "normal"])
def test_a_timer_inc_never_cancelled_is_stopped(tmp_path: Path, timeout_s: int, ending: str) -> None:
    from neural_compressor.utils.utility import time_limit

    before = live_timers()
    raised = {"interrupt": KeyboardInterrupt, "exception": RuntimeError, "normal": None}[ending]
    with pytest.raises(raised) if raised else contextlib_null():
        with contained_inc_call(tmp_path / "inc.log", timeout_s):
            # What an interrupt right after timer.start() leaves: INC's timer running, its finally skipped.
            time_limit(timeout_s).__enter__()
            assert live_timers() - before, "INC's time_limit started no timer"
            if raised:
                raise raised("stop")
    assert live_timers() == before


def contextlib_null():  # type: ignore[no-untyped-def]
    import contextlib

    return contextlib.nullcontext()


def test_inc_lazy_import_traceback_goes_to_the_log(tmp_path: Path, capfd) -> None:
    import traceback

    from neural_compressor.utils.utility import LazyImport

    log = tmp_path / "inc.log"
    log.write_text("")
    with contained_inc_call(log):
        try:
            LazyImport("neural_compressor").no_such_attribute  # INC's bare except turns this into ...
        except AttributeError:
            traceback.print_exc()  # ... what fit() prints for an exception it swallows
    assert "'NoneType' object has no attribute 'loader'" in log.read_text()
    assert "Traceback" not in capfd.readouterr().err


def test_what_fit_swallows_is_kept_and_its_traceback_logged(tmp_path: Path, capfd) -> None:
    from neural_compressor import quantization, set_workspace
    from neural_compressor.config import PostTrainingQuantConfig

    set_workspace(str(tmp_path))  # INC's default is ./nc_workspace
    model = onnx.load(str(mlp(tmp_path / "mlp.onnx")))
    log = tmp_path / "inc.log"
    log.write_text("")

    def eval_func(_model):  # type: ignore[no-untyped-def]
        raise InputError("onnxruntime cannot run the model on a batch of 1 images (test)")

    with contained_inc_call(log) as call:
        result = quantization.fit(model, PostTrainingQuantConfig(approach="dynamic"), eval_func=eval_func)
    assert result is None
    failure = call.failure("during tuning", model.ByteSize())
    assert isinstance(failure, InputError) and failure.exit_code == 3  # our own error keeps its exit code
    assert "Traceback" in log.read_text() and "Traceback" not in capfd.readouterr().err


def test_an_inc_failure_that_is_not_the_disk_is_a_tuning_error(tmp_path: Path) -> None:
    from neural_compressor import quantization, set_workspace
    from neural_compressor.config import PostTrainingQuantConfig

    set_workspace(str(tmp_path))  # INC's default is ./nc_workspace
    model = onnx.load(str(mlp(tmp_path / "mlp.onnx")))

    def eval_func(_model):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    with contained_inc_call(tmp_path / "inc.log") as call:
        assert quantization.fit(model, PostTrainingQuantConfig(approach="dynamic"), eval_func=eval_func) is None
    failure = call.failure("during tuning", model.ByteSize())
    assert isinstance(failure, TuningError) and "ZeroDivisionError" in str(failure) and "inc.log" in str(failure)


def test_a_relative_criterion_against_zero_accuracy_is_an_input_error() -> None:
    from tuning.config.loading import load_config
    from tuning.search.trials import meets_criterion

    relative = load_config(None, {"tuning.accuracy_criterion.kind": "relative"})
    with pytest.raises(InputError, match="top-1 accuracy 0"):
        meets_criterion(0.0, 0.0, relative)
    absolute = load_config(None, {"tuning.accuracy_criterion.kind": "absolute"})
    assert meets_criterion(0.0, 0.0, absolute)


@pytest.mark.parametrize("stage", ["Get FP32 model baseline", "Tune 1 result is"])
def test_sigterm_at_a_random_moment_of_an_inc_stage_exits_130_at_once(tmp_path: Path, stage: str) -> None:
    # mnist-12 with a criterion its first int8 trial misses, so INC goes on to further trials: the signal
    # lands a random moment after INC logs ``stage`` (its fp32 evaluation; its second trial's quantization).
    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "tuning", "tune", f"--config={ROOT / 'configs' / 'mnist.yaml'}",
            f"--output_model={out / 'model.onnx'}", "--set", f"output.dir={out}", "--set", "tuning.objective=accuracy",
            "--set", "tuning.accuracy_criterion.kind=absolute", "--set", "tuning.accuracy_criterion.tolerance=0",
            "--set", "tuning.strategy=basic", "--set", "tuning.max_trials=6",
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = out / "nc_workspace" / "inc.log"
    deadline = time.monotonic() + 180
    while not (log.is_file() and stage in log.read_text(errors="replace")) and process.poll() is None:
        assert time.monotonic() < deadline, f"INC never logged {stage!r}"
        time.sleep(0.005)
    time.sleep(random.Random(stage).uniform(0, 0.2))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)  # an INC timer left running would hang here
    assert_one_line_error(subprocess.CompletedProcess(process.args, process.returncode, "", stderr), 130)
    assert "Traceback" not in stderr and not (out / "model.onnx").exists()
    assert not [path for path in out.rglob("*.tmp")]
