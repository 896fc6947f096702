"""When two quantized graphs run the same kernels: the same graph but for the values of their numeric constants."""

from __future__ import annotations

import hashlib

import onnx

# Initializers whose values a graph twin may differ in: weights, biases, scales and zero points. Integer constants
# of 64 bits (shapes, axes, indices) decide the shapes the kernels run on, and stay part of the key.
_NUMERIC_VALUES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32,
}  # fmt: skip


def graph_key(model: onnx.ModelProto) -> str:
    """The model without the values of its numeric initializers (names, types and shapes kept): candidates with the
    same key run the same operators on the same shapes and differ only in constants, e.g. another calibration's
    scales."""
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    for initializer in graph.initializer:
        if initializer.data_type in _NUMERIC_VALUES:
            for values in ("raw_data", "float_data", "int32_data", "double_data"):
                initializer.ClearField(values)
    return hashlib.sha256(graph.SerializeToString(deterministic=True)).hexdigest()
