"""Which nodes of a quantized graph compute in int8 and which stayed fp32."""

from __future__ import annotations

from collections import Counter
from enum import Enum

import onnx

_CONVERT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QGemm", "QAttention", "QEmbedLayerNormalization"}


class Precision(str, Enum):
    INT8 = "int8"
    FP32 = "fp32"
    CONVERT = "convert"  # Quantize/Dequantize nodes between the two


def node_precisions(model: onnx.ModelProto) -> dict[str, Precision]:
    """Precision of every node, by name, walking the graph in its (topological) order.

    A node computes in int8 when it is a QOperator op (QLinearConv, MatMulInteger, ...), when it
    moves already-quantized tensors (a MaxPool or Reshape fed by a QLinear op), or, in QDQ
    format, when it reads a DequantizeLinear output and all its outputs feed QuantizeLinear.
    """
    dequantized = {out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for value in node.input:
            consumers.setdefault(value, set()).add(node.op_type)
    quantized_values: set[str] = set()
    precisions = {}
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if node.op_type in _CONVERT_OPS:
            precision = Precision.CONVERT
        elif (
            node.op_type.startswith("QLinear")
            or node.op_type in _INTEGER_OPS
            or any(value in quantized_values for value in node.input)
            or (
                any(value in dequantized for value in node.input)
                and all(consumers.get(value) == {"QuantizeLinear"} for value in node.output)
            )
        ):
            precision = Precision.INT8
        else:
            precision = Precision.FP32
        precisions[name] = precision
        if node.op_type == "QuantizeLinear" or (precision is Precision.INT8 and not node.op_type.endswith("Integer")):
            quantized_values.update(node.output)
    return precisions


def op_type_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))
