"""Which nodes of a quantized graph compute in int8: each rule of tuning/graph/nodes.py on graphs built here.

The expected precision of every node is written from the rule in node_precisions' docstring, node by
node, for graphs in both of INC's formats and with onnxruntime's integer ops, and for the ONNX Model
Zoo's int8 MNIST model, read off its graph.
"""

from __future__ import annotations

import onnx
import pytest
from conftest import ROOT
from onnx import TensorProto, helper

from tuning.graph.nodes import (
    Precision,
    SourcePrecision,
    derived_node_names,
    node_precisions,
    op_type_counts,
    source_precisions,
)

pytestmark = pytest.mark.fast

INT8, FP32, CONVERT = Precision.INT8, Precision.FP32, Precision.CONVERT


def model_of(nodes: list[onnx.NodeProto], inputs: tuple[str, ...] = ("x",), outputs: tuple[str, ...] = ("y",)):
    """A graph of ``nodes``; node_precisions reads only the nodes, their order and their connections."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def node(op_type: str, inputs: list[str], outputs: list[str], name: str | None = None) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, outputs, name=name if name is not None else f"{op_type.lower()}")


def test_qoperator_ops_and_what_moves_their_outputs_are_int8():
    # QuantizeLinear -> QLinearConv -> MaxPool -> Reshape -> DequantizeLinear -> Softmax: the MaxPool and the
    # Reshape move already-quantized tensors, the Softmax after the DequantizeLinear computes in fp32.
    model = model_of([
        node("QuantizeLinear", ["x", "s", "z"], ["xq"], "quant"),
        node("QLinearConv", ["xq", "s", "z", "w", "s", "z", "s", "z"], ["c"], "conv"),
        node("MaxPool", ["c"], ["p"], "pool"),
        node("Reshape", ["p", "shape"], ["r"], "reshape"),
        node("DequantizeLinear", ["r", "s", "z"], ["d"], "dequant"),
        node("Softmax", ["d"], ["y"], "softmax"),
    ])  # fmt: skip
    assert node_precisions(model) == {
        "quant": CONVERT, "conv": INT8, "pool": INT8, "reshape": INT8, "dequant": CONVERT, "softmax": FP32,
    }  # fmt: skip


def test_a_float_graph_is_all_fp32():
    model = model_of([node("Conv", ["x", "w"], ["c"], "conv"), node("Relu", ["c"], ["y"], "relu")])
    assert node_precisions(model) == {"conv": FP32, "relu": FP32}


@pytest.mark.parametrize("op_type", ["QLinearMatMul", "QLinearAdd", "QGemm", "QAttention", "QEmbedLayerNormalization"])
def test_every_int8_op_type_is_int8(op_type):
    model = model_of([node(op_type, ["x", "w"], ["a"], "op"), node("Relu", ["a"], ["y"], "after")])
    precisions = node_precisions(model)
    assert precisions["op"] is INT8
    assert precisions["after"] is INT8  # its input is a quantized tensor


@pytest.mark.parametrize("op_type", ["ConvInteger", "MatMulInteger"])
def test_integer_ops_are_int8_but_their_int32_outputs_are_not_quantized(op_type):
    # Dynamic quantization: DynamicQuantizeLinear -> ConvInteger (int32 out) -> Cast -> Mul (fp32 rescale).
    model = model_of([
        node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], "dq"),
        node(op_type, ["xq", "w", "xz"], ["acc"], "integer"),
        node("Cast", ["acc"], ["accf"], "cast"),
        node("Mul", ["accf", "xs"], ["y"], "rescale"),
    ])  # fmt: skip
    assert node_precisions(model) == {"dq": CONVERT, "integer": INT8, "cast": FP32, "rescale": FP32}


def test_qdq_node_between_dequantize_and_quantize_is_int8():
    # QDQ format: DQ -> Conv -> Q is an int8 Conv; DQ -> Relu -> (Q and a graph output) is not.
    model = model_of(
        [
            node("QuantizeLinear", ["x", "s", "z"], ["xq"], "q_in"),
            node("DequantizeLinear", ["xq", "s", "z"], ["xd"], "dq_in"),
            node("DequantizeLinear", ["wq", "s", "z"], ["wd"], "dq_w"),
            node("Conv", ["xd", "wd"], ["c"], "conv"),
            node("QuantizeLinear", ["c", "s", "z"], ["cq"], "q_conv"),
            node("DequantizeLinear", ["cq", "s", "z"], ["cd"], "dq_conv"),
            node("Relu", ["cd"], ["r"], "relu"),
            node("QuantizeLinear", ["r", "s", "z"], ["rq"], "q_relu"),
            node("Identity", ["r"], ["y"], "output"),
        ],
        outputs=("y", "rq"),
    )
    precisions = node_precisions(model)
    assert precisions["conv"] is INT8
    assert precisions["relu"] is FP32  # one of its consumers is not a QuantizeLinear
    assert precisions["output"] is FP32
    assert [precisions[name] for name in ("q_in", "dq_in", "dq_w", "q_conv", "dq_conv", "q_relu")] == [CONVERT] * 6


def test_qdq_node_whose_output_is_a_graph_output_is_fp32():
    model = model_of([
        node("DequantizeLinear", ["x", "s", "z"], ["xd"], "dq"),
        node("Conv", ["xd", "w"], ["y"], "conv"),
    ])  # fmt: skip
    assert node_precisions(model)["conv"] is FP32


def test_a_conv_of_dequantized_operands_is_int8_where_a_pool_sits_before_its_quantizer():
    # What pool_before_quantize makes for OpenVINO: DQ -> Conv -> MaxPool -> Q. The Conv multiplies int8 operands
    # (OpenVINO runs it as an int8 convolution with a float output); the MaxPool pools that float output.
    model = model_of([
        node("DequantizeLinear", ["xq", "s", "z"], ["xd"], "dq_in"),
        node("DequantizeLinear", ["wq", "s", "z"], ["wd"], "dq_w"),
        node("Conv", ["xd", "wd"], ["c"], "conv"),
        node("MaxPool", ["c"], ["p"], "pool"),
        node("QuantizeLinear", ["p", "s", "z"], ["y"], "q_pool"),
    ])  # fmt: skip
    assert node_precisions(model) == {"dq_in": CONVERT, "dq_w": CONVERT, "conv": INT8, "pool": FP32, "q_pool": CONVERT}


def test_nncf_s_graph_int8_convolutions_with_float_outputs_and_operands_moved_by_a_pool():
    # NNCF's layout: Conv -> Relu -> Q -> DQ -> MaxPool -> Conv -> Reshape... -> MatMul, logits in float. The second
    # Conv and the MatMul read their data through a MaxPool / Reshape of a dequantized tensor: int8 operands.
    model = model_of([
        node("QuantizeLinear", ["x", "s", "z"], ["xq"], "q_in"),
        node("DequantizeLinear", ["xq", "s", "z"], ["xd"], "dq_in"),
        node("DequantizeLinear", ["w1q", "s", "z"], ["w1"], "dq_w1"),
        node("Conv", ["xd", "w1"], ["c1"], "conv1"),
        node("Relu", ["c1"], ["r1"], "relu1"),
        node("QuantizeLinear", ["r1", "s", "z"], ["r1q"], "q_relu1"),
        node("DequantizeLinear", ["r1q", "s", "z"], ["r1d"], "dq_relu1"),
        node("MaxPool", ["r1d"], ["p1"], "pool1"),
        node("DequantizeLinear", ["w2q", "s", "z"], ["w2"], "dq_w2"),
        node("Conv", ["p1", "w2"], ["c2"], "conv2"),
        node("Reshape", ["p1", "shape"], ["flat"], "flatten"),
        node("DequantizeLinear", ["w3q", "s", "z"], ["w3"], "dq_w3"),
        node("MatMul", ["flat", "w3"], ["y"], "matmul"),
        node("Relu", ["c2"], ["r2"], "relu2"),
        node("MatMul", ["r2", "w3"], ["y2"], "matmul_of_relu"),
    ], outputs=("y", "y2"))  # fmt: skip
    precisions = node_precisions(model)
    assert [precisions[name] for name in ("conv1", "conv2", "matmul")] == [INT8] * 3
    assert [precisions[name] for name in ("relu1", "pool1", "flatten", "relu2")] == [FP32] * 4
    assert precisions["matmul_of_relu"] is FP32  # a Relu computes: its output is not known to be on the int8 grid


def test_qdq_node_reading_no_dequantized_value_is_fp32():
    model = model_of([
        node("Conv", ["x", "w"], ["c"], "conv"),
        node("QuantizeLinear", ["c", "s", "z"], ["y"], "q"),
    ])  # fmt: skip
    assert node_precisions(model) == {"conv": FP32, "q": CONVERT}


def test_int8_propagates_through_a_chain_but_not_past_a_dequantize():
    # A node reading a quantize's output moves int8 data, and so does the next one; after DequantizeLinear
    # the values are float again.
    model = model_of([
        node("QuantizeLinear", ["x", "s", "z"], ["q"], "quant"),
        node("MaxPool", ["q"], ["a"], "pool"),
        node("Transpose", ["a"], ["b"], "transpose"),
        node("DequantizeLinear", ["b", "s", "z"], ["f"], "dequant"),
        node("Flatten", ["f"], ["y"], "flatten"),
    ])  # fmt: skip
    assert node_precisions(model) == {
        "quant": CONVERT, "pool": INT8, "transpose": INT8, "dequant": CONVERT, "flatten": FP32,
    }  # fmt: skip


def test_unnamed_nodes_are_named_by_op_type_and_position():
    model = model_of([node("Conv", ["x", "w"], ["c"], ""), node("Relu", ["c"], ["r"], "relu"), node("Relu", ["r"], ["y"], "")])
    assert list(node_precisions(model)) == ["Conv_0", "relu", "Relu_2"]


def test_op_type_counts_sorted_by_op_type():
    model = model_of([
        node("Relu", ["x"], ["a"], "r1"), node("Conv", ["a", "w"], ["b"], "c"), node("Relu", ["b"], ["y"], "r2"),
    ])  # fmt: skip
    counts = op_type_counts(model)
    assert counts == {"Conv": 1, "Relu": 2}
    assert list(counts) == ["Conv", "Relu"]


# --- a real int8 model: the ONNX Model Zoo's mnist-12-int8 ------------------------------------------


def test_the_zoo_int8_model_node_by_node():
    # Read off its graph: Q -> QLinearConv -> MaxPool (moves int8) -> QLinearConv -> DQ -> MaxPool and Reshape
    # on float values -> Q -> QLinearMatMul -> QLinearAdd -> DQ.
    model = onnx.load(str(ROOT / "models" / "zoo-mnist-12-int8.onnx"))
    expected = [
        ("QuantizeLinear", CONVERT), ("QLinearConv", INT8), ("MaxPool", INT8), ("QLinearConv", INT8),
        ("DequantizeLinear", CONVERT), ("MaxPool", FP32), ("Reshape", FP32), ("QuantizeLinear", CONVERT),
        ("QLinearMatMul", INT8), ("QLinearAdd", INT8), ("DequantizeLinear", CONVERT),
    ]  # fmt: skip
    precisions = node_precisions(model)
    assert [(n.op_type, precisions[n.name]) for n in model.graph.node] == expected
    assert op_type_counts(model) == {
        "DequantizeLinear": 2, "MaxPool": 2, "QLinearAdd": 1, "QLinearConv": 2, "QLinearMatMul": 1,
        "QuantizeLinear": 2, "Reshape": 1,
    }  # fmt: skip


# --- what each node of the fp32 graph became ---------------------------------------------------------


def test_source_precisions_follow_each_fp32_node_into_the_quantized_graph():
    source = model_of([
        node("Conv", ["x", "w"], ["c"], "a"), node("Relu", ["c"], ["r"], "a/b"), node("Gemm", ["r", "w"], ["g"], "fc"),
        node("Relu", ["g"], ["h"], "relu"), node("Softmax", ["h"], ["s"], "soft"), node("Identity", ["s"], ["y"], ""),
    ])  # fmt: skip
    quantized = model_of([
        node("QuantizeLinear", ["x", "s", "z"], ["q"], "a/QuantizeLinear"),  # a convert node: belongs to no one
        node("QLinearConv", ["q", "w"], ["c"], "a_quant"),
        node("Relu", ["c"], ["r"], "a/b_quant"),  # "a" + "/b_quant", but the longer name "a/b" claims it
        node("QLinearMatMul", ["r", "w"], ["m"], "fc_MatMul_quant"),
        node("DequantizeLinear", ["m", "s", "z"], ["d"], "fc/DequantizeLinear"),
        node("Add", ["d", "b"], ["g"], "fc_Add"),  # fp32, but fc has an int8 part
        node("Softmax", ["g"], ["y"], "soft/Fused"),
    ])  # fmt: skip
    assert source_precisions(source, quantized) == {
        "a": SourcePrecision.INT8, "a/b": SourcePrecision.INT8, "fc": SourcePrecision.INT8,
        "relu": SourcePrecision.FOLDED, "soft": SourcePrecision.FP32,
    }  # fmt: skip
    assert list(source_precisions(source, quantized)) == ["a", "a/b", "fc", "relu", "soft"]  # graph order
    # For messages every node carrying the name counts, convert nodes too, in graph order.
    assert derived_node_names("fc", quantized) == ["fc_MatMul_quant", "fc/DequantizeLinear", "fc_Add"]
    assert derived_node_names("a", quantized) == ["a/QuantizeLinear", "a_quant", "a/b_quant"]
    assert derived_node_names("relu", quantized) == []


@pytest.mark.parametrize(
    ("name", "derives"),
    [("n", True), ("n_quant", True), ("n/Fusion/x", True), ("n/x_quant", True), ("n_MatMul", True), ("n_Add_quant", True),
     ("n_Mul", False), ("nn", False), ("n_quantized", False), ("xn", False), ("n_MatMul_quant_1", False)],
)  # fmt: skip
def test_derived_names_are_the_source_name_and_a_known_suffix(name, derives):
    quantized = model_of([node("Relu", ["x"], ["y"], name)])
    assert derived_node_names("n", quantized) == ([name] if derives else [])


def test_the_zoo_int8_model_from_the_fp32_model():
    # mnist-12's nodes and what the zoo's int8 graph made of them, read off the two graphs.
    source = onnx.load(str(ROOT / "models" / "mnist-12.onnx"))
    quantized = onnx.load(str(ROOT / "models" / "zoo-mnist-12-int8.onnx"))
    made = {name: precision.value for name, precision in source_precisions(source, quantized).items()}
    assert made == {
        "Convolution28": "int8", "Plus30": "folded", "ReLU32": "folded", "Pooling66": "int8", "Convolution110": "int8",
        "Plus112": "folded", "ReLU114": "folded", "Pooling160": "fp32", "Times212_reshape0": "fp32",
        "Times212_reshape1": "folded", "Times212": "folded", "Plus214": "folded",
    }  # fmt: skip
