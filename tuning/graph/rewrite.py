"""Graph rewrites: every change this project makes to a model's graph, each exact and checked.

* :func:`batch_capable_copy` makes a fixed-batch model (the zoo's) run at any batch size;
  :func:`tuning.measure.evaluate.verify_batch_copy` checks the copy against the original on real images.
* :func:`pool_before_activation` moves a MaxPool above the activation in front of it where the
  pooled tensor is quantized next, so that onnxruntime's *default* optimizers leave the pooling in
  fp32 (fast) instead of turning it into a slow uint8 MaxPool. Max pooling commutes with every
  non-decreasing element-wise function, so the outputs do not change by a single bit.

Why the second rewrite matters (mnist-12, onnxruntime 1.31, README "Deployable speed"): where
INC keeps a first Conv in fp32, the int8 graph reads ``Conv -> Relu -> MaxPool -> QuantizeLinear``.
onnxruntime's ``QDQPropagationTransformer`` moves a QuantizeLinear up through a MaxPool (opset 12
MaxPool, Reshape, Transpose, ...) but not through a Relu. It turns the fp32 MaxPool into a uint8
MaxPool in NCHW layout, ~6x slower than the fp32 one, which makes the int8 model slower than fp32
under default session options. With ``Conv -> MaxPool -> Relu -> QuantizeLinear`` the propagation
stops at the Relu; onnxruntime then folds the Relu into the QuantizeLinear (zero point 0 clamps
negatives) and runs the same fast graph it would run with that optimizer switched off.

* :func:`pool_before_quantize` removes the Quantize/Dequantize pair in front of a MaxPool whose output is
  quantized again with the same parameters, so that OpenVINO pools in f32/bf16 and quantizes once after
  the pool (docs/openvino-nncf.md: on an AMD EPYC its uint8 MaxPool after mnist-12's first conv cost as much
  as the conv; on an Intel Xeon limited to AVX2 the moved graph was slower). Quantizing is non-decreasing and a
  Quantize undoes its Dequantize: bit-identical outputs. Objective latency times both placements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from tuning.config.enums import Runtime
from tuning.errors import InputError
from tuning.files.onnx_io import describe

BATCH_DIM_NAME = "batch"
_QUANTIZE_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear"})


def batch_capable_copy(model: onnx.ModelProto, source: Path | str = "<model>") -> onnx.ModelProto:
    """A copy whose batch dimension is symbolic, so it runs at any batch size.

    The input's and outputs' dim 0 become ``batch``; a Reshape whose target shape is an
    initializer starting with the fixed batch size gets -1 there (on a private copy of the
    initializer when other nodes share it). Reshapes of initializers (weights) carry no batch
    and are left alone. Intermediate value_info shapes would be stale, so they are dropped
    and onnxruntime infers them again.
    """
    spec = describe(model, source)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    initializers = {init.name: init for init in graph.initializer}
    graph_input = next(value for value in graph.input if value.name not in initializers)
    for value in (graph_input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = BATCH_DIM_NAME
    if spec.batch_dim is not None:
        _rewrite_batch_reshapes(graph, initializers, spec.batch_dim, source)
    del graph.value_info[:]
    try:
        onnx.checker.check_model(copy)
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).splitlines()[0]
        raise InputError(f"{source}: the batch-capable copy is not a valid model ({first_line})") from None
    return copy


def _rewrite_batch_reshapes(
    graph: onnx.GraphProto, initializers: dict[str, onnx.TensorProto], batch: int, source: Path | str
) -> None:
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[0] in initializers:
            continue
        shape_tensor = initializers.get(node.input[1])
        if shape_tensor is None:
            continue
        shape = numpy_helper.to_array(shape_tensor)
        if shape.ndim != 1 or shape.size == 0 or shape[0] != batch:
            continue
        if -1 in shape[1:]:
            raise InputError(
                f"{source}: Reshape {node.name!r} has shape {shape.tolist()}; its fixed batch size cannot "
                "become -1 next to another -1"
            )
        rewritten = shape.copy()
        rewritten[0] = -1
        if uses[node.input[1]] > 1:
            private_name = _unused_name(f"{node.input[1]}_{BATCH_DIM_NAME}", initializers)
            private = numpy_helper.from_array(rewritten, private_name)
            graph.initializer.append(private)
            initializers[private_name] = graph.initializer[-1]
            uses[node.input[1]] -= 1
            node.input[1] = private_name
        else:
            shape_tensor.CopyFrom(numpy_helper.from_array(rewritten, shape_tensor.name))


def _unused_name(stem: str, taken: Mapping[str, object]) -> str:
    name, index = stem, 1
    while name in taken:
        name, index = f"{stem}_{index}", index + 1
    return name


def pool_before_activation(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy with ``act -> MaxPool -> Quantize`` turned into ``MaxPool -> act -> Quantize``; the moved pools.

    Only where the MaxPool's output is quantized next (the pattern onnxruntime's QDQ propagation
    would turn into a slow uint8 MaxPool), the activation is element-wise and non-decreasing
    (:func:`_is_non_decreasing`), both nodes have a single consumer, and the MaxPool returns no
    indices. The result is exact: ``max(f(x)) == f(max(x))`` for every non-decreasing ``f``.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = list(copy.graph.node)
    graph_outputs = {value.name for value in copy.graph.output}
    producers = {output: node for node in nodes for output in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for value in node.input:
            consumers.setdefault(value, []).append(node)
    constants = {init.name for init in copy.graph.initializer} | {
        output for node in nodes if node.op_type == "Constant" for output in node.output
    }
    moved = []
    for pool_index, pool in enumerate(nodes):
        if pool.op_type != "MaxPool" or pool.domain not in ("", "ai.onnx") or len(pool.output) != 1:
            continue
        activation = producers.get(pool.input[0])
        next_nodes = consumers.get(pool.output[0], [])
        if (
            activation is None
            or not _is_non_decreasing(activation, constants)
            or len(consumers.get(activation.output[0], [])) != 1
            or activation.output[0] in graph_outputs
            or pool.output[0] in graph_outputs
            or len(next_nodes) != 1
            or next_nodes[0].op_type not in _QUANTIZE_OPS
        ):
            continue
        # Rewire: the pool reads the activation's input; the activation reads the pool's result and
        # writes the tensor the pool used to write, so every later node is untouched.
        activated, pooled = activation.output[0], pool.output[0]
        pool.input[0] = activation.input[0]
        pool.output[0] = activated
        activation.input[0] = activated
        activation.output[0] = pooled
        # Swapping their places keeps the order topological: the pool's input comes from before the
        # activation's place, and nothing between the two read the activation (its only reader was the pool).
        activation_index = nodes.index(activation)
        nodes[activation_index], nodes[pool_index] = pool, activation
        moved.append(pool.name or f"MaxPool_{pool_index}")
    if moved:
        del copy.graph.node[:]
        copy.graph.node.extend(nodes)
        del copy.graph.value_info[:]  # the swapped tensors changed shape; onnxruntime infers them again
    return copy, moved


BEFORE_QUANTIZER = "moved before its quantizer"  # how a pool_before_quantize move is reported


def deployment_rewrites(
    model: onnx.ModelProto, runtime: Runtime, pools_before_quantizers: bool = True
) -> tuple[onnx.ModelProto, list[str]]:
    """The exact rewrites every int8 model INC makes gets before it is scored, timed or written, for ``runtime``.

    On every runtime the pool goes above its activation (:func:`pool_before_activation`); on OpenVINO, unless
    ``pools_before_quantizers`` is false, it also goes before its quantizer (:func:`pool_before_quantize`):
    OpenVINO's uint8 MaxPool is slow on some CPUs and its standalone FakeQuantize on others, so objective
    latency times both placements (tuning/search/latency.py), while on onnxruntime the moved graph is slower.
    Returns the model and what was done, one phrase per moved pool.
    """
    rewritten, moved = pool_before_activation(model)
    done = [f"MaxPool {name} moved above its activation" for name in moved]
    if runtime is not Runtime.ONNXRUNTIME and pools_before_quantizers:
        rewritten, requantized = pool_before_quantize(rewritten)
        done += [f"MaxPool {name} {BEFORE_QUANTIZER}" for name in requantized]
    return rewritten, done


def _is_non_decreasing(node: onnx.NodeProto, constants: set[str]) -> bool:
    """Whether ``node`` is an element-wise, non-decreasing function of its first input alone."""
    if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return False
    if node.op_type == "Relu":
        return True
    if node.op_type == "LeakyRelu":
        alpha = next((attr.f for attr in node.attribute if attr.name == "alpha"), 0.01)
        return alpha >= 0
    if node.op_type == "Clip":
        # Clip's bounds must be constants, or they are not a function of the first input alone.
        return all(not name or name in constants for name in node.input[1:])
    return False


# --- pool_before_quantize -----------------------------------------------------------------------------

_DEFAULT_DOMAINS = ("", "ai.onnx")
# uint8 only: the type INC and onnxruntime give activations. The proof holds for int8 too, but OpenVINO (2026.4,
# f32) quantizes an int8 tensor differently in a Conv's fused output stage and in a standalone FakeQuantize: with
# the pair removed, a few outputs per million moved by one step. With uint8 it matched bit for bit.
_QUANTIZED_TYPE = np.dtype(np.uint8)


@dataclass(frozen=True)
class _Quantization:
    """A Quantize/DequantizeLinear node's parameters, read from constants: what makes two such nodes equal."""

    scale: np.ndarray  # float32, 0-d (per tensor) or 1-d (per channel on axis 1)
    zero_point: np.ndarray  # uint8, the scale's shape
    per_channel: bool

    def same_as(self, other: _Quantization) -> bool:
        return self.per_channel == other.per_channel and all(
            mine.dtype == theirs.dtype and mine.shape == theirs.shape and np.array_equal(mine, theirs)
            for mine, theirs in ((self.scale, other.scale), (self.zero_point, other.zero_point))
        )


def pool_before_quantize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy with ``y -> Q -> DQ -> MaxPool -> Q' -> DQ'`` turned into ``y -> MaxPool -> Q' -> DQ'``; the moved pools.

    Applies where (anything else is left as it is):

    * Q, DQ and Q' are default-domain QuantizeLinear/DequantizeLinear with constant, equal parameters
      (:class:`_Quantization`: float32 scales, positive and normal; the same uint8 zero points; per tensor,
      or per channel on axis 1, which max-pooling keeps) and no other attribute (no blocks, no float8, no
      other output type); ``y`` is float32 like the scale;
    * Q's only reader is DQ, DQ's only reader the MaxPool, the MaxPool's only reader Q'; none of their
      outputs is a graph output; the MaxPool has no Indices output.

    Why the outputs are bit-identical (for inputs without NaN). Every pooled value before the rewrite is
    ``Q'(max_i DQ(Q(y_i)))`` over the window's elements ``y_i``; after it, ``Q'(max_i y_i)``.

    1. ``DQ∘Q`` is non-decreasing: Q divides by a positive scale, rounds half to even, adds the zero point
       and saturates, each step non-decreasing; DQ subtracts the zero point and multiplies by a positive
       scale. A non-decreasing ``f`` commutes with max (``max f(y_i)`` is ``f`` of some ``y_j`` and no
       ``f(y_i)`` exceeds ``f(max y_i)``), so the pool before the rewrite gives ``DQ(Q(max_i y_i))``.
       The windows are the same (pads are ignored by MaxPool either way).
    2. ``Q'∘DQ`` is the identity on quantized values, because Q' and DQ share scale and zero point: the
       float32 product ``(q - z) * s`` divided by ``s`` (or times ``1/s``) differs from the integer
       ``|q - z| <= 255`` by at most 255 * 3 * 2**-24 < 2**-14 (three roundings; a normal scale keeps the
       product normal), far from the 0.5 that would change the rounding.
    3. Q and Q' are the same function, so ``Q'(DQ(Q(m))) = Q(m) = Q'(m)`` for ``m = max_i y_i``.

    A Relu ahead of Q stays where it is (it is part of ``y``). One that INC folded into Q (a uint8 Q with
    zero point 0 clamps negatives to it) is not lost either: Q' saturates at the same value. Chains of pools
    sharing one quantizer are rewritten one pool at a time, each step exact. The pooling then runs in float32
    on the unquantized tensor, which is why this is for OpenVINO (onnxruntime is slower with it).
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    float32_values = _float32_values(copy)
    constants = _constant_arrays(graph)
    names = {node.output[0]: node.name or f"MaxPool_{index}" for index, node in enumerate(graph.node)
             if node.op_type == "MaxPool" and node.output}
    nodes = list(graph.node)
    moved = []
    # One pool per pass, on fresh maps: removing a pair may take the second quantizer of an earlier match.
    parameters: set[str] = set()
    while (match := _next_requantized_pool(nodes, graph, float32_values, constants)) is not None:
        quantize, dequantize, pool = match
        # y is computed before Q, so the pool reading it keeps the node order topological.
        pool.input[0] = quantize.input[0]
        nodes.remove(quantize)
        nodes.remove(dequantize)
        parameters.update((*quantize.input[1:], *dequantize.input[1:]))
        moved.append(names[pool.output[0]])
    if moved:
        read = set(_readers(nodes)) | {value.name for value in graph.output}
        unread = parameters - read  # the removed pair's own scale and zero point, where no other node shares them
        nodes = [node for node in nodes if not (node.op_type == "Constant" and node.output[0] in unread)]
        del graph.node[:]
        graph.node.extend(nodes)
        for init in [init for init in graph.initializer if init.name in unread]:
            graph.initializer.remove(init)
        kept_values = {name for node in nodes for name in (*node.input, *node.output)}
        for value in [value for value in graph.value_info if value.name not in kept_values]:
            graph.value_info.remove(value)
    return copy, moved


def _next_requantized_pool(
    nodes: list[onnx.NodeProto], graph: onnx.GraphProto, float32_values: set[str], constants: dict[str, np.ndarray]
) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto] | None:
    """The first ``(Q, DQ, MaxPool)`` whose Q/DQ pair :func:`pool_before_quantize` may remove, if any."""
    producers = {output: node for node in nodes for output in node.output}
    readers = _readers(nodes)
    graph_outputs = {value.name for value in graph.output}

    def only_reader(value: str, op_type: str) -> onnx.NodeProto | None:
        found = readers.get(value, [])
        if value in graph_outputs or len(found) != 1 or found[0].op_type != op_type:
            return None
        return found[0] if found[0].domain in _DEFAULT_DOMAINS else None

    for pool in nodes:
        if pool.op_type != "MaxPool" or pool.domain not in _DEFAULT_DOMAINS or any(pool.output[1:]):
            continue
        dequantize = producers.get(pool.input[0])
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        quantize = producers.get(dequantize.input[0])
        if (
            quantize is None
            or quantize.op_type != "QuantizeLinear"
            or quantize.input[0] not in float32_values
            or only_reader(quantize.output[0], "DequantizeLinear") is not dequantize
            or only_reader(dequantize.output[0], "MaxPool") is not pool
        ):
            continue
        requantize = only_reader(pool.output[0], "QuantizeLinear")
        first = _quantization(quantize, constants)
        if (
            requantize is not None
            and first is not None
            and all((other := _quantization(node, constants)) is not None and other.same_as(first)
                    for node in (dequantize, requantize))
        ):
            return quantize, dequantize, pool
    return None


def _quantization(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> _Quantization | None:
    """The node's parameters, or None where the proof of :func:`pool_before_quantize` does not cover them."""
    if node.domain not in _DEFAULT_DOMAINS or any(attribute.name != "axis" for attribute in node.attribute):
        return None
    scale = constants.get(node.input[1])
    has_zero_point = len(node.input) > 2 and node.input[2]
    zero_point = constants.get(node.input[2]) if has_zero_point else None
    if scale is None or scale.dtype != np.float32 or scale.ndim > 1 or (has_zero_point and zero_point is None):
        return None
    if zero_point is None:  # ONNX's default: uint8 zero
        zero_point = np.zeros(scale.shape, np.uint8)
    axis = next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 1)
    per_channel = scale.ndim == 1
    if zero_point.dtype != _QUANTIZED_TYPE or zero_point.shape != scale.shape:
        return None
    if per_channel and axis != 1:  # max-pooling keeps axis 1 (channels); a negative axis needs the rank
        return None
    widest = np.maximum(255.0 - zero_point, zero_point.astype(np.float64))  # the largest |q - z|
    if not np.all(scale >= np.finfo(np.float32).tiny) or not np.all(widest * scale <= np.finfo(np.float32).max):
        return None  # a subnormal product (q - z) * s would lose the integer; an overflowing one saturates
    return _Quantization(scale, zero_point, per_channel)


def _float32_values(model: onnx.ModelProto) -> set[str]:
    """Names of the values ONNX's type inference finds to be float32 (inputs, outputs, intermediates)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {
        value.name
        for value in (*graph.input, *graph.value_info, *graph.output)
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }


def _constant_arrays(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers a caller cannot override (not also graph inputs) and Constant nodes' tensors."""
    inputs = {value.name for value in graph.input}
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer if init.name not in inputs}
    for node in graph.node:
        values = [attribute for attribute in node.attribute if attribute.name == "value"]
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and values:
            arrays[node.output[0]] = numpy_helper.to_array(values[0].t)
    return arrays


def _readers(nodes: list[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    """Per value, the nodes that read it; a node whose subgraph (If, Loop, Scan) reads it counts as a reader."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for value in set(node.input) | _read_by_subgraphs(node):
            if value:
                readers.setdefault(value, []).append(node)
    return readers


def _read_by_subgraphs(node: onnx.NodeProto) -> set[str]:
    subgraphs = [
        graph
        for attribute in node.attribute
        for graph in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs)
    ]
    return {
        value for graph in subgraphs for inner in graph.node for value in (*inner.input, *_read_by_subgraphs(inner))
    }
