"""Which nodes of a quantized graph compute in int8 and which stayed fp32."""

from __future__ import annotations

import re
from collections import Counter
from enum import Enum

import onnx

_CONVERT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QGemm", "QAttention", "QEmbedLayerNormalization"}
# Ops that only select or rearrange values: what they read from a DequantizeLinear stays on its int8 grid.
_MOVE_OPS = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"}


# Nodes whose precision decides speed and accuracy: the ones fp32 fallbacks are about.
COMPUTE_OP_TYPES = ("Conv", "MatMul", "Gemm")

# How a node of the fp32 graph is named in the graph INC makes: onnxruntime's fusions append
# "/<Fusion>..." (mnist-12's Times212 -> Times212/MatMulAddFusion), INC splits a Gemm into
# "<name>_MatMul" and "<name>_Add", and a quantized node gets "_quant" (QLinearConv "/c1/Conv_quant").
DERIVED_SUFFIX = r"(/.*|_MatMul|_Add)?(_quant)?"


class SourcePrecision(str, Enum):
    """What a node of the fp32 graph became in a quantized graph."""

    INT8 = "int8"  # at least one node made from it computes in int8
    FP32 = "fp32"  # every node made from it computes in fp32
    FOLDED = "folded"  # no node carries its name: folded into a neighbour (a Relu into the QLinearConv before it)


class Precision(str, Enum):
    INT8 = "int8"
    FP32 = "fp32"
    CONVERT = "convert"  # Quantize/Dequantize nodes between the two


def node_precisions(model: onnx.ModelProto) -> dict[str, Precision]:
    """Precision of every node, by name, walking the graph in its (topological) order.

    A node computes in int8 when it is a QOperator op (QLinearConv, MatMulInteger, ...), when it
    moves already-quantized tensors (a MaxPool or Reshape fed by a QLinear op), or, in QDQ
    format, when it reads a DequantizeLinear output and all its outputs feed QuantizeLinear, or
    when it is a Conv/MatMul/Gemm whose data and weight both come from DequantizeLinear (directly or
    through ops that only move values: MaxPool, Reshape, ...): its multiply-adds run on int8 operands
    even where its output stays float (NNCF's graphs, where a Relu sits between the Conv and its
    quantizer, and the MaxPool that :func:`tuning.graph.rewrite.pool_before_quantize` moves there);
    that float output is not a quantized tensor.
    """
    dequantized = {out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    on_int8_grid = set(dequantized)
    for node in model.graph.node:
        if node.op_type in _MOVE_OPS and node.input and node.input[0] in on_int8_grid:
            on_int8_grid.add(node.output[0])
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for value in node.input:
            consumers.setdefault(value, set()).add(node.op_type)
    quantized_values: set[str] = set()
    precisions = {}
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        reads_dequantized = any(value in dequantized for value in node.input)
        if node.op_type in _CONVERT_OPS:
            precision = Precision.CONVERT
        elif (
            node.op_type.startswith("QLinear")
            or node.op_type in _INTEGER_OPS
            or any(value in quantized_values for value in node.input)
            or _int8_operands(node, on_int8_grid)
            or (reads_dequantized and all(consumers.get(value) == {"QuantizeLinear"} for value in node.output))
        ):
            precision = Precision.INT8
        else:
            precision = Precision.FP32
        precisions[name] = precision
        # A QDQ node's outputs are float (a QuantizeLinear or a float consumer follows); integer tensors are
        # QuantizeLinear's and QOperator ops' outputs (not the *Integer ops' int32 sums), and what moves them.
        if node.op_type == "QuantizeLinear" or (
            precision is Precision.INT8 and not reads_dequantized and not node.op_type.endswith("Integer")
        ):
            quantized_values.update(node.output)
    return precisions


def _int8_operands(node: onnx.NodeProto, on_int8_grid: set[str]) -> bool:
    return node.op_type in COMPUTE_OP_TYPES and len(node.input) >= 2 and all(v in on_int8_grid for v in node.input[:2])


def op_type_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def source_precisions(source: onnx.ModelProto, quantized: onnx.ModelProto) -> dict[str, SourcePrecision]:
    """For every named node of the fp32 graph ``source``, what it became in ``quantized``.

    A quantized node belongs to the source node whose name it carries (:data:`DERIVED_SUFFIX`);
    of several matching source names the longest wins (``/Relu_1`` over ``/Relu``). Counting source
    nodes keeps totals comparable between candidates, which a count of the quantized graph's own
    nodes is not (a Gemm kept in fp32 is two nodes, MatMul and Add; a quantized Relu disappears).
    """
    names = sorted((node.name for node in source.graph.node if node.name), key=len, reverse=True)
    made: dict[str, list[Precision]] = {name: [] for name in names}
    for name, precision in node_precisions(quantized).items():
        if precision is Precision.CONVERT:
            continue
        origin = next((candidate for candidate in names if _derives_from(name, candidate)), None)
        if origin is not None:
            made[origin].append(precision)
    ordered = [node.name for node in source.graph.node if node.name]
    return {
        name: SourcePrecision.FOLDED
        if not made[name]
        else SourcePrecision.INT8
        if Precision.INT8 in made[name]
        else SourcePrecision.FP32
        for name in ordered
    }


def derived_node_names(source_name: str, quantized: onnx.ModelProto) -> list[str]:
    """Names of the nodes of ``quantized`` that carry ``source_name`` (for messages)."""
    return [node.name for node in quantized.graph.node if _derives_from(node.name, source_name)]


def _derives_from(name: str, source_name: str) -> bool:
    return re.fullmatch(re.escape(source_name) + DERIVED_SUFFIX, name) is not None
