"""tuning.measure.runtimes and tuning.measure.evaluate where the mutation run found them unpinned: OpenVINO's
"not installed" report with the extra installed, the provider and the load error of make_session, and verify_batch_copy called directly with originals the callers
never pass (a symbolic batch, one describe refuses) and a copy that declares another output first.

The models are small classifiers built here (tests/tiny_models.py), run by real onnxruntime sessions; every
expected value is computed again in the test (plain sessions, Python's own import error), not read from a run.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_models import failing_at_run_time, mlp

from tuning.config.enums import Runtime
from tuning.errors import ConfigError, InputError
from tuning.measure.evaluate import verify_batch_copy
from tuning.measure.runtimes import INSTALL_HINT, SessionSettings, make_session, open_runner, unavailable_reason

pytestmark = pytest.mark.fast

IMAGES = np.random.default_rng(11).random((9, 1, 28, 28), dtype=np.float32)


def test_an_openvino_that_cannot_be_imported_is_reported_as_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the extra installed (as in mutation runs), the one test of this message elsewhere is skipped: here the
    import is stopped the way Python does for a module set to None in sys.modules, so the report runs either way."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ModuleNotFoundError) as stopped:  # the import the runtime check makes, made here
        importlib.import_module("openvino")
    expected = f"OpenVINO is not installed (ModuleNotFoundError: {stopped.value}); {INSTALL_HINT}"
    assert INSTALL_HINT.startswith("install the extra with `bash scripts/setup_env.sh openvino`")
    for runtime in (Runtime.OPENVINO, Runtime.OPENVINO_F32, Runtime.OPENVINO_BF16):
        assert unavailable_reason(runtime) == expected
        with pytest.raises(ConfigError) as refused:
            open_runner(onnx.ModelProto(), runtime)
        assert str(refused.value) == f"runtime {runtime.value}: {expected}"
    assert unavailable_reason(Runtime.ONNXRUNTIME) is None  # onnxruntime never asks for OpenVINO


def test_a_session_runs_on_the_cpu_provider_as_asked_without_a_fallback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A provider name onnxruntime does not know is not an error: it warns, prints "EP Error" and falls back to the
    CPU. The session asks for the CPU provider by its exact name, so none of that happens."""
    path = mlp(tmp_path / "m.onnx")
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sessions = [make_session(path), make_session(onnx.load(str(path)), SessionSettings(2))]
    assert [str(warning.message) for warning in caught] == []
    assert capfd.readouterr() == ("", "")
    assert [session.get_providers() for session in sessions] == [["CPUExecutionProvider"]] * 2


def test_a_model_onnxruntime_cannot_load_is_refused_with_its_first_line(tmp_path: Path) -> None:
    broken = onnx.load(str(mlp(tmp_path / "m.onnx")))
    broken.graph.node[1].op_type = "NoSuchOp"
    with pytest.raises(Exception) as raised:  # the same load, done here: onnxruntime's own error
        ort.InferenceSession(broken.SerializeToString(), providers=["CPUExecutionProvider"])
    first = str(raised.value).splitlines()[0]
    with pytest.raises(InputError) as refused:
        make_session(broken, source="candidate 3")
    assert str(refused.value) == f"candidate 3: onnxruntime cannot load it ({first})"


def _plain_scores(model: onnx.ModelProto, images: np.ndarray, output: str = "logits") -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([output], {"pixels": images})[0]


def _shifted(model: onnx.ModelProto, shift: float) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    bias = next(init for init in copy.graph.initializer if init.name == "b2")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(shift), "b2"))
    return copy


def test_an_original_with_a_symbolic_batch_is_checked_one_image_at_a_time(tmp_path: Path) -> None:
    """A symbolic batch is a step of 1: every image counts (7 of 7, not 6), and one image is enough."""
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch="N")))
    far = _shifted(original, 0.25)
    largest = float(np.max(np.abs(_plain_scores(far, IMAGES[:7]) - _plain_scores(original, IMAGES[:7]))))
    with pytest.raises(InputError) as refused:
        verify_batch_copy(original, far, IMAGES[:7], "m.onnx")
    assert str(refused.value) == (
        f"m.onnx: the batch-capable copy's outputs differ from the original's on 7 test images "
        f"(max |difference| {largest:.3g}); refusing to measure throughput on it")
    assert verify_batch_copy(original, _shifted(original, 0.0), IMAGES[:1], "m.onnx") == 0.0


def test_an_original_describe_refuses_is_named_by_its_source(tmp_path: Path) -> None:
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch=1)))
    original.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    with pytest.raises(InputError) as refused:
        verify_batch_copy(original, original, IMAGES, "zoo/m.onnx")
    assert str(refused.value) == "zoo/m.onnx: input 'pixels' must be FLOAT, got DOUBLE"


def test_the_copy_is_compared_by_the_originals_output_name_not_its_position(tmp_path: Path) -> None:
    """A copy that declares its hidden layer as a first output still computes the original's scores under their
    name: it passes, compared on that name (its first output, [9, 16], would be another shape)."""
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch=1)))
    copy = onnx.load(str(mlp(tmp_path / "c.onnx", batch="N")))
    copy.graph.output.insert(0, helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 16]))
    one_by_one = np.concatenate([_plain_scores(original, IMAGES[k : k + 1]) for k in range(len(IMAGES))])
    expected = float(np.max(np.abs(_plain_scores(copy, IMAGES) - one_by_one)))
    assert _plain_scores(copy, IMAGES, "a").shape == (9, 16)
    assert verify_batch_copy(original, copy, IMAGES, "m.onnx") == expected


def test_a_copy_that_fails_is_refused_with_onnxruntimes_first_line(tmp_path: Path) -> None:
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch=1)))
    failing = onnx.load(str(failing_at_run_time(tmp_path / "f.onnx")))
    session = ort.InferenceSession(failing.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as raised:  # the same run, done here: onnxruntime's own error
        session.run(None, {"pixels": IMAGES})
    first = str(raised.value).splitlines()[0]
    with pytest.raises(InputError) as refused:
        verify_batch_copy(original, failing, IMAGES, "f.onnx")
    assert str(refused.value) == f"f.onnx: the batch-capable copy fails at batch 9 ({first})"
