"""tuning.measure.runtimes and tuning.measure.evaluate on small models built here: predictions and accuracy
computed again in numpy from the model's own weights, the checks a model must pass, and what is stated beside
every number (conditions, warnings) from chosen read-backs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tiny_models import failing_at_run_time, mlp

from tuning.config.enums import Runtime, Split
from tuning.config.schema import DatasetSection
from tuning.data.datasets import LabelledImages, evaluation_images
from tuning.errors import ConfigError, InputError
from tuning.files.onnx_io import describe
from tuning.measure.evaluate import AccuracyEvaluator, check_classifier, predict, top1_accuracy
from tuning.measure.runtimes import (
    INSTALL_HINT,
    Runner,
    SessionSettings,
    conditions_phrase,
    describe_openvino_failure,
    make_session,
    onnxruntime_conditions,
    open_runner,
    thread_warning,
    unavailable_reason,
)

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def test_set() -> LabelledImages:
    return evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28))


def _numpy_scores(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    """tests/tiny_models.mlp written out in numpy."""
    w = {init.name: numpy_helper.to_array(init).astype(np.float64) for init in model.graph.initializer}
    hidden = np.maximum(images.reshape(len(images), -1) @ w["w1"] + w["b1"], 0)
    return hidden @ w["w2"] + w["b2"]


def _subset(data: LabelledImages, count: int, labels: np.ndarray | None = None) -> LabelledImages:
    return LabelledImages(data.images[:count], data.labels[:count] if labels is None else labels)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_predictions_are_the_argmax_of_each_image_in_order(test_set, tmp_path, batch_size) -> None:
    model = onnx.load(str(mlp(tmp_path / "m.onnx", seed=3)))
    data = _subset(test_set, 100)
    expected = _numpy_scores(model, data.images).argmax(axis=1)
    assert np.array_equal(predict(open_runner(model), data, batch_size), expected)


def test_accuracy_is_the_share_of_labels_predicted_and_the_evaluator_keeps_each(test_set, tmp_path) -> None:
    model = onnx.load(str(mlp(tmp_path / "m.onnx", seed=4)))
    data = _subset(test_set, 200)
    predicted = _numpy_scores(model, data.images).argmax(axis=1)
    # Labels chosen so that exactly 150 of 200 match: the accuracy is 0.75 whatever the model predicts.
    labels = predicted.copy()
    labels[:50] = (labels[:50] + 1) % 10
    chosen = LabelledImages(data.images, labels)
    assert top1_accuracy(predicted, labels) == 0.75
    evaluator = AccuracyEvaluator(chosen, 32)
    assert evaluator(model) == 0.75
    assert evaluator(model) == 0.75 and evaluator.history == [0.75, 0.75]
    other = onnx.load(str(mlp(tmp_path / "o.onnx", seed=5)))
    expected_other = float(np.mean(_numpy_scores(other, data.images).argmax(axis=1) == labels))
    assert evaluator(other) == expected_other and evaluator.history == [0.75, 0.75, expected_other]


def test_the_evaluator_scores_with_its_session_settings(test_set, tmp_path) -> None:
    model = onnx.load(str(mlp(tmp_path / "m.onnx")))
    refusing = SessionSettings(1, (("session.load_model_format", "ORT"),))
    with pytest.raises(InputError, match="onnxruntime cannot load it"):
        AccuracyEvaluator(_subset(test_set, 10), 5, refusing)(model)
    assert AccuracyEvaluator(_subset(test_set, 10), 5, SessionSettings(2)).settings == SessionSettings(2)


def test_a_model_declaring_other_classes_than_the_dataset_is_refused(test_set, tmp_path) -> None:
    path = mlp(tmp_path / "five.onnx", classes=5)
    model = onnx.load(str(path))
    with pytest.raises(InputError, match=r"^.*five\.onnx: output 'logits' declares 5 classes, but the dataset has 10$"):
        check_classifier(model, describe(model, path), test_set, 10, path)


@pytest.mark.parametrize("batch, images, shown", [("N", 10, "[2, 20] for 2 images"), ("N", 1, "[1, 20] for 1 image"),
                                                  (1, 10, "[1, 20] for 1 image")])
def test_a_model_computing_another_width_than_it_declares_is_refused(test_set, tmp_path, batch, images, shown) -> None:
    path = mlp(tmp_path / "wide.onnx", classes=20, declared_classes=10, batch=batch)
    model = onnx.load(str(path))
    declared = "batch" if batch == "N" else batch
    with pytest.raises(InputError, match=rf"output 'logits' declares \[{declared}, 10\] but returns {re.escape(shown)}$"):
        check_classifier(model, describe(model, path), _subset(test_set, images), 10, path)
    good = mlp(tmp_path / "good.onnx", batch=batch)
    check_classifier(onnx.load(str(good)), describe(onnx.load(str(good)), good), _subset(test_set, images), 10, good)


def test_a_model_that_cannot_run_is_refused_in_one_line(test_set, tmp_path) -> None:
    path = failing_at_run_time(tmp_path / "bad.onnx")
    model = onnx.load(str(path))
    with pytest.raises(InputError, match=r"bad\.onnx: onnxruntime cannot run the model on a test image \([^\n]+\)$"):
        check_classifier(model, describe(model, path), test_set, 10, path)
    with pytest.raises(InputError, match=r"^onnxruntime cannot run the model on a batch of 3 images \([^\n]+\)$"):
        predict(open_runner(model), _subset(test_set, 3), 3)


def test_a_model_that_cannot_load_is_named(tmp_path) -> None:
    broken = onnx.load(str(mlp(tmp_path / "m.onnx")))
    broken.graph.node[1].op_type = "NoSuchOp"
    with pytest.raises(InputError, match=r"^candidate 3: onnxruntime cannot load it \([^\n]+\)$"):
        make_session(broken, source="candidate 3")
    with pytest.raises(InputError, match=r"^model: onnxruntime cannot load it"):
        make_session(broken)
    path = tmp_path / "broken.onnx"
    onnx.save(broken, str(path))
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: onnxruntime cannot load it"):
        open_runner(path)
    assert open_runner(tmp_path / "m.onnx").input_name == "pixels"  # a path loads like a model


def test_session_settings_are_described_as_read_back() -> None:
    described = SessionSettings(2, (("session.disable_prepacking", "1"),)).describe()
    assert described == {
        "intra_op_num_threads": 2, "inter_op_num_threads": 0, "graph_optimization_level": "ORT_ENABLE_ALL",
        "execution_mode": "ORT_SEQUENTIAL", "providers": ["CPUExecutionProvider"],
        "config_entries": {"session.disable_prepacking": "1"},
    }
    conditions = onnxruntime_conditions(SessionSettings(2))
    assert conditions["runtime"] == "onnxruntime" and conditions["intra_op_num_threads"] == 2
    assert conditions_phrase(conditions) == f"onnxruntime {conditions['version']}, default session options, 2 intra-op threads"
    with_entry = onnxruntime_conditions(SessionSettings(1, (("a.b", "c"), ("d", "e"))))
    assert conditions_phrase(with_entry).endswith("default session options plus a.b=c, d=e, 1 intra-op thread")


def _openvino_conditions(threads: int, streams: int, hint: bool) -> dict:
    return {"runtime": "openvino", "version": "2026.4.0-1234-abc", "requested": {"INFERENCE_PRECISION_HINT": "f32"} if hint
            else {}, "inference_precision": "f32" if hint else "bf16", "inference_num_threads": threads,
            "num_streams": streams, "performance_hint": "LATENCY", "input_shape": "[1,1,28,28]",
            "timed_input_shapes": {"1": "[1,1,28,28]", "256": "[256,1,28,28]"}}


def test_openvino_conditions_say_whether_the_precision_was_set() -> None:
    shapes = "static shapes, compiled per timed batch size (batch 1: [1,1,28,28], batch 256: [256,1,28,28])"
    assert conditions_phrase(_openvino_conditions(1, 1, True)) == (
        f"OpenVINO 2026.4.0, CPU, inference precision f32 (set), 1 thread, 1 stream, performance hint LATENCY, {shapes}")
    assert conditions_phrase(_openvino_conditions(2, 3, False)) == (
        "OpenVINO 2026.4.0, CPU, inference precision bf16 (OpenVINO's default on this CPU), 2 threads, 3 streams, "
        f"performance hint LATENCY, {shapes}")


def test_a_thread_count_other_than_asked_is_warned_about() -> None:
    def runner(conditions: dict) -> Runner:
        return Runner(Runtime.OPENVINO, "x", lambda feed: None, lambda feed: None, conditions)

    assert thread_warning(runner(_openvino_conditions(2, 1, False)), SessionSettings(2)) is None
    assert thread_warning(runner(onnxruntime_conditions(SessionSettings(4))), SessionSettings(4)) is None
    warning = thread_warning(runner(_openvino_conditions(2, 1, False)), SessionSettings(8))
    assert warning.startswith("warning: OpenVINO runs 2 inference threads, not the 8 benchmark.intra_op_threads asks for")
    assert warning.endswith("the numbers are for 2 threads")
    assert thread_warning(runner(_openvino_conditions(1, 1, False)), SessionSettings(8)).endswith("are for 1 thread")


def test_openvino_failures_become_one_line() -> None:
    report = ("Exception from src/frontends/onnx/frontend/src/frontend.cpp:123:\n"
              "[ERROR] Conversion is failed for: com.microsoft.QLinearConv, QLinearMatMul \n"
              "<Node(QLinearConv): conv1_quant> ...\n<Node(QLinearMatMul): fc_quant>\n<Node(QLinearConv): conv1_quant>\n")
    assert describe_openvino_failure(report) == (
        "unsupported ops: com.microsoft.QLinearConv, QLinearMatMul; nodes: conv1_quant (QLinearConv), fc_quant (QLinearMatMul)")
    assert describe_openvino_failure("Conversion is failed for: Foo\n") == "unsupported ops: Foo"
    # OpenVINO 2026's summary names ops it has no rule for on a line of their own, beside (or instead of) the
    # ops it failed to convert; the first line after "Exception from" says nothing about them.
    summary = ("Exception from src/inference/src/cpp/core.cpp:105:\nCheck 'false' failed at src/frontends/x.cpp:151:\n"
               "Model wasn't fully converted.\nSummary:\n-- No conversion rule found for operations: NoSuchOp-12\n")
    assert describe_openvino_failure(summary) == "unsupported ops: NoSuchOp-12"
    both = summary + "-- Conversion is failed for: QLinearConv-12 \n"
    assert describe_openvino_failure(both) == "unsupported ops: NoSuchOp-12, QLinearConv-12"
    assert describe_openvino_failure("Exception from x.cpp:1:\n\n  Cannot read the model  \nmore") == "Cannot read the model"
    assert describe_openvino_failure("Exception from x.cpp:1:\n") == "no message"


@pytest.mark.skipif(importlib.util.find_spec("openvino") is not None, reason="OpenVINO is installed here")
def test_without_openvino_the_runtime_is_unavailable_and_onnxruntime_is_not() -> None:
    assert unavailable_reason(Runtime.ONNXRUNTIME) is None
    reason = unavailable_reason(Runtime.OPENVINO)
    assert reason == f"OpenVINO is not installed (ModuleNotFoundError: No module named 'openvino'); {INSTALL_HINT}"
    with pytest.raises(ConfigError, match=r"^runtime openvino-f32: OpenVINO is not installed"):
        open_runner(onnx.ModelProto(), Runtime.OPENVINO_F32)

