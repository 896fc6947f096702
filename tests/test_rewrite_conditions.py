"""tuning.graph.rewrite at the edges of each condition, on graphs of a handful of nodes run by onnxruntime.

The pool rewrites are checked where a condition holds exactly at its limit (the smallest normal scale, the
largest scale whose widest product still fits float32, computed here from the rule in the docstring) and just
past it; on each parameter form ONNX allows (zero point left out, axis given or not, Constant nodes); on
readers hidden in subgraphs; and on what the rewrite leaves in the graph (which parameters are removed,
which value_info entries stay, how an unnamed pool is named). Every graph is tiny: x [1, 2, 4, 4] float32.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tuning.config.enums import Runtime
from tuning.errors import InputError
from tuning.graph.rewrite import batch_capable_copy, deployment_rewrites, pool_before_activation, pool_before_quantize

pytestmark = pytest.mark.fast

FLOAT32_MAX = float(np.finfo(np.float32).max)
TINY = np.finfo(np.float32).tiny  # the smallest normal float32


def _float32_up(value: float) -> np.float32:
    return np.nextafter(np.float32(value), np.float32(np.inf))


def _float32_down(value: float) -> np.float32:
    return np.nextafter(np.float32(value), np.float32(0))


def _requantized_pool(
    scale: np.ndarray | None = None, zero_point: np.ndarray | None = None, *, shared: bool = False, **q_attributes
) -> onnx.ModelProto:
    """``x -> Q -> DQ -> MaxPool -> Q' -> DQ' -> y``; each pair reads its own parameters (``a_*`` and ``b_*``),
    or both read ``a_*`` when ``shared``. ``zero_point`` None leaves the zero point out (ONNX's uint8 0)."""
    scale = np.array(0.05, np.float32) if scale is None else scale
    initializers = []
    for prefix in ("a",) if shared else ("a", "b"):
        initializers.append(numpy_helper.from_array(scale, f"{prefix}_scale"))
        if zero_point is not None:
            initializers.append(numpy_helper.from_array(zero_point, f"{prefix}_zero"))

    def parameters(prefix: str) -> list[str]:
        prefix = "a" if shared else prefix
        return [f"{prefix}_scale"] + ([f"{prefix}_zero"] if zero_point is not None else [])

    nodes = [
        helper.make_node("QuantizeLinear", ["x", *parameters("a")], ["q"], name="q", **q_attributes),
        helper.make_node("DequantizeLinear", ["q", *parameters("a")], ["dq"], name="dq", **q_attributes),
        helper.make_node("MaxPool", ["dq"], ["pooled"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("QuantizeLinear", ["pooled", *parameters("b")], ["q2"], name="q2", **q_attributes),
        helper.make_node("DequantizeLinear", ["q2", *parameters("b")], ["y"], name="dq2", **q_attributes),
    ]
    graph = helper.make_graph(
        nodes, "requantized-pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _inputs() -> list[np.ndarray]:
    return [np.random.default_rng(seed).normal(0, 3, (1, 2, 4, 4)).astype(np.float32) for seed in range(4)]


def _moves_exactly(model: onnx.ModelProto) -> onnx.ModelProto:
    """The rewrite applied: one pool moved, the first pair gone, every output the same bit for bit."""
    rewritten, moved = pool_before_quantize(model)
    assert moved == ["pool"]
    assert [node.name for node in rewritten.graph.node] == ["pool", "q2", "dq2"]
    assert list(rewritten.graph.node[0].input) == ["x"]
    onnx.checker.check_model(rewritten)
    for x in _inputs():
        assert np.array_equal(_run(rewritten, x), _run(model, x))
    return rewritten


def _stays(model: onnx.ModelProto) -> None:
    rewritten, moved = pool_before_quantize(model)
    assert moved == []
    assert rewritten.SerializeToString() == model.SerializeToString()


def _importing(model: onnx.ModelProto, domain: str) -> onnx.ModelProto:
    model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


def _initializer_names(model: onnx.ModelProto) -> set[str]:
    return {init.name for init in model.graph.initializer}


# --- the parameters' forms -----------------------------------------------------------------------------


def test_zero_points_left_out_are_onnxs_uint8_zero() -> None:
    _moves_exactly(_requantized_pool())
    empty_name = _requantized_pool()  # an empty name is a left-out optional input too
    for node in empty_name.graph.node:
        if node.op_type != "MaxPool":
            node.input.append("")
    _moves_exactly(empty_name)


def test_a_left_out_zero_point_equals_an_explicit_uint8_zero_only() -> None:
    model = _requantized_pool()
    model.graph.initializer.append(numpy_helper.from_array(np.array(0, np.uint8), "b_zero"))
    for node in model.graph.node[3:]:
        node.input.append("b_zero")
    _moves_exactly(model)
    model.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.array(1, np.uint8), "b_zero"))
    _stays(model)


def test_an_axis_matters_only_per_channel_and_only_axis_1_is_kept_by_pooling() -> None:
    _moves_exactly(_requantized_pool(zero_point=np.array(7, np.uint8), axis=0))  # per tensor: axis unused
    per_channel = (np.array([0.05, 0.02], np.float32), np.array([3, 9], np.uint8))
    _moves_exactly(_requantized_pool(*per_channel, axis=1))
    _moves_exactly(_requantized_pool(*per_channel))  # ONNX's default axis is 1
    _moves_exactly(_requantized_pool(per_channel[0]))  # a left-out zero point is zero per channel too
    _stays(_requantized_pool(*per_channel, axis=0))
    _stays(_requantized_pool(*per_channel, axis=-3))  # axis 1 of a rank-4 tensor, but the rank is not checked


def test_parameters_the_proof_does_not_cover_leave_the_graph_as_it_is() -> None:
    _stays(_requantized_pool(zero_point=np.array(0, np.uint8), block_size=0))  # an attribute other than axis
    _stays(_requantized_pool(np.array(0.05, np.float64)))  # the scale must be float32
    _stays(_requantized_pool(np.full((1, 1), 0.05, np.float32), np.zeros((1, 1), np.uint8)))  # 2-D parameters
    _stays(_requantized_pool(np.array(0.05, np.float32), np.array([0], np.uint8)))  # zero point shaped unlike scale
    _stays(_requantized_pool(zero_point=np.array(0, np.int8)))  # int8: not exact on OpenVINO (rewrite.py)


def test_a_zero_point_a_caller_can_feed_is_not_a_constant() -> None:
    model = _requantized_pool(zero_point=np.array(0, np.uint8))
    model.graph.input.append(helper.make_tensor_value_info("a_zero", TensorProto.UINT8, []))
    _stays(model)


def _constant_parameters(model: onnx.ModelProto, **constant_fields) -> onnx.ModelProto:
    """``a_scale`` given by a Constant node (``value`` unless other fields are given) instead of an initializer."""
    init = next(init for init in model.graph.initializer if init.name == "a_scale")
    fields = constant_fields or {"value": init}
    model.graph.node.insert(0, helper.make_node("Constant", [], ["a_scale"], name="a_scale_node", **fields))
    model.graph.initializer.remove(init)
    return model


def test_only_default_domain_constant_nodes_with_a_tensor_value_are_constants() -> None:
    rewritten, moved = pool_before_quantize(_constant_parameters(_requantized_pool()))
    assert moved == ["pool"]
    assert [node.name for node in rewritten.graph.node] == ["pool", "q2", "dq2"]  # its Constant went with the pair
    _stays(_constant_parameters(_requantized_pool(), value_float=0.05))  # a float attribute, not read as a tensor
    foreign = _constant_parameters(_requantized_pool())
    foreign.graph.node[0].domain = "com.example"
    _stays(_importing(foreign, "com.example"))


# --- the limits of the scale ------------------------------------------------------------------------------


def _accepted(scale: float | np.ndarray, zero_point: int | list[int]) -> bool:
    scale = np.asarray(scale, np.float32)
    model = _requantized_pool(scale, np.asarray(zero_point, np.uint8).reshape(scale.shape))
    return pool_before_quantize(model)[1] == ["pool"]


def test_the_smallest_normal_scale_is_accepted_and_a_subnormal_one_is_not() -> None:
    assert _accepted(TINY, 0)
    assert not _accepted(_float32_down(TINY), 0)
    assert not _accepted(0.0, 0) and not _accepted(-0.05, 0)
    assert not _accepted([0.05, _float32_down(TINY)], [0, 0])  # every channel's scale counts


def _largest_scale_for(widest: int) -> np.float32:
    """The largest float32 scale with ``widest * scale`` not above float32's largest value."""
    scale = np.float32(FLOAT32_MAX / widest)
    while float(widest) * float(scale) > FLOAT32_MAX:
        scale = _float32_down(scale)
    while float(widest) * float(_float32_up(scale)) <= FLOAT32_MAX:
        scale = _float32_up(scale)
    return scale


@pytest.mark.parametrize("zero_point, widest", [(0, 255), (200, 200), (55, 200), (128, 128), (255, 255)])
def test_the_largest_scale_is_the_one_whose_widest_product_still_fits_float32(zero_point: int, widest: int) -> None:
    """The widest |q - z| is max(255 - z, z); with z = 0, 255 * 65793 * 2**104 is float32's largest value exactly."""
    largest = _largest_scale_for(widest)
    if zero_point == 0:
        assert largest == np.float32(65793 * 2.0**104) and 255 * float(largest) == FLOAT32_MAX
    assert _accepted(largest, zero_point)
    assert not _accepted(_float32_up(largest), zero_point)
    assert not _accepted([0.05, float(_float32_up(largest))], [0, zero_point])


# --- readers, outputs and what the rewrite removes ---------------------------------------------------------


def _if_reading(value: str, nested: bool = False) -> onnx.NodeProto:
    """An If whose branches read ``value`` (in a nested If when ``nested``) and return a float."""
    def branch(name: str) -> onnx.GraphProto:
        if nested:
            inner = _if_reading(value)
            nodes = [helper.make_node("Constant", [], [f"{name}_c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
                     helper.make_node("If", [f"{name}_c"], [f"{name}_out"], then_branch=inner.attribute[0].g,
                                      else_branch=inner.attribute[1].g)]
        else:
            nodes = [helper.make_node("Cast", [value], [f"{name}_out"], to=TensorProto.FLOAT)]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)])

    return helper.make_node("If", ["condition"], ["side"], then_branch=branch("then"), else_branch=branch("else"))


@pytest.mark.parametrize("value", ["q", "dq", "pooled"])
@pytest.mark.parametrize("nested", [False, True], ids=["if", "if-in-if"])
def test_a_value_read_inside_a_subgraph_has_a_second_reader(value: str, nested: bool) -> None:
    model = _requantized_pool()
    model.graph.node.append(_if_reading(value, nested))
    model.graph.input.append(helper.make_tensor_value_info("condition", TensorProto.BOOL, []))
    model.graph.output.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    _stays(model)


def test_a_value_read_inside_a_list_of_subgraphs_has_a_second_reader() -> None:
    model = _requantized_pool()
    body = helper.make_graph([helper.make_node("Identity", ["dq"], ["seen"])], "body", [],
                             [helper.make_tensor_value_info("seen", TensorProto.FLOAT, None)])
    model.graph.node.append(helper.make_node("Bodies", ["x"], ["side"], domain="com.example", bodies=[body, body]))
    model.graph.output.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    _stays(_importing(model, "com.example"))


@pytest.mark.parametrize("node_name", ["q", "dq", "q2"])
def test_a_quantizer_of_another_domain_is_not_onnxs(node_name: str) -> None:
    model = _requantized_pool()
    next(node for node in model.graph.node if node.name == node_name).domain = "com.microsoft"
    _stays(_importing(model, "com.microsoft"))


def test_the_removed_pairs_own_parameters_go_and_shared_ones_stay() -> None:
    own = _moves_exactly(_requantized_pool(zero_point=np.array(4, np.uint8)))
    assert _initializer_names(own) == {"b_scale", "b_zero"}
    shared = _moves_exactly(_requantized_pool(zero_point=np.array(4, np.uint8), shared=True))
    assert _initializer_names(shared) == {"a_scale", "a_zero"}  # still read by Q' and DQ'
    output = _requantized_pool(zero_point=np.array(4, np.uint8))
    output.graph.output.append(helper.make_tensor_value_info("a_zero", TensorProto.UINT8, []))
    assert _initializer_names(_moves_exactly(output)) == {"a_zero", "b_scale", "b_zero"}  # a graph output stays
    read_elsewhere = _requantized_pool(zero_point=np.array(4, np.uint8))
    read_elsewhere.graph.node.append(helper.make_node("Identity", ["a_scale"], ["scale_copy"]))
    read_elsewhere.graph.output.append(helper.make_tensor_value_info("scale_copy", TensorProto.FLOAT, []))
    assert _initializer_names(pool_before_quantize(read_elsewhere)[0]) == {"a_scale", "b_scale", "b_zero"}


def test_value_info_of_removed_values_goes_and_the_rest_stays() -> None:
    model = _requantized_pool()
    model.graph.value_info.extend(
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [1, 2, 4, 4]),
         helper.make_tensor_value_info("dq", TensorProto.FLOAT, [1, 2, 4, 4]),
         helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 2, 2, 2]),
         helper.make_tensor_value_info("q2", TensorProto.UINT8, [1, 2, 2, 2])]
    )
    rewritten = _moves_exactly(model)
    assert [value.name for value in rewritten.graph.value_info] == ["pooled", "q2"]
    unchanged, moved = pool_before_quantize(_requantized_pool(zero_point=np.array(0, np.int8)))
    assert moved == [] and len(unchanged.graph.initializer) == 4


def test_an_unnamed_pool_is_named_by_its_place() -> None:
    model = _requantized_pool()
    model.graph.node.insert(0, helper.make_node("Identity", ["x"], ["x_id"], name="first"))
    model.graph.node[1].input[0] = "x_id"
    model.graph.node[3].name = ""
    assert pool_before_quantize(model)[1] == ["MaxPool_3"]


# --- pool_before_activation in the "ai.onnx" domain --------------------------------------------------------


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Clip"])
def test_nodes_of_the_ai_onnx_domain_are_default_domain_nodes(activation: str) -> None:
    nodes = [
        helper.make_node(activation, ["x"], ["act"], name="act", domain="ai.onnx"),
        helper.make_node("MaxPool", ["act"], ["pooled"], name="pool", domain="ai.onnx", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("QuantizeLinear", ["pooled", "s", "z"], ["out"], name="q"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.UINT8, [1, 2, 2, 2])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.uint8), "z")],
    )
    rewritten, moved = pool_before_activation(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert moved == ["pool"]
    assert [node.name for node in rewritten.graph.node] == ["pool", "act", "q"]


# --- batch_capable_copy's edges ---------------------------------------------------------------------------


def _reshape_model(batch_shape: list[int], input_shape: list[int], output_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(np.array(batch_shape, np.int64), "shape")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _shape_of(model: onnx.ModelProto) -> list[int]:
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "shape")).tolist()


def test_a_one_dimensional_target_shape_that_is_the_batch_becomes_minus_one() -> None:
    model = _reshape_model([3], [3, 1], [3, 1])
    model.graph.node.append(helper.make_node("Unsqueeze", ["y", "axes"], ["z"], name="unsqueeze"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 1]))
    copy = batch_capable_copy(model, "one.onnx")
    assert _shape_of(copy) == [-1]
    x = np.arange(5, dtype=np.float32).reshape(5, 1)
    session = ort.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": x})[0].tolist() == x.tolist()


@pytest.mark.parametrize("shape", [[], [[2, 4]]], ids=["empty", "two-dimensional"])
def test_a_target_shape_that_is_not_a_list_of_dimensions_is_left_alone(shape) -> None:
    model = _reshape_model(shape, [2, 2, 2], [2, 4])
    assert _shape_of(batch_capable_copy(model)) == shape


def test_the_batch_input_is_the_one_input_that_is_no_initializer() -> None:
    model = _reshape_model([2, 4], [2, 2, 2], [2, 4])
    model.graph.input.insert(0, helper.make_tensor_value_info("shape", TensorProto.INT64, [2]))
    copy = batch_capable_copy(model)
    dims = {value.name: value.type.tensor_type.shape.dim[0] for value in copy.graph.input}
    assert dims["x"].dim_param == "batch" and dims["shape"].dim_value == 2 and not dims["shape"].dim_param


def test_a_copy_the_checker_refuses_is_one_line_naming_the_source() -> None:
    model = _reshape_model([2, 4], [2, 2, 2], [2, 4])
    model.graph.node.append(helper.make_node("Reshape", ["y"], ["lonely"], name="one_input"))  # Reshape needs two
    with pytest.raises(InputError) as refused:
        batch_capable_copy(model, "bad.onnx")
    message = str(refused.value)
    assert message.startswith("bad.onnx: the batch-capable copy is not a valid model (") and message.endswith(")")
    assert "\n" not in message and "Reshape" in message


def _activation_pool_graph(*tails: str) -> onnx.ModelProto:
    """``x -> Relu -> MaxPool`` once per tail; a ``"quantized"`` tail is read by a QuantizeLinear, a ``"dead"`` one by
    nothing (its pool output is neither read nor a graph output)."""
    nodes, outputs = [], []
    for index, tail in enumerate(tails):
        nodes += [helper.make_node("Relu", ["x"], [f"act{index}"], name=f"relu{index}"),
                  helper.make_node("MaxPool", [f"act{index}"], [f"pooled{index}"], name=f"pool{index}",
                                   kernel_shape=[2, 2], strides=[2, 2])]
        if tail == "quantized":
            nodes.append(helper.make_node("QuantizeLinear", [f"pooled{index}", "s", "z"], [f"out{index}"], name=f"q{index}"))
            outputs.append(helper.make_tensor_value_info(f"out{index}", TensorProto.UINT8, [1, 2, 2, 2]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])], outputs,
        [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.uint8), "z")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_pool_nobody_reads_stays_and_the_pools_after_it_are_still_looked_at() -> None:
    rewritten, moved = pool_before_activation(_activation_pool_graph("dead", "quantized"))
    assert moved == ["pool1"]
    assert [node.name for node in rewritten.graph.node] == ["relu0", "pool0", "pool1", "relu1", "q1"]


def test_on_openvino_both_rewrites_are_reported_in_order() -> None:
    """``x -> Relu -> MaxPool -> Q -> DQ -> MaxPool -> Q' -> DQ'``: the first pool moves above the Relu, then the
    second before its quantizer, which the first pool's Q now reads through the Relu."""
    model = _requantized_pool()
    model.graph.node.insert(0, helper.make_node("Relu", ["x"], ["act"], name="relu"))
    model.graph.node.insert(1, helper.make_node("MaxPool", ["act"], ["first"], name="first_pool", kernel_shape=[1, 1]))
    model.graph.node[2].input[0] = "first"
    rewritten, done = deployment_rewrites(model, Runtime.OPENVINO)
    assert done == ["MaxPool first_pool moved above its activation", "MaxPool pool moved before its quantizer"]
    for x in _inputs():
        assert np.array_equal(_run(rewritten, x), _run(model, x))


def test_the_quantize_and_dequantize_parameters_of_the_removed_pair_all_go() -> None:
    """Q and DQ read equal parameters under their own names: the four initializers go with the pair."""
    model = _requantized_pool(zero_point=np.array(4, np.uint8))
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "dq_scale"),
                                    numpy_helper.from_array(np.array(4, np.uint8), "dq_zero")])
    model.graph.node[1].input[1:] = ["dq_scale", "dq_zero"]
    assert _initializer_names(_moves_exactly(model)) == {"b_scale", "b_zero"}



def test_a_dequantize_of_a_graph_input_or_a_pool_nobody_reads_is_no_match() -> None:
    quantized_input = _requantized_pool()
    quantized_input.graph.input[0].CopyFrom(helper.make_tensor_value_info("q", TensorProto.UINT8, [1, 2, 4, 4]))
    del quantized_input.graph.node[0]  # DQ now reads a graph input: no Q to remove
    _stays(quantized_input)
    unread = _requantized_pool()
    del unread.graph.node[3:]  # the pool's output is read by no node and is no graph output
    unread.graph.node.append(helper.make_node("Identity", ["x"], ["x_copy"]))
    unread.graph.output[0].CopyFrom(helper.make_tensor_value_info("x_copy", TensorProto.FLOAT, [1, 2, 4, 4]))
    _stays(unread)


def test_constant_nodes_of_parameters_still_read_stay() -> None:
    model = _requantized_pool()
    init = next(init for init in model.graph.initializer if init.name == "b_scale")
    model.graph.node.insert(0, helper.make_node("Constant", [], ["b_scale"], name="b_scale_node", value=init))
    model.graph.initializer.remove(init)
    rewritten, moved = pool_before_quantize(model)
    assert moved == ["pool"]
    assert [node.name for node in rewritten.graph.node] == ["b_scale_node", "pool", "q2", "dq2"]
    for x in _inputs():
        assert np.array_equal(_run(rewritten, x), _run(model, x))


def test_a_batch_reshape_after_other_nodes_and_a_computed_shape_is_still_rewritten() -> None:
    """``Constant -> c``, ``Reshape(x, c)`` (a shape no initializer holds), ``Reshape(x, [4, 2])`` (no batch), then
    ``Reshape(x, shape)`` with the batch."""
    model = _reshape_model([2, 4], [2, 2, 2], [2, 4])
    model.graph.node.insert(0, helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array([8], np.int64))))
    model.graph.node.insert(1, helper.make_node("Reshape", ["x", "c"], ["flat"], name="computed"))
    model.graph.node.insert(2, helper.make_node("Reshape", ["x", "pairs"], ["paired"], name="no_batch"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([4, 2], np.int64), "pairs"))
    model.graph.output.extend([helper.make_tensor_value_info("flat", TensorProto.FLOAT, [8]),
                               helper.make_tensor_value_info("paired", TensorProto.FLOAT, [4, 2])])
    copy = batch_capable_copy(model)
    assert _shape_of(copy) == [-1, 4]
    assert numpy_helper.to_array(next(i for i in copy.graph.initializer if i.name == "pairs")).tolist() == [4, 2]


def test_a_pool_whose_pair_has_a_second_reader_does_not_stop_the_search_for_later_pools() -> None:
    """Two chains from x; the first one's dequantized tensor is also a graph output, the second is rewritable."""
    model = _requantized_pool()
    for node in list(model.graph.node):
        copy = model.graph.node.add()
        copy.CopyFrom(node)
        copy.name = f"second_{node.name}"
        copy.input[0] = node.input[0] if node.input[0] == "x" else f"second_{node.input[0]}"
        copy.output[0] = f"second_{node.output[0]}"
    model.graph.output.extend([helper.make_tensor_value_info("second_y", TensorProto.FLOAT, [1, 2, 2, 2]),
                               helper.make_tensor_value_info("dq", TensorProto.FLOAT, [1, 2, 4, 4])])
    rewritten, moved = pool_before_quantize(model)
    assert moved == ["second_pool"]
    for x in _inputs():
        assert all(np.array_equal(a, b) for a, b in zip(_run_all(rewritten, x), _run_all(model, x)))


def _run_all(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})
