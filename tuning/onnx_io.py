"""Loading, describing and saving ONNX classifiers.

Everything the pipeline knows about a model (input name, per-sample shape, batch
dimension, number of classes) comes from the graph itself, never from constants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from tuning.atomic import write_bytes_atomic
from tuning.errors import InputError

METADATA_PREFIX = "tuning."


@dataclass(frozen=True)
class ModelSpec:
    """The model's single input and first output, as the graph declares them."""

    input_name: str
    batch_dim: int | None  # None when the batch dimension is symbolic
    sample_shape: tuple[int, ...]
    output_name: str
    num_classes: int


def load_model(path: Path) -> onnx.ModelProto:
    """Parse and check an ONNX file; every failure is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        model = onnx.load_model(str(path))
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{path}: not a valid ONNX model ({first_line})") from None
    return model


def describe(model: onnx.ModelProto, source: Path | str = "<model>") -> ModelSpec:
    """Read the input/output spec of a single-input float32 classifier."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise InputError(f"{source}: expected one graph input, got {len(inputs)}")
    graph_input, graph_output = inputs[0], model.graph.output[0]
    if graph_input.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        dtype = onnx.TensorProto.DataType.Name(graph_input.type.tensor_type.elem_type)
        raise InputError(f"{source}: input {graph_input.name!r} must be FLOAT, got {dtype}")
    input_dims = _dims(graph_input)
    output_dims = _dims(graph_output)
    if len(input_dims) < 2 or any(d is None for d in input_dims[1:]):
        raise InputError(f"{source}: input {graph_input.name!r} needs a fixed per-sample shape, got {input_dims}")
    if len(output_dims) != 2 or output_dims[1] is None:
        raise InputError(f"{source}: output {graph_output.name!r} must be [batch, classes], got {output_dims}")
    return ModelSpec(
        input_name=graph_input.name,
        batch_dim=input_dims[0],
        sample_shape=tuple(int(d) for d in input_dims[1:]),  # type: ignore[arg-type]
        output_name=graph_output.name,
        num_classes=int(output_dims[1]),
    )


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """This project's metadata_props (prefix stripped, JSON values decoded)."""
    return {
        prop.key[len(METADATA_PREFIX) :]: json.loads(prop.value)
        for prop in model.metadata_props
        if prop.key.startswith(METADATA_PREFIX)
    }


def save_model(model: onnx.ModelProto, path: Path, metadata: dict[str, Any]) -> None:
    """Attach metadata, check the model, and write it atomically."""
    kept = [prop for prop in model.metadata_props if not prop.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=METADATA_PREFIX + key, value=json.dumps(value, sort_keys=True))
    onnx.checker.check_model(model)
    write_bytes_atomic(Path(path), model.SerializeToString(deterministic=True))


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
