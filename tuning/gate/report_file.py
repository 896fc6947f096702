"""Reading a report.json for the gate: bounded, validated, and the numbers the gate reads from it.

File problems become one :class:`~tuning.errors.InputError` line naming the file and the JSON path
(format: docs/report-schema.md). The small validators here are shared with the baseline's reader.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuning.config.enums import Runtime
from tuning.errors import InputError
from tuning.files.inputs import read_bounded

REPORT_SCHEMA_VERSION = 2

# report.json of this project is a few hundred kB; a larger file is not one.
MAX_JSON_BYTES = 64 * 1024 * 1024


class Invalid(Exception):
    """A problem inside a JSON file; the loader prefixes the file name."""


# --- reading the report --------------------------------------------------------------------


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate the keys of ``report.json`` that the gate reads."""
    return load_validated(Path(path), "report", _validate_report)


def load_validated(path: Path, what: str, validate: Callable[[Any], None]) -> dict[str, Any]:
    data = _read_json(path, what)
    try:
        validate(data)
    except Invalid as exc:
        raise InputError(f"{path}: {exc}") from None
    return data


def _read_json(path: Path, what: str) -> Any:
    raw = read_bounded(path, MAX_JSON_BYTES, f"{what} file", InputError, "the limit for a report")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read {what} (UnicodeDecodeError: {exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit; nesting past its stack
        raise InputError(f"{path}: not a usable {what} ({exc.__class__.__name__}: {str(exc)[:80]})") from None


def require_version(data: Any, what: str, supported: int) -> None:
    require_object(data, "$")
    version = require(data, "schema_version", "$")
    if version != supported:
        raise Invalid(
            f"{what} schema_version {version!r} is not supported (this gate reads {supported}); write it again with "
            f"this version's {'report' if what == 'report' else 'gate --write-baseline'} (docs/report-schema.md)"
        )


def _validate_report(data: Any) -> None:
    require_version(data, "report", REPORT_SCHEMA_VERSION)
    models = require(data, "models", "$")
    if not isinstance(models, list) or not models:
        raise Invalid(f"$.models: expected a non-empty list of models, got {describe(models)}")
    for role in ("float", "int8"):
        index, model = _model_index(models, role)
        where = f"$.models[{index}]"
        require_string(model, "name", where)
        require_string(model, "path", where)
        accuracy = require_object(require(model, "accuracy", where), f"{where}.accuracy")
        require_string(accuracy, "pixel_scale", f"{where}.accuracy")
        require_fraction(accuracy, "top1_accuracy", f"{where}.accuracy")
        other = model.get("accuracy_other_scale")
        if other is not None:
            require_object(other, f"{where}.accuracy_other_scale")
            require_string(other, "pixel_scale", f"{where}.accuracy_other_scale")
            require_fraction(other, "top1_accuracy", f"{where}.accuracy_other_scale")
        runtimes = require_object(model.get("runtimes") or {}, f"{where}.runtimes")
        for runtime, on in runtimes.items():
            accuracy = require_object(on, f"{where}.runtimes.{runtime}").get("accuracy")
            if accuracy is not None:
                require_object(accuracy, f"{where}.runtimes.{runtime}.accuracy")
                require_fraction(accuracy, "top1_accuracy", f"{where}.runtimes.{runtime}.accuracy")
    by_runtime = require_object(require(data, "ratios_vs_float", "$"), "$.ratios_vs_float")
    # Ratios are keyed by runtime, then model name. Performance is optional: a missing or null entry means
    # "not measured".
    name = _model_index(models, "int8")[1]["name"]
    for runtime, ratios in by_runtime.items():
        where = f"$.ratios_vs_float.{runtime}"
        _validate_ratios(require_object(ratios, where).get(name), f"{where}.{name}")


def _validate_ratios(int8: Any, where: str) -> None:
    if int8 is None:
        return
    require_object(int8, where)
    optional_ratio(int8.get("latency_p50"), f"{where}.latency_p50")
    throughput = int8.get("throughput")
    if throughput is None:
        return
    require_object(throughput, f"{where}.throughput")
    for batch, ratio in throughput.items():
        if not (batch.isascii() and batch.isdigit()) or int(batch) < 1:  # isdigit() alone accepts "²"
            raise Invalid(f"{where}.throughput: expected batch sizes (positive integers) as keys, got {batch!r}")
        optional_ratio(ratio, f"{where}.throughput.{batch}")


def _model_index(models: list[Any], role: str) -> tuple[int, dict[str, Any]]:
    found = []
    for index, model in enumerate(models):
        require_object(model, f"$.models[{index}]")
        if require(model, "role", f"$.models[{index}]") == role:
            found.append((index, model))
    if len(found) != 1:
        raise Invalid(f"$.models: expected exactly one model with role {role!r}, found {len(found)}")
    return found[0]


def require(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise Invalid(f"missing key {where}.{key}")
    return obj[key]


def require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where}: expected a JSON object, got {describe(value)}")
    return value


def require_string(obj: dict[str, Any], key: str, where: str) -> None:
    value = require(obj, key, where)
    if not isinstance(value, str):
        raise Invalid(f"{where}.{key}: expected a string, got {describe(value)}")


def require_fraction(obj: dict[str, Any], key: str, where: str) -> None:
    value = require(obj, key, where)
    if not _is_number(value) or not 0 <= value <= 1:
        raise Invalid(f"{where}.{key}: expected a number between 0 and 1, got {describe(value)}")


def optional_ratio(value: Any, where: str) -> None:
    if value is not None and (not _is_number(value) or value <= 0):
        raise Invalid(f"{where}: expected a positive number or null, got {describe(value)}")


def _is_number(value: Any) -> bool:
    # bool is an int in Python but never a measurement; NaN would make every comparison false.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def describe(value: Any) -> str:
    # Values in the file's own JSON spelling, cut short so the error stays one readable line.
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


# --- the numbers the gate reads -----------------------------------------------------------


def model_of(report: dict[str, Any], role: str) -> dict[str, Any]:
    return next(model for model in report["models"] if model["role"] == role)


def top1(model: dict[str, Any], runtime: Runtime) -> float | None:
    """The model's top-1 accuracy on ``runtime``; None when the report has none (not measured, cannot load)."""
    if runtime is Runtime.ONNXRUNTIME:
        return model["accuracy"]["top1_accuracy"]
    accuracy = ((model.get("runtimes") or {}).get(runtime.value) or {}).get("accuracy")
    return None if accuracy is None else accuracy["top1_accuracy"]


def int8_ratios(report: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """The int8 model's ratios against the float model on ``runtime`` (both ran there, interleaved)."""
    return (report["ratios_vs_float"].get(runtime.value) or {}).get(model_of(report, "int8")["name"]) or {}


def latency_ratio(report: dict[str, Any], runtime: Runtime) -> float | None:
    return int8_ratios(report, runtime).get("latency_p50")


def throughput_ratios(report: dict[str, Any], runtime: Runtime) -> dict[int, float]:
    """Measured int8/float throughput ratios on ``runtime`` by batch size (unmeasured sizes left out)."""
    table = int8_ratios(report, runtime).get("throughput") or {}
    return {int(batch): ratio for batch, ratio in table.items() if ratio is not None}


def inference_precision(report: dict[str, Any], runtime: Runtime) -> str | None:
    """The inference precision OpenVINO ran the int8 model in on ``runtime`` (None on onnxruntime, or unknown)."""
    on = (model_of(report, "int8").get("runtimes") or {}).get(runtime.value) or {}
    precision = (on.get("conditions") or {}).get("inference_precision")
    return precision if isinstance(precision, str) else None


def where_measured(report: dict[str, Any], runtime: Runtime) -> str:
    """``onnxruntime``, or ``openvino, bf16``: the runtime and precision every number of the gate is read on."""
    precision = inference_precision(report, runtime)
    return runtime.value if precision is None else f"{runtime.value}, {precision}"
