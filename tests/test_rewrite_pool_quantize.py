"""tuning.graph.rewrite.pool_before_quantize: exact, bit for bit, and refused wherever the proof does not hold.

Models are built here (onnx.helper graphs with the patterns one at a time; torch CNNs quantized by
onnxruntime's quantize_static in QDQ format; INC's own output in the slow test) and run on real MNIST test
images, on onnxruntime and, where it is installed, on OpenVINO with f32 inference precision (its bf16
default stores the pre-pool tensor in bf16, which no rewrite can keep exact).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from tuning.config.enums import Runtime, Split
from tuning.config.schema import DatasetSection
from tuning.data.datasets import evaluation_images
from tuning.graph.rewrite import deployment_rewrites, pool_before_quantize

ROOT = Path(__file__).resolve().parent.parent
FLOAT, UINT8, INT8 = onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8, onnx.TensorProto.INT8


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """MNIST test images as the shipped config feeds them: (N, 1, 28, 28) float32 in [0, 1]."""
    return evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28)).images


# The small graphs are compared on the first 1,000 test images (about 170,000 pooled values per channel): the
# rewrite is exact or wrong by structure, and a tenth of the split keeps each mutant's run of these tests short.
SOME = 1000


def _run_onnxruntime(model: onnx.ModelProto, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels})[0]


def _run_openvino_f32(model: onnx.ModelProto, pixels: np.ndarray) -> np.ndarray:
    openvino = pytest.importorskip("openvino")
    core = openvino.Core()
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(core.read_model(io.BytesIO(model.SerializeToString())), "CPU", config)
    return compiled(pixels)[0]


def _count(model: onnx.ModelProto, op_type: str) -> int:
    return sum(node.op_type == op_type for node in model.graph.node)


# --- graphs built node by node ------------------------------------------------------------------------


def _conv_pool_graph(
    *,
    zero_point: np.ndarray = np.array(0, np.uint8),
    scale: np.ndarray = np.array(0.02, np.float32),
    explicit_relu: bool = False,
    pools: int = 1,
) -> onnx.ModelProto:
    """``pixels -> Conv [-> Relu] -> Q -> DQ -> (MaxPool -> Q -> DQ) x pools``, as INC and onnxruntime write it.

    Every Quantize/Dequantize reads its own initializers (equal values, different names): the rewrite
    compares parameters by value. A uint8 zero point 0 stands in for the Relu (INC folds it so).
    """
    weights = np.random.default_rng(0).normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    initializers = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.full(4, -0.1, np.float32), "b")]
    nodes = [helper.make_node("Conv", ["pixels", "w", "b"], ["conv"], name="conv")]
    if explicit_relu:
        nodes.append(helper.make_node("Relu", ["conv"], ["relu"], name="relu"))
    value = nodes[-1].output[0]

    def quantize_dequantize(name: str) -> None:
        nonlocal value
        initializers.extend([numpy_helper.from_array(scale, f"{name}_scale"),
                             numpy_helper.from_array(zero_point, f"{name}_zero")])
        nodes.append(helper.make_node("QuantizeLinear", [value, f"{name}_scale", f"{name}_zero"], [f"{name}_q"],
                                      name=f"{name}_quantize"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zero"],
                                      [f"{name}_dq"], name=f"{name}_dequantize"))
        value = f"{name}_dq"

    quantize_dequantize("conv")
    for index in range(pools):
        nodes.append(helper.make_node("MaxPool", [value], [f"pooled{index}"], name=f"pool{index}",
                                      kernel_shape=[2, 2], strides=[2, 2]))
        value = f"pooled{index}"
        quantize_dequantize(f"pool{index}")
    graph = helper.make_graph(
        nodes, "conv_pool",
        [helper.make_tensor_value_info("pixels", FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info(value, FLOAT, ["batch", 4, 26 >> pools, 26 >> pools])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def _set_initializer(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    next(init for init in model.graph.initializer if init.name == name).CopyFrom(numpy_helper.from_array(array, name))


def _with_constant_node_parameters(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with the first pair's parameters given by Constant nodes instead of initializers."""
    for name in ("conv_scale", "conv_zero"):
        init = next(init for init in model.graph.initializer if init.name == name)
        model.graph.node.insert(0, helper.make_node("Constant", [], [name], value=init))
        model.graph.initializer.remove(init)
    return model


REWRITABLE: dict[str, Callable[[], onnx.ModelProto]] = {
    "uint8-folded-relu": lambda: _conv_pool_graph(),
    "explicit-relu": lambda: _conv_pool_graph(explicit_relu=True),
    "uint8-zero-point-3": lambda: _conv_pool_graph(zero_point=np.array(3, np.uint8), scale=np.array(0.015, np.float32)),
    "per-channel": lambda: _conv_pool_graph(
        zero_point=np.array([0, 3, 0, 7], np.uint8), scale=np.array([0.02, 0.01, 0.03, 0.015], np.float32)
    ),
    "constant-nodes": lambda: _with_constant_node_parameters(_conv_pool_graph()),
}


@pytest.mark.fast
@pytest.mark.parametrize("make", REWRITABLE.values(), ids=REWRITABLE.keys())
def test_the_pool_moves_before_the_quantizer_without_changing_a_bit(make, images: np.ndarray) -> None:
    model = make()
    before = model.SerializeToString()

    rewritten, moved = pool_before_quantize(model)

    assert model.SerializeToString() == before, "the original must not be modified"
    assert moved == ["pool0"]
    onnx.checker.check_model(rewritten)
    assert (_count(rewritten, "QuantizeLinear"), _count(rewritten, "DequantizeLinear")) == (1, 1)
    producers = {output: node for node in rewritten.graph.node for output in node.output}
    pool = next(node for node in rewritten.graph.node if node.op_type == "MaxPool")
    assert producers[pool.input[0]].op_type == ("Relu" if "relu" in producers else "Conv")
    assert np.array_equal(_run_onnxruntime(rewritten, images[:SOME]), _run_onnxruntime(model, images[:SOME]))


@pytest.mark.fast
@pytest.mark.parametrize("make", REWRITABLE.values(), ids=REWRITABLE.keys())
def test_openvino_f32_gives_the_same_bits_after_the_rewrite(make, images: np.ndarray) -> None:
    model = make()
    rewritten, _ = pool_before_quantize(model)
    assert np.array_equal(_run_openvino_f32(rewritten, images[:SOME]), _run_openvino_f32(model, images[:SOME]))


@pytest.mark.fast
def test_chained_pools_sharing_a_quantizer_move_one_after_the_other(images: np.ndarray) -> None:
    model = _conv_pool_graph(pools=2)

    rewritten, moved = pool_before_quantize(model)

    assert moved == ["pool0", "pool1"]
    assert [node.op_type for node in rewritten.graph.node] == ["Conv", "MaxPool", "MaxPool", "QuantizeLinear",
                                                               "DequantizeLinear"]
    assert np.array_equal(_run_onnxruntime(rewritten, images[:2000]), _run_onnxruntime(model, images[:2000]))


@pytest.mark.fast
@pytest.mark.parametrize("make", [*REWRITABLE.values(), lambda: _conv_pool_graph(pools=2)],
                         ids=[*REWRITABLE.keys(), "chained"])
def test_a_second_rewrite_changes_nothing(make) -> None:
    once, _ = pool_before_quantize(make())
    twice, moved = pool_before_quantize(once)
    assert moved == []
    assert twice.SerializeToString() == once.SerializeToString()


# --- where the rewrite must not apply -----------------------------------------------------------------


def _read_also_by_an_output(value: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        model.graph.node.append(helper.make_node("Identity", [value], [f"{value}_copy"]))
        model.graph.output.append(helper.make_tensor_value_info(f"{value}_copy", onnx.TensorProto.UNDEFINED, None))
    return edit


def _graph_output(value: str) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        model.graph.output.append(helper.make_tensor_value_info(value, onnx.TensorProto.UNDEFINED, None))
    return edit


def _with_indices(model: onnx.ModelProto) -> None:
    pool = next(node for node in model.graph.node if node.op_type == "MaxPool")
    pool.output.append("indices")


def _scale_as_graph_input(model: onnx.ModelProto) -> None:
    """An initializer that is also a graph input is only a default: a caller may feed another scale."""
    model.graph.input.append(helper.make_tensor_value_info("pool0_scale", FLOAT, []))


def _integer_input(model: onnx.ModelProto) -> None:
    """``int32 -> Q -> DQ -> MaxPool``: without the pair the pool would read int32, which it cannot."""
    model.graph.node.insert(1, helper.make_node("Cast", ["conv"], ["conv_int"], to=onnx.TensorProto.INT32))
    next(node for node in model.graph.node if node.name == "conv_quantize").input[0] = "conv_int"


def _dequantize_with_another_scale(model: onnx.ModelProto) -> None:
    model.graph.initializer.append(numpy_helper.from_array(np.array(0.03, np.float32), "other_scale"))
    next(node for node in model.graph.node if node.name == "conv_dequantize").input[1] = "other_scale"


def _signed(model: onnx.ModelProto) -> None:
    """int8 everywhere: exact on onnxruntime, but not on OpenVINO f32 (tuning/graph/rewrite.py, _QUANTIZED_TYPE)."""
    for init in model.graph.initializer:
        if init.name.endswith("_zero"):
            init.CopyFrom(numpy_helper.from_array(np.array(-20, np.int8), init.name))


UNSAFE: dict[str, Callable[[onnx.ModelProto], None]] = {
    "different-scale": lambda model: _set_initializer(model, "pool0_scale", np.array(0.021, np.float32)),
    "different-zero-point": lambda model: _set_initializer(model, "pool0_zero", np.array(3, np.uint8)),
    "different-type": lambda model: _set_initializer(model, "pool0_zero", np.array(0, np.int8)),
    "dequantize-differs": _dequantize_with_another_scale,
    "scale-not-constant": _scale_as_graph_input,
    "quantized-read-twice": _read_also_by_an_output("conv_q"),
    "dequantized-read-twice": _read_also_by_an_output("conv_dq"),
    "pooled-read-twice": _read_also_by_an_output("pooled0"),
    "quantized-is-output": _graph_output("conv_q"),
    "dequantized-is-output": _graph_output("conv_dq"),
    "pooled-is-output": _graph_output("pooled0"),
    "indices-output": _with_indices,
    "integer-input": _integer_input,
    "int8": _signed,
}


@pytest.mark.fast
@pytest.mark.parametrize("edit", UNSAFE.values(), ids=UNSAFE.keys())
def test_the_graph_stays_as_it_is_where_a_condition_fails(edit) -> None:
    model = _conv_pool_graph()
    edit(model)
    rewritten, moved = pool_before_quantize(model)
    assert moved == []
    assert rewritten.SerializeToString() == model.SerializeToString()


def _remove_first_pair_by_hand(model: onnx.ModelProto) -> onnx.ModelProto:
    """What a rewrite that ignored the quantizers' parameters would make."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    pool = next(node for node in copy.graph.node if node.op_type == "MaxPool")
    pool.input[0] = "conv"
    for name in ("conv_quantize", "conv_dequantize"):
        copy.graph.node.remove(next(node for node in copy.graph.node if node.name == name))
    return copy


@pytest.mark.fast
@pytest.mark.parametrize("edit", ["different-scale", "different-zero-point"])
def test_a_move_past_a_different_quantizer_would_change_outputs_and_is_refused(edit: str, images: np.ndarray) -> None:
    model = _conv_pool_graph()
    UNSAFE[edit](model)
    wrong = _remove_first_pair_by_hand(model)
    onnx.checker.check_model(wrong)
    batch = images[:2000]
    assert not np.array_equal(_run_onnxruntime(wrong, batch), _run_onnxruntime(model, batch))
    assert pool_before_quantize(model)[1] == []


# --- CNNs from torch, quantized by onnxruntime -------------------------------------------------------


class _Cnn(torch.nn.Module):
    """Conv -> ReLU -> MaxPool twice, then a linear head; names and sizes unlike mnist-12's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.head = torch.nn.Linear(16 * 6 * 6, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(image), 1))


class _Images(CalibrationDataReader):
    def __init__(self, input_name: str, pixels: np.ndarray) -> None:
        self._feeds = iter([{input_name: pixels[i : i + 16]} for i in range(0, len(pixels), 16)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _torch_cnn_quantized(folder: Path, calibration: np.ndarray, per_channel: bool) -> onnx.ModelProto:
    float_path, int8_path = folder / "cnn.onnx", folder / "cnn-int8.onnx"
    torch.onnx.export(
        _Cnn().eval(), torch.zeros(1, 1, 28, 28), str(float_path), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, opset_version=13, dynamo=False,
    )
    quantize_static(
        str(float_path), str(int8_path), _Images("image", calibration), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
    )
    return onnx.load(str(int8_path))


@pytest.mark.fast
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor-weights", "per-channel-weights"])
def test_torch_cnn_quantized_by_onnxruntime(per_channel: bool, images: np.ndarray, tmp_path: Path) -> None:
    model = _torch_cnn_quantized(tmp_path, images[-512:], per_channel)

    rewritten, moved = pool_before_quantize(model)

    assert len(moved) == 2, "both pools are re-quantized with their input's parameters"
    onnx.checker.check_model(rewritten)
    for op_type in ("QuantizeLinear", "DequantizeLinear"):
        assert _count(rewritten, op_type) == _count(model, op_type) - 2
    for batch in (images[:1], images[:3000]):  # the dynamic batch dimension stays dynamic
        assert np.array_equal(_run_onnxruntime(rewritten, batch), _run_onnxruntime(model, batch))
    assert np.array_equal(_run_openvino_f32(rewritten, images[:3000]), _run_openvino_f32(model, images[:3000]))


# --- INC's own output ------------------------------------------------------------------------------


def test_incs_qdq_model_from_the_default_run(default_run, images: np.ndarray) -> None:
    config, _ = default_run
    model = onnx.load(str(config.output.model))
    if _count(model, "QuantizeLinear") == 0:
        pytest.skip("the default run chose a QOperator model: no Quantize/Dequantize pairs to remove")

    rewritten, moved = pool_before_quantize(model)

    # The onnxruntime-tuned model may keep a conv in fp32 (its pool then moved above the Relu): at least one.
    assert moved, "a pool of mnist-12 is re-quantized with its input's parameters"
    assert _count(rewritten, "QuantizeLinear") == _count(model, "QuantizeLinear") - len(moved)
    assert np.array_equal(_run_onnxruntime(rewritten, images), _run_onnxruntime(model, images))


@pytest.mark.fast
@pytest.mark.parametrize("runtime", list(Runtime), ids=[runtime.value for runtime in Runtime])
def test_only_an_openvino_deployment_gets_the_pool_before_its_quantizer(runtime: Runtime, images: np.ndarray) -> None:
    # On onnxruntime the same graph is slower (docs/openvino-nncf.md): its candidates must keep the quantized pool.
    model = _conv_pool_graph(explicit_relu=True)
    rewritten, done = deployment_rewrites(model, runtime)
    if runtime is Runtime.ONNXRUNTIME:
        assert done == []  # the pool reads a Dequantize, not an activation: nothing for onnxruntime to move
        assert rewritten.SerializeToString() == model.SerializeToString()
    else:
        assert done == ["MaxPool pool0 moved before its quantizer"]
        assert _count(rewritten, "QuantizeLinear") == 1
    assert np.array_equal(_run_onnxruntime(rewritten, images[:SOME]), _run_onnxruntime(model, images[:SOME]))
