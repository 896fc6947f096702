"""tuning.measure.evaluate's verification of a batch-capable copy: what it returns and what each refusal says,
on small models built here, with the expected difference computed again from plain onnxruntime sessions; and how
the shapes an OpenVINO runner compiled are stated.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from tiny_models import failing_at_run_time, mlp

from tuning.data.datasets import LabelledImages
from tuning.errors import InputError
from tuning.files.onnx_io import describe
from tuning.measure import evaluate
from tuning.measure.evaluate import AccuracyEvaluator, check_classifier, predict, verify_batch_copy
from tuning.measure.runtimes import open_runner, shapes_phrase

pytestmark = pytest.mark.fast

IMAGES = np.random.default_rng(5).random((100, 1, 28, 28), dtype=np.float32)


def _scores(model: onnx.ModelProto, images: np.ndarray, step: int) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"pixels": images[k : k + step]})[0] for k in range(0, len(images), step)])


def _shifted(model: onnx.ModelProto, shift: float) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    copy.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    bias = next(init for init in copy.graph.initializer if init.name == "b2")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(shift), "b2"))
    return copy


def test_the_largest_difference_is_returned(tmp_path: Path) -> None:
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch=2)))
    copy = _shifted(original, 2**-20)  # far within the 1e-5 tolerances
    expected = float(np.max(np.abs(_scores(copy, IMAGES, 100) - _scores(original, IMAGES, 2))))
    assert expected > 0
    assert verify_batch_copy(original, copy, IMAGES, "m.onnx") == expected
    assert verify_batch_copy(original, _shifted(original, 0.0), IMAGES[:4], "m.onnx") == 0.0


def test_a_difference_beyond_the_tolerance_is_refused_naming_its_size(tmp_path: Path) -> None:
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch=2)))
    copy = _shifted(original, 0.25)
    largest = float(np.max(np.abs(_scores(copy, IMAGES[:64], 64) - _scores(original, IMAGES[:64], 2))))
    with pytest.raises(InputError) as refused:
        verify_batch_copy(original, copy, IMAGES, "m.onnx", count=65)  # whole batches of 2: 64 images
    assert str(refused.value) == (
        f"m.onnx: the batch-capable copy's outputs differ from the original's on 64 test images "
        f"(max |difference| {largest:.3g}); refusing to measure throughput on it")


def test_a_copy_of_another_shape_is_refused(tmp_path: Path) -> None:
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch=1)))
    wider = onnx.load(str(mlp(tmp_path / "w.onnx", classes=12)))
    with pytest.raises(InputError, match=re.escape(
            "w.onnx: the batch-capable copy returns shape [100, 12], expected [100, 10]") + "$"):
        verify_batch_copy(original, wider, IMAGES, "w.onnx")


def test_a_copy_that_cannot_run_is_refused_in_one_line(tmp_path: Path) -> None:
    original = onnx.load(str(mlp(tmp_path / "m.onnx", batch=1)))
    failing = onnx.load(str(failing_at_run_time(tmp_path / "f.onnx")))
    with pytest.raises(InputError, match=r"^f\.onnx: the batch-capable copy fails at batch 100 \([^\n]+\)$"):
        verify_batch_copy(original, failing, IMAGES, "f.onnx")
    with pytest.raises(InputError, match=r"^<model>: the batch-capable copy fails at batch 7 "):
        verify_batch_copy(original, failing, IMAGES[:7])


def test_the_evaluator_names_a_model_it_cannot_load_a_candidate(tmp_path: Path) -> None:
    broken = onnx.load(str(mlp(tmp_path / "m.onnx")))
    broken.graph.node[1].op_type = "NoSuchOp"
    data = LabelledImages(IMAGES[:4], np.zeros(4, dtype=np.int64))
    with pytest.raises(InputError, match=r"^candidate: onnxruntime cannot load it \("):
        AccuracyEvaluator(data, 2)(broken)


def test_the_shapes_openvino_compiled_are_stated_per_timed_batch_or_as_compiled() -> None:
    assert shapes_phrase({"timed_input_shapes": {"1": "[1,1,28,28]", "8": "[8,1,28,28]"}, "input_shape": "[?]"}) == (
        "static shapes, compiled per timed batch size (batch 1: [1,1,28,28], batch 8: [8,1,28,28])")
    assert shapes_phrase({"input_shape": "[4,1,28,28]", "static_batch": 4}) == "input shape [4,1,28,28] (static)"
    assert shapes_phrase({"input_shape": "[?,1,28,28]", "static_batch": None}) == (
        "input shape [?,1,28,28] (the model's own)")
    assert shapes_phrase({"input_shape": "[1,1,28,28]"}) == "input shape [1,1,28,28] (the model's own)"
    assert shapes_phrase({"timed_input_shapes": {}}) == "input shapes not recorded"
    assert shapes_phrase({}) == "input shapes not recorded"


def test_a_model_failing_on_a_test_image_is_refused_with_onnxruntimes_first_line(tmp_path: Path) -> None:
    path = failing_at_run_time(tmp_path / "bad.onnx")
    model = onnx.load(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as raised:  # the same run, done here: onnxruntime's own error
        session.run(None, {"pixels": IMAGES[:2]})
    first = str(raised.value).strip().splitlines()[0]
    with pytest.raises(InputError) as refused:
        check_classifier(model, describe(model, path), LabelledImages(IMAGES[:10], np.zeros(10, np.int64)), 10, path)
    assert str(refused.value) == f"{path}: onnxruntime cannot run the model on a test image ({first})"


def test_an_error_without_text_is_named_by_its_class() -> None:
    assert evaluate._first_line(RuntimeError("  first line \nsecond")) == "first line "
    assert evaluate._first_line(RuntimeError()) == "RuntimeError"
    assert evaluate._first_line(ValueError(" \n ")) == "ValueError"


def test_a_model_failing_on_a_batch_is_refused_quietly_with_onnxruntimes_first_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = failing_at_run_time(tmp_path / "bad.onnx")
    model = onnx.load(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as raised:
        session.run(None, {"pixels": IMAGES[:3]})
    first = str(raised.value).splitlines()[0]
    capfd.readouterr()
    with pytest.raises(InputError) as refused:
        predict(open_runner(model), LabelledImages(IMAGES[:3], np.zeros(3, np.int64)), 3)
    assert str(refused.value) == f"onnxruntime cannot run the model on a batch of 3 images ({first})"
    with pytest.raises(InputError):
        check_classifier(model, describe(model, path), LabelledImages(IMAGES[:10], np.zeros(10, np.int64)), 10, path)
    assert capfd.readouterr().err == ""  # onnxruntime's log of the failing node is off: the error says it
