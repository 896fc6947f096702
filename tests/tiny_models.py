"""Small ONNX classifiers built in the tests, for runs that need a model but not mnist-12's minutes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp(
    path: Path,
    classes: int = 10,
    declared_classes: int | None = None,
    batch: int | str = "N",
    hidden: int = 16,
    seed: int = 0,
    input_name: str = "pixels",
    output_name: str = "logits",
) -> Path:
    """Flatten -> MatMul -> Add -> Relu -> MatMul -> Add on [batch, 1, 28, 28] images, random weights.

    ``declared_classes`` lets the graph declare another output width than it computes.
    """
    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(0, 0.05, (784, hidden)).astype(np.float32),
        "b1": rng.normal(0, 0.05, (hidden,)).astype(np.float32),
        "w2": rng.normal(0, 0.5, (hidden, classes)).astype(np.float32),
        "b2": rng.normal(0, 0.05, (classes,)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Flatten", [input_name], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
        helper.make_node("Relu", ["hb"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["o"], name="fc2"),
        helper.make_node("Add", ["o", "b2"], [output_name], name="fc2_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 1, 28, 28])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, declared_classes or classes])],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def failing_at_run_time(path: Path) -> Path:
    """A valid graph whose Reshape cannot work on any input: it loads, then fails when run."""
    shape = numpy_helper.from_array(np.array([-1, 999], dtype=np.int64), "bad_shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["pixels", "bad_shape"], ["logits"], name="bad_reshape")],
        "fails-at-run-time",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def batch_centred(path: Path) -> Path:
    """Flatten -> MatMul, then the scores centred over the batch (score - its mean over the batch's images): at
    batch 1 every score is 0, at larger batches not, so a batch-capable copy of it computes something else."""
    weights = np.random.default_rng(0).normal(0, 0.05, (784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixels"], ["flat"], name="flatten"),
            helper.make_node("MatMul", ["flat", "w"], ["scores"], name="fc"),
            helper.make_node("ReduceMean", ["scores"], ["mean"], axes=[0], keepdims=1, name="batch_mean"),
            helper.make_node("Sub", ["scores", "mean"], ["logits"], name="centre"),
        ],
        "batch-centred",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
