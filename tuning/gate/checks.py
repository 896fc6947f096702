"""The quality gate: thresholds from ``gates:`` checked against a report's numbers.

Pure functions over the parsed report (``report.json``, schema_version 2) so the CLI,
the tests and CI all judge the same numbers the same way. File problems become one
:class:`~tuning.errors.InputError` line naming the file and the JSON path.
Format of the report, the baseline and the checks: docs/gate.md.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuning.config.enums import Runtime
from tuning.config.schema import GatesSection
from tuning.errors import InputError
from tuning.files.inputs import read_bounded
from tuning.gate import speed

REPORT_SCHEMA_VERSION = 2
BASELINE_SCHEMA_VERSION = 2

# Converting accuracy fractions to percent leaves float noise (1 - 0.985 is 0.01500...013):
# a number that equals its threshold in every printed digit must pass.
_SLACK = 1e-9

# report.json of this project is a few hundred kB; a larger file is not one.
MAX_JSON_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    """One gate verdict. ``measured`` is None when the report lacks the number."""

    name: str
    measured: float | None
    threshold: float
    comparison: str  # what passing requires: "<=" or ">="
    passed: bool
    message: str
    skipped: bool = False
    inconclusive: bool = False  # a speed check whose interval straddles its threshold (tuning/gate/speed.py)

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        if self.inconclusive:
            return "INCONCLUSIVE"
        return "PASS" if self.passed else "FAIL"


class _Invalid(Exception):
    """A problem inside a JSON file; the loader prefixes the file name."""


# --- reading the report --------------------------------------------------------------------


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate the keys of ``report.json`` that the gate reads."""
    return _load_validated(Path(path), "report", _validate_report)


def load_baseline(path: Path) -> dict[str, Any]:
    """Read a baseline written by ``gate --write-baseline`` (format: docs/gate.md)."""
    return _load_validated(Path(path), "baseline", _validate_baseline)


def _load_validated(path: Path, what: str, validate: Callable[[Any], None]) -> dict[str, Any]:
    data = _read_json(path, what)
    try:
        validate(data)
    except _Invalid as exc:
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


def _require_version(data: Any, what: str, supported: int) -> None:
    _require_object(data, "$")
    version = _require(data, "schema_version", "$")
    if version != supported:
        raise _Invalid(
            f"{what} schema_version {version!r} is not supported (this gate reads {supported}); write it again with "
            f"this version's {'report' if what == 'report' else 'gate --write-baseline'} (docs/report-schema.md)"
        )


def _validate_report(data: Any) -> None:
    _require_version(data, "report", REPORT_SCHEMA_VERSION)
    models = _require(data, "models", "$")
    if not isinstance(models, list) or not models:
        raise _Invalid(f"$.models: expected a non-empty list of models, got {_describe(models)}")
    for role in ("float", "int8"):
        index, model = _model_index(models, role)
        where = f"$.models[{index}]"
        _require_string(model, "name", where)
        _require_string(model, "path", where)
        accuracy = _require_object(_require(model, "accuracy", where), f"{where}.accuracy")
        _require_string(accuracy, "pixel_scale", f"{where}.accuracy")
        _require_fraction(accuracy, "top1_accuracy", f"{where}.accuracy")
        other = model.get("accuracy_other_scale")
        if other is not None:
            _require_object(other, f"{where}.accuracy_other_scale")
            _require_string(other, "pixel_scale", f"{where}.accuracy_other_scale")
            _require_fraction(other, "top1_accuracy", f"{where}.accuracy_other_scale")
        runtimes = _require_object(model.get("runtimes") or {}, f"{where}.runtimes")
        for runtime, on in runtimes.items():
            accuracy = _require_object(on, f"{where}.runtimes.{runtime}").get("accuracy")
            if accuracy is not None:
                _require_object(accuracy, f"{where}.runtimes.{runtime}.accuracy")
                _require_fraction(accuracy, "top1_accuracy", f"{where}.runtimes.{runtime}.accuracy")
    by_runtime = _require_object(_require(data, "ratios_vs_float", "$"), "$.ratios_vs_float")
    # Ratios are keyed by runtime, then model name. Performance is optional: a missing or null entry means
    # "not measured".
    name = _model_index(models, "int8")[1]["name"]
    for runtime, ratios in by_runtime.items():
        _validate_ratios(_require_object(ratios, f"$.ratios_vs_float.{runtime}").get(name), f"$.ratios_vs_float.{runtime}.{name}")


def _validate_ratios(int8: Any, where: str) -> None:
    if int8 is None:
        return
    _require_object(int8, where)
    _optional_ratio(int8.get("latency_p50"), f"{where}.latency_p50")
    throughput = int8.get("throughput")
    if throughput is None:
        return
    _require_object(throughput, f"{where}.throughput")
    for batch, ratio in throughput.items():
        if not (batch.isascii() and batch.isdigit()) or int(batch) < 1:  # isdigit() alone accepts "²"
            raise _Invalid(f"{where}.throughput: expected batch sizes (positive integers) as keys, got {batch!r}")
        _optional_ratio(ratio, f"{where}.throughput.{batch}")


def _validate_baseline(data: Any) -> None:
    _require_version(data, "baseline", BASELINE_SCHEMA_VERSION)
    _require_string(data, "runtime", "$")
    precision = _require(data, "inference_precision", "$")
    if precision is not None and not isinstance(precision, str):
        raise _Invalid(f"$.inference_precision: expected a string or null, got {_describe(precision)}")
    _require_fraction(data, "int8_top1_accuracy", "$")
    _optional_ratio(_require(data, "latency_p50_ratio", "$"), "$.latency_p50_ratio")
    throughput = _require(data, "throughput_ratio", "$")
    _optional_ratio(throughput, "$.throughput_ratio")
    if throughput is not None:
        batch = _require(data, "throughput_batch_size", "$")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise _Invalid(f"$.throughput_batch_size: expected a positive integer, got {_describe(batch)}")


def _model_index(models: list[Any], role: str) -> tuple[int, dict[str, Any]]:
    found = []
    for index, model in enumerate(models):
        _require_object(model, f"$.models[{index}]")
        if _require(model, "role", f"$.models[{index}]") == role:
            found.append((index, model))
    if len(found) != 1:
        raise _Invalid(f"$.models: expected exactly one model with role {role!r}, found {len(found)}")
    return found[0]


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise _Invalid(f"missing key {where}.{key}")
    return obj[key]


def _require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{where}: expected a JSON object, got {_describe(value)}")
    return value


def _require_string(obj: dict[str, Any], key: str, where: str) -> None:
    value = _require(obj, key, where)
    if not isinstance(value, str):
        raise _Invalid(f"{where}.{key}: expected a string, got {_describe(value)}")


def _require_fraction(obj: dict[str, Any], key: str, where: str) -> None:
    value = _require(obj, key, where)
    if not _is_number(value) or not 0 <= value <= 1:
        raise _Invalid(f"{where}.{key}: expected a number between 0 and 1, got {_describe(value)}")


def _optional_ratio(value: Any, where: str) -> None:
    if value is not None and (not _is_number(value) or value <= 0):
        raise _Invalid(f"{where}: expected a positive number or null, got {_describe(value)}")


def _is_number(value: Any) -> bool:
    # bool is an int in Python but never a measurement; NaN would make every comparison false.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value: Any) -> str:
    # Values in the file's own JSON spelling, cut short so the error stays one readable line.
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


# --- the numbers the gate reads -----------------------------------------------------------


def _model(report: dict[str, Any], role: str) -> dict[str, Any]:
    return next(model for model in report["models"] if model["role"] == role)


def _top1(model: dict[str, Any], runtime: Runtime) -> float | None:
    """The model's top-1 accuracy on ``runtime``; None when the report has none (not measured, cannot load)."""
    if runtime is Runtime.ONNXRUNTIME:
        return model["accuracy"]["top1_accuracy"]
    accuracy = ((model.get("runtimes") or {}).get(runtime.value) or {}).get("accuracy")
    return None if accuracy is None else accuracy["top1_accuracy"]


def _int8_ratios(report: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """The int8 model's ratios against the float model on ``runtime`` (both ran there, interleaved)."""
    return (report["ratios_vs_float"].get(runtime.value) or {}).get(_model(report, "int8")["name"]) or {}


def _latency_ratio(report: dict[str, Any], runtime: Runtime) -> float | None:
    return _int8_ratios(report, runtime).get("latency_p50")


def _throughput_ratios(report: dict[str, Any], runtime: Runtime) -> dict[int, float]:
    """Measured int8/float throughput ratios on ``runtime`` by batch size (unmeasured sizes left out)."""
    table = _int8_ratios(report, runtime).get("throughput") or {}
    return {int(batch): ratio for batch, ratio in table.items() if ratio is not None}


def _precision(report: dict[str, Any], runtime: Runtime) -> str | None:
    """The inference precision OpenVINO ran the int8 model in on ``runtime`` (None on onnxruntime, or unknown)."""
    on = (_model(report, "int8").get("runtimes") or {}).get(runtime.value) or {}
    precision = (on.get("conditions") or {}).get("inference_precision")
    return precision if isinstance(precision, str) else None


def _where(report: dict[str, Any], runtime: Runtime) -> str:
    """``onnxruntime``, or ``openvino, bf16``: the runtime and precision every number of the gate is read on."""
    precision = _precision(report, runtime)
    return runtime.value if precision is None else f"{runtime.value}, {precision}"


def baseline_json(report: dict[str, Any], runtime: Runtime) -> str:
    """The report's numbers on ``runtime`` in the baseline format, for ``gate --write-baseline``."""
    throughput = _throughput_ratios(report, runtime)
    batch = max(throughput, default=None)
    baseline = {
        "schema_version": BASELINE_SCHEMA_VERSION,
        "runtime": runtime.value,
        "inference_precision": _precision(report, runtime),
        "int8_top1_accuracy": _top1(_model(report, "int8"), runtime),
        "latency_p50_ratio": _latency_ratio(report, runtime),
        "throughput_ratio": throughput[batch] if batch is not None else None,
        "throughput_batch_size": batch,
    }
    return json.dumps(baseline, indent=2) + "\n"


# --- the checks -----------------------------------------------------------------------------


def evaluate_gates(report: dict[str, Any], gates: GatesSection, baseline: dict[str, Any] | None) -> list[Check]:
    """Every configured check in a fixed order; ``report`` and ``baseline`` as the loaders return them.

    Accuracy and speed are read on ``gates.runtime``: a model that runtime cannot run fails the gate.
    """
    runtime = gates.runtime
    float_model, int8_model = _model(report, "float"), _model(report, "int8")
    for model in (float_model, int8_model):
        if _top1(model, runtime) is None:
            on = (model.get("runtimes") or {}).get(runtime.value) or {}
            why = on.get("error") or f"{runtime.value} was not measured"
            name = f"{model['role']} model on {runtime.value}"
            return [Check(name, None, 1.0, ">=", False, f"{name}: no accuracy in the report ({why})")]
    float_pct, int8_pct = 100 * _top1(float_model, runtime), 100 * _top1(int8_model, runtime)
    where = _where(report, runtime)
    # onnxruntime is the default and goes unsaid in the accuracy lines; another runtime is named on every line.
    label = None if runtime is Runtime.ONNXRUNTIME else where
    checks = []
    # The absolute error depends on the dataset, so it is off unless configured; the drop is relative to float.
    if gates.max_int8_top1_error_pct is not None:
        checks.append(_error_check(int8_model, int8_pct, gates, label))
    if gates.max_accuracy_drop_pp is not None:
        checks.append(_drop_check(int8_model, float_pct, int8_pct, gates, label))

    latency, throughput = _latency_ratio(report, runtime), _throughput_ratios(report, runtime)
    if gates.max_latency_ratio is not None:
        name = "latency ratio int8/float"
        if latency is None:
            checks.append(_missing_performance(name, gates.max_latency_ratio, "<=", "max_latency_ratio", gates))
        else:
            document = _int8_ratios(report, runtime).get("latency_p50_rounds")
            checks.append(_speed_check(name, latency, document, gates.max_latency_ratio, "<=", gates, f"(p50 on {where})"))
    if gates.min_throughput_ratio is not None:
        name = "throughput ratio int8/float"
        if not throughput:
            checks.append(_missing_performance(name, gates.min_throughput_ratio, ">=", "min_throughput_ratio", gates))
        else:
            # The largest batch shows what int8 kernels gain once per-call overhead no longer dominates.
            batch = max(throughput)
            document = (_int8_ratios(report, runtime).get("throughput_rounds") or {}).get(str(batch))
            note = f"(batch {batch} on {where})"
            checks.append(_speed_check(name, throughput[batch], document, gates.min_throughput_ratio, ">=", gates, note))
    if baseline is not None:
        if baseline["runtime"] != runtime.value:
            raise InputError(
                f"{gates.baseline}: the baseline holds ratios on {baseline['runtime']!r}, but gates.runtime is "
                f"{runtime.value!r}; write a baseline for it with gate --write-baseline"
            )
        if baseline["inference_precision"] != _precision(report, runtime):
            # bf16 and f32 OpenVINO differ as much as two runtimes do (a CPU without bf16 runs f32 by default).
            raise InputError(
                f"{gates.baseline}: the baseline was measured at inference precision "
                f"{baseline['inference_precision']} on {runtime.value}, this report at {_precision(report, runtime)}; "
                "ratios at different precisions are not comparable: write a baseline on this machine with "
                "gate --write-baseline, or gate openvino-f32 / openvino-bf16, whose precision is fixed"
            )
        checks.extend(_baseline_checks(int8_pct, latency, throughput, gates, baseline, label))
    return checks


def _on(label: str | None) -> str:
    return f"(on {label})" if label else ""


def _error_check(int8_model: dict[str, Any], int8_pct: float, gates: GatesSection, label: str | None) -> Check:
    accuracy = int8_model["accuracy"]
    where = f"(model {int8_model['name']}: {int8_model['path']} evaluated with pixel_scale {accuracy['pixel_scale']})"
    threshold = gates.max_int8_top1_error_pct
    check = _compare("int8 top-1 error", 100 - int8_pct, threshold, "<=", " %", "allowed", _on(label))
    return check if check.passed else _with_note(check, where)


def _drop_check(
    int8_model: dict[str, Any], float_pct: float, int8_pct: float, gates: GatesSection, label: str | None
) -> Check:
    drop = float_pct - int8_pct
    check = _compare("accuracy drop vs float", drop, gates.max_accuracy_drop_pp, "<=", " pp", "allowed", _on(label))
    if check.passed:
        return check
    note = f"(float {float_pct:.2f} %, int8 {int8_pct:.2f} %)"
    other = int8_model.get("accuracy_other_scale")
    # Recovering most of the loss under the other pixel scale points at preprocessing, not quantization:
    # the zoo int8 model, calibrated on raw 0..255 pixels, scores ~54 % on [0, 1] pixels and ~99 % on raw ones.
    # Both scales' accuracies compared here are onnxruntime's, whatever runtime the gate reads.
    configured_pct = 100 * int8_model["accuracy"]["top1_accuracy"]
    if other is not None and 100 * other["top1_accuracy"] - configured_pct > drop / 2:
        note += (
            f"; accuracy at pixel_scale {other['pixel_scale']} is {100 * other['top1_accuracy']:.2f} %: "
            "the model was likely calibrated for the other preprocessing"
        )
    return _with_note(check, note)


def _baseline_checks(
    int8_pct: float,
    latency: float | None,
    throughput: dict[int, float],
    gates: GatesSection,
    baseline: dict[str, Any],
    label: str | None,
) -> list[Check]:
    on = f"on {label}; " if label else ""
    checks = []
    accepted_pct = 100 * baseline["int8_top1_accuracy"]
    tolerance_pp = gates.baseline_accuracy_tolerance_pp
    checks.append(
        _compare(
            "int8 accuracy vs baseline",
            int8_pct,
            accepted_pct - tolerance_pp,
            ">=",
            " %",
            "required",
            f"({on}baseline {accepted_pct:.2f} % minus {tolerance_pp:g} pp tolerance)",
        )
    )
    slack = gates.baseline_performance_tolerance_pct / 100
    tolerance = f"{gates.baseline_performance_tolerance_pct:g} % tolerance"
    accepted_latency = baseline["latency_p50_ratio"]
    if accepted_latency is not None:
        name = "latency ratio vs baseline"
        if latency is None:
            checks.append(_skipped(name, accepted_latency * (1 + slack), "<=", "the report has no p50 latency ratio"))
        else:
            checks.append(
                _compare(
                    name,
                    latency,
                    accepted_latency * (1 + slack),
                    "<=",
                    "x",
                    "allowed",
                    f"(p50; {on}baseline {accepted_latency:.2f}x plus {tolerance})",
                )
            )
    accepted_throughput = baseline["throughput_ratio"]
    if accepted_throughput is not None:
        name = "throughput ratio vs baseline"
        # Ratios at different batch sizes are not comparable: compare at the baseline's batch size only.
        batch = baseline["throughput_batch_size"]
        if batch not in throughput:
            reason = f"the report has no throughput ratio at batch {batch}"
            checks.append(_skipped(name, accepted_throughput * (1 - slack), ">=", reason))
        else:
            checks.append(
                _compare(
                    name,
                    throughput[batch],
                    accepted_throughput * (1 - slack),
                    ">=",
                    "x",
                    "required",
                    f"(batch {batch}; {on}baseline {accepted_throughput:.2f}x minus {tolerance})",
                )
            )
    return checks


def _compare(
    name: str, measured: float, threshold: float, comparison: str, unit: str, verb: str, note: str = ""
) -> Check:
    if comparison == "<=":
        passed, broken = measured <= threshold + _SLACK, ">"
    else:
        passed, broken = measured >= threshold - _SLACK, "<"
    digits = _digits(measured, threshold)
    shown = f"{measured:.{digits}f}{unit} {comparison if passed else broken} {threshold:.{digits}f}{unit} {verb}"
    message = f"{name}: {shown}" + (f" {note}" if note else "")
    return Check(name, measured, threshold, comparison, passed, message)


def _speed_check(
    name: str, value: float, interval: Any, threshold: float, comparison: str, gates: GatesSection, note: str
) -> Check:
    """The interval's three states (tuning/gate/speed.py); a report that wrote no interval is judged on its point."""
    if interval is None:
        verb = "allowed" if comparison == "<=" else "required"
        return _compare(name, value, threshold, comparison, "x", verb, note)
    judged = speed.judge(name, speed.read_interval(value, interval, name), threshold, comparison,
                         gates.if_speed_inconclusive, note)  # fmt: skip
    inconclusive = judged.state is speed.SpeedState.INCONCLUSIVE
    return Check(name, value, threshold, comparison, judged.passed, judged.message, inconclusive=inconclusive)


def _digits(measured: float, threshold: float) -> int:
    """Enough decimals that a failing value never prints the same as its threshold."""
    for digits in range(2, 7):
        if abs(measured - threshold) <= _SLACK or f"{measured:.{digits}f}" != f"{threshold:.{digits}f}":
            return digits
    return 6


def _missing_performance(name: str, threshold: float, comparison: str, key: str, gates: GatesSection) -> Check:
    runtime = gates.runtime.value
    if not gates.fail_on_missing_performance:
        reason = f"no performance numbers on {runtime} in the report (gates.fail_on_missing_performance is false)"
        return _skipped(name, threshold, comparison, reason)
    message = (
        f"{name}: no performance numbers on {runtime} in the report to compare with gates.{key} {threshold:g} "
        f"(run the report with benchmarks and {runtime} in benchmark.runtimes, or set "
        "gates.fail_on_missing_performance: false)"
    )
    return Check(name, None, threshold, comparison, False, message)


def _skipped(name: str, threshold: float, comparison: str, reason: str) -> Check:
    return Check(name, None, threshold, comparison, True, f"{name}: skipped, {reason}", skipped=True)


def _with_note(check: Check, note: str) -> Check:
    return Check(
        check.name, check.measured, check.threshold, check.comparison, check.passed, f"{check.message} {note}"
    )


# --- JUnit XML --------------------------------------------------------------------------------


def junit_xml(checks: list[Check]) -> str:
    """One testsuite "quality-gate" with one testcase per check, so CI lists every check as a test."""
    failures = sum(1 for check in checks if not check.passed)
    skipped = sum(1 for check in checks if check.skipped)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="quality-gate",
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
    )
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname="quality-gate", name=check.name)
        if check.skipped:
            ET.SubElement(case, "skipped", message=check.message)
        elif not check.passed:
            failure = ET.SubElement(case, "failure", message=check.message, type="GateFailed")
            failure.text = check.message
        else:
            # Passing checks keep their numbers visible in the CI's test view.
            ET.SubElement(case, "system-out").text = check.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def github_annotations(checks: list[Check]) -> list[str]:
    """GitHub Actions workflow commands: ``::error`` per failed check, ``::warning`` per skipped one.

    The runner turns them into annotations on the run's summary page; passing checks need none.
    """
    lines = []
    for check in checks:
        if check.passed and not check.skipped:
            continue
        level = "warning" if check.skipped else "error"
        lines.append(f"::{level} title={_escape_property(f'gate: {check.name}')}::{_escape_data(check.message)}")
    return lines


def _escape_data(text: str) -> str:
    # The runner's escaping for a command's message: % first, so the others are not escaped twice.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
