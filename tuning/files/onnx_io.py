"""Loading, describing and saving ONNX classifiers.

Everything the pipeline knows about a model (input name, per-sample shape, batch
dimension, number of classes) comes from the graph itself, never from constants.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
from google.protobuf.message import DecodeError

from tuning.errors import ConfigError, InputError, TuningError
from tuning.files.atomic import write_bytes_atomic
from tuning.files.inputs import read_bounded, require_regular_file
from tuning.files.limits import MODEL_MAX_BYTES

METADATA_PREFIX = "tuning."
# What a malformed file makes onnx raise while parsing and checking it.
_PARSE_ERRORS = (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError, OSError)


@dataclass(frozen=True)
class ModelSpec:
    """The model's single input and first output, as the graph declares them."""

    input_name: str
    batch_dim: int | None  # None when the batch dimension is symbolic
    sample_shape: tuple[int, ...]
    output_name: str
    num_classes: int

    def batch_bytes(self, batch_size: int) -> int:
        """Bytes of the float32 input and output tensors of one batch."""
        return 4 * batch_size * (math.prod(self.sample_shape) + self.num_classes)

    def require_batch_fits(self, batch_size: int, limit: int, key: str, source: Path | str) -> None:
        """Refuse a batch size whose tensors would exceed ``limit`` bytes, before anything is allocated."""
        needed = self.batch_bytes(batch_size)
        if needed > limit:
            raise ConfigError(
                f"{key}: batch {batch_size} of {source} needs {needed} bytes for its input and output tensors, "
                f"more than benchmark.max_batch_bytes ({limit}); use a smaller batch or raise the limit"
            )


def load_model(path: Path, max_bytes: int | None = None) -> onnx.ModelProto:
    """Parse and check an ONNX file; every failure is one line naming the file.

    ``max_bytes`` (default: ``model.max_bytes``'s default) bounds the file plus its external
    data, checked before anything is read, so a huge file cannot exhaust memory.
    """
    path = Path(path)
    limit = MODEL_MAX_BYTES if max_bytes is None else max_bytes
    size = require_regular_file(path, "model file", InputError).st_size
    if size > limit:
        raise InputError(f"{path}: model is {size} bytes, more than model.max_bytes ({limit}); raise the limit")
    # Read through a descriptor checked to be a regular file, at most ``limit`` bytes (the file may change).
    raw = read_bounded(path, limit, "model file", InputError, "model.max_bytes")
    try:
        # External data is attached only after its locations are checked: a model must not read files elsewhere.
        model = onnx.load_model_from_string(raw)
        external_bytes = _check_external_data(model, path)
        if size + external_bytes > limit:
            raise InputError(
                f"{path}: model with its external data is {size + external_bytes} bytes, "
                f"more than model.max_bytes ({limit}); raise the limit"
            )
        if external_bytes or _uses_external_data(model):
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except InputError:
        raise
    except _PARSE_ERRORS as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{path}: not a valid ONNX model ({first_line})") from None
    return model


def describe(model: onnx.ModelProto, source: Path | str = "<model>") -> ModelSpec:
    """Read the input/output spec of a single-input float32 classifier."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise InputError(f"{source}: expected one graph input, got {len(inputs)}")
    if not model.graph.output:
        raise InputError(f"{source}: the graph declares no output; expected one [batch, classes] output")
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


def plain_metadata(values: Mapping[str, Any], prefix: str = METADATA_PREFIX) -> dict[str, str]:
    """``values`` as metadata_props: plain strings under flat, dotted keys (README, "Model metadata").

    A nested mapping becomes one key per leaf (``tuning.preprocessing.mean``), a list comma-separated
    text, a number decimal text (``0.9891``, ``1``), a string itself. Keys of a nested mapping are kept
    as they are, so a reader strips the known prefix (``tuning.session_options.config_entries.``)
    to get, e.g., an onnxruntime session config entry whose own key holds dots.
    """
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(plain_metadata(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _plain_text(value)
    return flat


def _plain_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return np.format_float_positional(value, trim="-")  # shortest decimal that reads back exactly
    if isinstance(value, (list, tuple)):
        return ",".join(_plain_text(item) for item in value)
    return str(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """This project's metadata_props as written (plain strings), the ``tuning.`` prefix stripped."""
    return {
        prop.key[len(METADATA_PREFIX) :]: prop.value
        for prop in model.metadata_props
        if prop.key.startswith(METADATA_PREFIX)
    }


def declared_preprocessing(model: onnx.ModelProto) -> dict[str, Any] | None:
    """The preprocessing the model's metadata records, as ``PipelineConfig.preprocessing`` spells it; None if none.

    A value that is not a number where one belongs is kept as text, so it compares unequal and shows.
    """
    metadata = read_metadata(model)
    if "preprocessing.pixel_scale" not in metadata:
        return None
    declared: dict[str, Any] = {"pixel_scale": metadata["preprocessing.pixel_scale"]}
    for key in ("mean", "std"):
        text = metadata.get(f"preprocessing.{key}")
        try:
            declared[key] = float(text) if text is not None else None
        except ValueError:
            declared[key] = text
    return declared


# Fewer quantization steps than this over the input's range means the input was calibrated for another range
# (the zoo's int8 mnist-12 quantizes its input in steps of 1.0: one step over [0, 1] pixels).
_MIN_INPUT_STEPS = 16


def preprocessing_warning(model: onnx.ModelProto, path: Path, configured: dict[str, Any], images: np.ndarray) -> str | None:
    """One ``warning:`` line when ``model`` was made for other input than ``images`` (preprocessed as
    ``configured``): its recorded preprocessing differs, or, recording none, it quantizes its input so
    coarsely that the images' whole range spans fewer than :data:`_MIN_INPUT_STEPS` steps."""
    declared = declared_preprocessing(model)
    if declared is not None:
        if declared == configured:
            return None
        return (
            f"warning: {path} declares preprocessing {json.dumps(declared, sort_keys=True)}; "
            f"this run uses {json.dumps(configured, sort_keys=True)}"
        )
    step = _input_quantization_step(model)
    span = float(images.max() - images.min()) if images.size else 0.0
    if step is None or span / step >= _MIN_INPUT_STEPS:
        return None
    return (
        f"warning: {path} records no preprocessing, and it quantizes its input in steps of {step:g}: "
        f"{span / step:.0f} step(s) over this run's input range ({json.dumps(configured, sort_keys=True)}); "
        "it was likely calibrated for other preprocessing (report compares both pixel scales)"
    )


def _input_quantization_step(model: onnx.ModelProto) -> float | None:
    """The constant scale of a QuantizeLinear reading the graph input directly, if there is one."""
    initializers = {init.name: init for init in model.graph.initializer}
    inputs = {value.name for value in model.graph.input} - set(initializers)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in inputs and node.input[1] in initializers:
            scale = onnx.numpy_helper.to_array(initializers[node.input[1]])
            if scale.size == 1 and float(scale) > 0:
                return float(scale)
    return None


def save_model(model: onnx.ModelProto, path: Path, metadata: Mapping[str, Any]) -> bytes:
    """Attach ``metadata`` (as :func:`plain_metadata`), check the model, write it atomically; return its bytes."""
    kept = [prop for prop in model.metadata_props if not prop.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in sorted(plain_metadata(metadata).items()):
        model.metadata_props.add(key=key, value=value)
    try:
        onnx.checker.check_model(model)
        payload = model.SerializeToString(deterministic=True)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise TuningError(f"{path}: the int8 model INC made is not valid ONNX ({str(exc).splitlines()[0]})") from None
    write_bytes_atomic(Path(path), payload)
    return payload


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _all_tensors(subgraph)


def _uses_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(model.graph))


def _check_external_data(model: onnx.ModelProto, path: Path) -> int:
    """Refuse external data outside the model's folder; return the external files' total size."""
    folder = path.parent.resolve()
    locations = set()
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise InputError(
                f"{path}: tensor {tensor.name!r} has external data at {location!r}, outside the model's folder; "
                "refusing to read it"
            )
        require_regular_file(target, f"external data file {location!r} of tensor {tensor.name!r}", InputError)
        locations.add(target)
    return sum(target.stat().st_size for target in locations)


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
