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
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnx
from onnx import numpy_helper

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
