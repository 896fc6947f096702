"""tuning.graph.rewrite: every graph rewrite is exact, on the vendored models and on models built here with torch.

The pool rewrite is checked bit for bit on real MNIST images, on graph patterns mnist-12 does not
have, and on the session a user makes: a plain onnxruntime.InferenceSession with default options.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from tuning.config.enums import Split
from tuning.config.schema import DatasetSection
from tuning.data.datasets import evaluation_images
from tuning.errors import InputError
from tuning.graph.rewrite import batch_capable_copy, pool_before_activation
from tuning.measure.evaluate import VERIFY_ATOL, VERIFY_IMAGES, VERIFY_RTOL, verify_batch_copy

ROOT = Path(__file__).resolve().parent.parent
FP32 = ROOT / "models" / "mnist-12.onnx"
ZOO_INT8 = ROOT / "models" / "zoo-mnist-12-int8.onnx"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28)).images


def _plain_session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _reshape_shape(model: onnx.ModelProto, node_name: str) -> list[int]:
    node = next(n for n in model.graph.node if n.name == node_name)
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    return numpy_helper.to_array(init).tolist()


@pytest.mark.parametrize("path", [FP32, ZOO_INT8], ids=["fp32", "zoo-int8"])
def test_batch_copy_gives_the_originals_outputs(path: Path, images: np.ndarray) -> None:
    original = onnx.load(str(path))
    before = original.SerializeToString()
    copy = batch_capable_copy(original, path)

    assert original.SerializeToString() == before, "the original must not be modified"
    assert copy.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert copy.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert _reshape_shape(copy, "Times212_reshape0") == [-1, 256]
    assert len(copy.graph.value_info) == 0
    if path == FP32:  # a Reshape of a weight carries no batch dimension
        assert _reshape_shape(copy, "Times212_reshape1") == [256, 10]

    batch = images[:300]
    one_by_one = np.concatenate([_plain_session(original).run(None, {"Input3": batch[i : i + 1]})[0] for i in range(300)])
    at_once = _plain_session(copy).run(None, {"Input3": batch})[0]
    np.testing.assert_allclose(at_once, one_by_one, rtol=1e-5, atol=1e-5)
    assert np.array_equal(at_once.argmax(axis=1), one_by_one.argmax(axis=1))
    assert verify_batch_copy(original, copy, images, path) <= 1e-5


@pytest.mark.fast
def test_batch_copy_keeps_a_shared_shape_initializer(images: np.ndarray) -> None:
    model = onnx.load(str(FP32))
    shape_name = next(n for n in model.graph.node if n.name == "Times212_reshape0").input[1]
    # A second consumer of the shape tensor must still see [1, 256].
    model.graph.node.append(helper.make_node("Identity", [shape_name], ["shape_copy"], name="shape_reader"))
    model.graph.output.append(helper.make_tensor_value_info("shape_copy", onnx.TensorProto.INT64, [2]))

    copy = batch_capable_copy(model, "shared.onnx")

    assert _reshape_shape(copy, "Times212_reshape0") == [-1, 256]
    shared = next(i for i in copy.graph.initializer if i.name == shape_name)
    assert numpy_helper.to_array(shared).tolist() == [1, 256]
    outputs = _plain_session(copy).run(None, {"Input3": images[:8]})
    assert outputs[0].shape == (8, 10) and outputs[1].tolist() == [1, 256]


@pytest.mark.fast
def test_verify_refuses_a_copy_that_cannot_batch(images: np.ndarray) -> None:
    original = onnx.load(str(ZOO_INT8))
    half_done = onnx.ModelProto()
    half_done.CopyFrom(original)
    half_done.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"  # Reshape still says [1, 256]
    with pytest.raises(InputError, match=r"^zoo\.onnx: the batch-capable copy fails at batch 256"):
        verify_batch_copy(original, half_done, images, "zoo.onnx")


@pytest.mark.fast
@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_verify_refuses_outputs_just_beyond_its_tolerance(images: np.ndarray, factor: float) -> None:
    """The copy's last bias (mnist-12's Parameter194, added to the scores) moved by ``factor`` times the largest
    difference the tolerance allows in the column where it allows the least: accepted below it, refused above."""
    original = onnx.load(str(FP32))
    session = _plain_session(original)
    scores = np.concatenate([session.run(None, {"Input3": image[None]})[0] for image in images[:VERIFY_IMAGES]])
    allowed = VERIFY_ATOL + VERIFY_RTOL * np.abs(scores)  # np.allclose's rule, per score
    column = int(np.argmin(allowed.min(axis=0)))
    shift = np.zeros(scores.shape[1], np.float32)
    shift[column] = factor * allowed[:, column].min()
    copy = batch_capable_copy(original, FP32)
    assert verify_batch_copy(original, copy, images) < 0.05 * shift[column]  # the copy alone is far inside
    bias = next(i for i in copy.graph.initializer if i.name == "Parameter194")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + shift.reshape(bias.dims), bias.name))
    if factor < 1:  # accepted, the difference seen (the largest one is float32 rounding of the larger scores)
        assert verify_batch_copy(original, copy, images, FP32) > 0
    else:
        with pytest.raises(InputError, match=rf"outputs differ from the original's on {VERIFY_IMAGES} test images"):
            verify_batch_copy(original, copy, images, FP32)




# --- pool_before_activation -------------------------------------------------------------------------


class _SmallCnn(torch.nn.Module):
    """Two conv blocks (conv -> activation -> max-pool) and a linear head: mnist-12's shape, not its names."""

    def __init__(self, activation: torch.nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(6, 12, 3, padding=1)
        self.act = activation
        self.pool = torch.nn.MaxPool2d(2)
        self.head = torch.nn.Linear(12 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        return self.head(torch.flatten(x, 1))


def _export(module: torch.nn.Module, path: Path) -> onnx.ModelProto:
    torch.onnx.export(
        module.eval(), torch.zeros(1, 1, 28, 28), str(path), input_names=["pixels"], output_names=["scores"],
        dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}}, opset_version=13, dynamo=False,
    )
    return onnx.load(str(path))


def _quantize_after_first_pool(model: onnx.ModelProto) -> onnx.ModelProto:
    """What INC makes of a network whose first conv stays fp32: the first pool's output is quantized next."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    pool = next(node for node in graph.node if node.op_type == "MaxPool")
    pooled = pool.output[0]
    graph.initializer.extend(
        [numpy_helper.from_array(np.array(0.02, np.float32), "q_scale"),
         numpy_helper.from_array(np.array(0, np.uint8), "q_zero")]
    )
    for node in graph.node:
        node.input[:] = [f"{pooled}_dq" if name == pooled else name for name in node.input]
    index = list(graph.node).index(pool) + 1
    graph.node.insert(index, helper.make_node("QuantizeLinear", [pooled, "q_scale", "q_zero"], [f"{pooled}_q"]))
    graph.node.insert(index + 1, helper.make_node("DequantizeLinear", [f"{pooled}_q", "q_scale", "q_zero"],
                                                  [f"{pooled}_dq"]))
    onnx.checker.check_model(copy)
    return copy


def _optimized_by_a_plain_session(model: onnx.ModelProto, folder: Path) -> onnx.ModelProto:
    """The graph onnxruntime runs for a user who creates a session with default options (1 thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath)


def uint8_nchw_max_pools(optimized: onnx.ModelProto) -> list[str]:
    """MaxPools onnxruntime runs on quantized tensors in NCHW layout (~6x slower than fp32's)."""
    quantized = {out for node in optimized.graph.node
                 if node.op_type == "QuantizeLinear" or node.op_type.startswith("QLinear") for out in node.output}
    return [node.name for node in optimized.graph.node
            if node.op_type == "MaxPool" and node.domain == "" and node.input[0] in quantized]


@pytest.mark.parametrize(
    "activation",
    [torch.nn.ReLU(), torch.nn.LeakyReLU(0.1), torch.nn.Hardtanh(0.0, 6.0)],  # Hardtanh exports as Clip
    ids=["Relu", "LeakyRelu", "Clip"],
)
def test_pool_moves_above_a_non_decreasing_activation_without_changing_a_bit(
    activation: torch.nn.Module, images: np.ndarray, tmp_path: Path
) -> None:
    quantized = _quantize_after_first_pool(_export(_SmallCnn(activation), tmp_path / "cnn.onnx"))

    rewritten, moved = pool_before_activation(quantized)

    assert len(moved) == 1, "only the pool whose output is quantized next moves"
    onnx.checker.check_model(rewritten)
    producers = {out: node for node in rewritten.graph.node for out in node.output}
    quantize = next(node for node in rewritten.graph.node if node.op_type == "QuantizeLinear")
    activation = producers[quantize.input[0]]
    pool = producers[activation.input[0]]
    assert (pool.op_type, producers[pool.input[0]].op_type) == ("MaxPool", "Conv")
    batch = images[:512]
    before = ort.InferenceSession(quantized.SerializeToString()).run(None, {"pixels": batch})[0]
    after = ort.InferenceSession(rewritten.SerializeToString()).run(None, {"pixels": batch})[0]
    assert np.array_equal(before, after)


def test_a_plain_session_runs_the_rewritten_pool_in_fp32(images: np.ndarray, tmp_path: Path) -> None:
    quantized = _quantize_after_first_pool(_export(_SmallCnn(torch.nn.ReLU()), tmp_path / "cnn.onnx"))
    rewritten, _ = pool_before_activation(quantized)

    # The pattern onnxruntime's default optimizers make slow is there before the rewrite, gone after it.
    assert uint8_nchw_max_pools(_optimized_by_a_plain_session(quantized, tmp_path))
    assert not uint8_nchw_max_pools(_optimized_by_a_plain_session(rewritten, tmp_path))


def _pool_graph(activation: onnx.NodeProto, consumer: str, extra_outputs: tuple[str, ...] = ()) -> onnx.ModelProto:
    nodes = [
        activation,
        helper.make_node("MaxPool", ["act"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    if consumer == "QuantizeLinear":
        nodes.append(helper.make_node("QuantizeLinear", ["pooled", "scale", "zero"], ["out"]))
        out_type = onnx.TensorProto.UINT8
    else:
        nodes.append(helper.make_node(consumer, ["pooled"], ["out"]))
        out_type = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("out", out_type, [1, 2, 2, 2]),
         *(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in extra_outputs)],
        [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
         numpy_helper.from_array(np.array(0, np.uint8), "zero")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.fast
@pytest.mark.parametrize(
    "activation, consumer, extra_outputs",
    [
        (helper.make_node("Relu", ["x"], ["act"]), "Identity", ()),  # not quantized next: nothing to gain
        (helper.make_node("Sigmoid", ["x"], ["act"]), "QuantizeLinear", ()),  # not known to be non-decreasing here
        (helper.make_node("LeakyRelu", ["x"], ["act"], alpha=-0.5), "QuantizeLinear", ()),  # decreasing part
        (helper.make_node("Relu", ["x"], ["act"]), "QuantizeLinear", ("act",)),  # the activation is read elsewhere
        (helper.make_node("Clip", ["x", "lo"], ["act"]), "QuantizeLinear", ()),  # a bound that is not constant
    ],
    ids=["unquantized", "sigmoid", "negative-alpha", "activation-is-an-output", "clip-by-input"],
)
def test_pool_stays_where_the_rewrite_would_not_be_exact_or_useful(activation, consumer, extra_outputs) -> None:
    model = _pool_graph(activation, consumer, extra_outputs)
    if "lo" in activation.input:
        model.graph.input.append(helper.make_tensor_value_info("lo", onnx.TensorProto.FLOAT, []))
    rewritten, moved = pool_before_activation(model)
    assert moved == []
    assert rewritten.SerializeToString() == model.SerializeToString()


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return _plain_session(model).run(None, {"x": x})[0]


def _random_input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (1, 2, 4, 4)).astype(np.float32)


@pytest.mark.fast
@pytest.mark.parametrize(
    "activation",
    [
        helper.make_node("Relu", ["x"], ["act"]),
        helper.make_node("LeakyRelu", ["x"], ["act"], alpha=0.0),  # alpha 0 is still non-decreasing
        helper.make_node("LeakyRelu", ["x"], ["act"]),  # ONNX's default alpha, 0.01
        helper.make_node("Clip", ["x", "", "hi"], ["act"]),  # a bound left out, the other a constant
    ],
    ids=["Relu", "LeakyRelu-alpha-0", "LeakyRelu-default-alpha", "Clip-constant-bound"],
)
@pytest.mark.parametrize("quantizer", ["QuantizeLinear", "DynamicQuantizeLinear"])
def test_pool_moves_above_a_non_decreasing_activation_in_a_small_graph(activation, quantizer: str) -> None:
    """The pool reads the activation's input and the activation the pool's output; the pooled tensor keeps its
    name, so the quantizer is untouched; the output is the same bit for bit, and the node order topological."""
    model = _pool_graph(activation, "QuantizeLinear")
    if "hi" in activation.input:
        model.graph.initializer.append(numpy_helper.from_array(np.array(4.0, np.float32), "hi"))
    if quantizer == "DynamicQuantizeLinear":
        model.graph.node[2].CopyFrom(helper.make_node("DynamicQuantizeLinear", ["pooled"], ["out", "s", "z"]))
        model.graph.value_info.append(helper.make_tensor_value_info("act", onnx.TensorProto.FLOAT, [1, 2, 4, 4]))
    model.graph.node[1].name = "pool"
    rewritten, moved = pool_before_activation(model)
    assert moved == ["pool"]
    pool, act = rewritten.graph.node[0], rewritten.graph.node[1]
    assert (pool.op_type, list(pool.input[:1]), list(pool.output)) == ("MaxPool", ["x"], ["act"])
    assert (act.op_type, act.input[0], list(act.output)) == (activation.op_type, "act", ["pooled"])
    assert list(rewritten.graph.node[2].input[:1]) == ["pooled"]
    assert len(rewritten.graph.value_info) == 0  # the swapped tensors changed shape
    onnx.checker.check_model(rewritten)
    for seed in range(5):
        x = _random_input(seed)
        assert np.array_equal(_run(rewritten, x), _run(model, x))


@pytest.mark.fast
def test_an_unnamed_pool_is_named_by_its_place() -> None:
    model = _pool_graph(helper.make_node("Relu", ["x"], ["act"]), "QuantizeLinear")
    model.graph.node.insert(0, helper.make_node("Identity", ["x"], ["x_id"]))
    model.graph.node[1].input[0] = "x_id"
    _, moved = pool_before_activation(model)
    assert moved == ["MaxPool_2"]


def _with(model: onnx.ModelProto, edit: str) -> onnx.ModelProto:
    """``model`` (``_pool_graph`` with a Relu) with one of the conditions of the pool rewrite broken."""
    graph = model.graph
    relu, pool, _ = graph.node
    if edit == "pool-is-an-output":
        graph.output.append(helper.make_tensor_value_info("pooled", onnx.TensorProto.FLOAT, None))
    elif edit == "pool-read-twice":
        graph.node.append(helper.make_node("Identity", ["pooled"], ["pooled_copy"]))
        graph.output.append(helper.make_tensor_value_info("pooled_copy", onnx.TensorProto.FLOAT, None))
    elif edit == "activation-read-twice":
        graph.node.append(helper.make_node("Identity", ["act"], ["act_copy"]))
        graph.output.append(helper.make_tensor_value_info("act_copy", onnx.TensorProto.FLOAT, None))
    elif edit == "pool-indices":
        pool.output.append("indices")
        graph.output.append(helper.make_tensor_value_info("indices", onnx.TensorProto.INT64, None))
    elif edit == "pool-other-domain":
        pool.domain = "com.example"
    elif edit == "activation-other-domain":
        relu.domain = "com.example"
    elif edit == "activation-two-outputs":
        relu.CopyFrom(helper.make_node("Split", ["x"], ["act", "rest"], axis=3))
    elif edit == "pool-reads-an-input":
        pool.input[0] = "x"
        graph.output.append(helper.make_tensor_value_info("act", onnx.TensorProto.FLOAT, None))
    return model


@pytest.mark.fast
@pytest.mark.parametrize(
    "edit",
    ["pool-is-an-output", "pool-read-twice", "activation-read-twice", "pool-indices", "pool-other-domain",
     "activation-other-domain", "activation-two-outputs", "pool-reads-an-input"],
)
def test_pool_stays_where_a_condition_of_the_rewrite_fails(edit: str) -> None:
    model = _with(_pool_graph(helper.make_node("Relu", ["x"], ["act"]), "QuantizeLinear"), edit)
    rewritten, moved = pool_before_activation(model)
    assert moved == []
    assert rewritten.SerializeToString() == model.SerializeToString()


@pytest.mark.fast
def test_a_clip_whose_bounds_come_from_constant_nodes_moves() -> None:
    model = _pool_graph(helper.make_node("Clip", ["x", "lo", "hi"], ["act"]), "QuantizeLinear")
    model.graph.node.insert(0, helper.make_node("Constant", [], ["lo"], value=numpy_helper.from_array(np.array(-1.0, np.float32))))
    model.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "hi"))
    rewritten, moved = pool_before_activation(model)
    assert len(moved) == 1
    x = _random_input(3)
    assert np.array_equal(_run(rewritten, x), _run(model, x))


# --- batch_capable_copy on small graphs ------------------------------------------------------------------------


def _reshaping(batch: int | str, shapes: dict[str, list[int]], reshapes: list[tuple[str, str]]) -> onnx.ModelProto:
    """x [batch, 2, 2] -> Reshape(x, shape) per ``reshapes`` (output, shape initializer), each output [batch, 4]."""
    nodes = [helper.make_node("Reshape", ["x", shape], [output], name=f"reshape_{output}") for output, shape in reshapes]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 2, 2])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, [batch, 4]) for output, _ in reshapes],
        [numpy_helper.from_array(np.array(value, np.int64), name) for name, value in shapes.items()],
        value_info=[helper.make_tensor_value_info("unused", onnx.TensorProto.FLOAT, [batch, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _initializers(model: onnx.ModelProto) -> dict[str, list[int]]:
    return {init.name: numpy_helper.to_array(init).tolist() for init in model.graph.initializer}


@pytest.mark.fast
def test_a_fixed_batch_reshape_becomes_minus_one_and_the_copy_runs_at_any_batch() -> None:
    model = _reshaping(2, {"shape": [2, 4]}, [("y", "shape")])
    copy = batch_capable_copy(model, "two.onnx")
    assert _initializers(copy) == {"shape": [-1, 4]}
    assert [v.type.tensor_type.shape.dim[0].dim_param for v in (*copy.graph.input, *copy.graph.output)] == ["batch"] * 2
    assert len(copy.graph.value_info) == 0
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 2, 2)
    assert np.array_equal(_plain_session(copy).run(None, {"x": x})[0], x.reshape(5, 4))
    assert _initializers(model) == {"shape": [2, 4]}  # the original is untouched


@pytest.mark.fast
@pytest.mark.parametrize("taken, private", [([], "shape_batch"), (["shape_batch"], "shape_batch_1"),
                                            (["shape_batch", "shape_batch_1"], "shape_batch_2")])
def test_a_shape_shared_with_another_reader_gets_a_private_copy_with_an_unused_name(taken, private) -> None:
    """Two Reshapes and an Identity read ``shape``: the first Reshape gets a private copy, the second too (the
    Identity still reads ``shape``), and ``shape`` itself keeps [2, 4] for the Identity."""
    model = _reshaping(2, {"shape": [2, 4], **{name: [7] for name in taken}}, [("y", "shape"), ("z", "shape")])
    model.graph.node.append(helper.make_node("Identity", ["shape"], ["shape_out"]))
    model.graph.output.append(helper.make_tensor_value_info("shape_out", onnx.TensorProto.INT64, [2]))
    copy = batch_capable_copy(model, "shared.onnx")
    values = _initializers(copy)
    assert values["shape"] == [2, 4] and values[private] == [-1, 4]
    assert [node.input[1] for node in copy.graph.node[:2]] == [private, f"{private}_1" if not taken else
                                                             _next_free(private, taken)]
    assert all(values[name] == [7] for name in taken)
    x = np.ones((3, 2, 2), np.float32)
    y, z, shape_out = _plain_session(copy).run(None, {"x": x})
    assert y.shape == z.shape == (3, 4) and shape_out.tolist() == [2, 4]


def _next_free(private: str, taken: list[str]) -> str:
    """The name the second Reshape's copy gets: ``shape_batch`` then ``_1``, ``_2``, ... past the taken ones."""
    names = ["shape_batch"] + [f"shape_batch_{k}" for k in range(1, 10)]
    free = [name for name in names if name not in taken]
    return free[free.index(private) + 1]


@pytest.mark.fast
def test_two_reshapes_sharing_a_shape_share_one_rewritten_shape_in_the_end() -> None:
    """The first takes a private copy while the second still reads ``shape``; the second is then its only
    reader, so ``shape`` itself is rewritten: one new initializer, not two."""
    copy = batch_capable_copy(_reshaping(2, {"shape": [2, 4]}, [("y", "shape"), ("z", "shape")]), "m.onnx")
    assert _initializers(copy) == {"shape": [-1, 4], "shape_batch": [-1, 4]}
    assert [node.input[1] for node in copy.graph.node] == ["shape_batch", "shape"]


@pytest.mark.fast
def test_reshapes_without_the_batch_are_left_alone() -> None:
    model = _reshaping(2, {"other": [4, 2], "w": [2, 2], "w_shape": [4]}, [("y", "other")])
    model.graph.node.append(helper.make_node("Reshape", ["w", "w_shape"], ["w_flat"], name="weights"))  # a weight
    model.graph.output.append(helper.make_tensor_value_info("w_flat", onnx.TensorProto.INT64, [4]))
    model.graph.node.append(helper.make_node("Reshape", ["x", "computed"], ["v"], name="computed_shape"))
    model.graph.node.insert(0, helper.make_node("Shape", ["x"], ["computed"]))
    copy = batch_capable_copy(model, "m.onnx")
    assert _initializers(copy) == {"other": [4, 2], "w": [2, 2], "w_shape": [4]}
    symbolic = _reshaping("n", {"shape": [2, 4]}, [("y", "shape")])  # no fixed batch: nothing to match
    assert _initializers(batch_capable_copy(symbolic)) == {"shape": [2, 4]}


@pytest.mark.fast
def test_a_fixed_batch_next_to_another_minus_one_is_refused() -> None:
    model = _reshaping(2, {"shape": [2, -1]}, [("y", "shape")])
    with pytest.raises(InputError, match=r"^<model>: Reshape 'reshape_y' has shape \[2, -1\]; its fixed batch size "
                                         r"cannot become -1 next to another -1$"):
        batch_capable_copy(model)


@pytest.mark.fast
def test_a_model_that_is_no_classifier_is_refused_naming_its_source() -> None:
    model = _reshaping(2, {"shape": [2, 4]}, [("y", "shape")])
    del model.graph.output[:]
    with pytest.raises(InputError, match=r"^two\.onnx: the graph declares no output"):
        batch_capable_copy(model, "two.onnx")
