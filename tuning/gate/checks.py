"""The quality gate: thresholds from ``gates:`` checked against a report's numbers.

Pure functions over the parsed report (``report.json``, schema_version 2, read by
:mod:`tuning.gate.report_file`) so the CLI, the tests and CI all judge the same numbers the same way.
Format of the report, the baseline and the checks: docs/gate.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuning.config.enums import Runtime
from tuning.config.schema import GatesSection
from tuning.errors import InputError
from tuning.gate import speed
from tuning.gate.report_file import (
    inference_precision,
    int8_ratios,
    latency_ratio,
    model_of,
    throughput_ratios,
    top1,
    where_measured,
)

# Converting accuracy fractions to percent leaves float noise (1 - 0.985 is 0.01500...013):
# a number that equals its threshold in every printed digit must pass.
_SLACK = 1e-9


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


def evaluate_gates(report: dict[str, Any], gates: GatesSection, baseline: dict[str, Any] | None) -> list[Check]:
    """Every configured check in a fixed order; ``report`` and ``baseline`` as the loaders return them.

    Accuracy and speed are read on ``gates.runtime``: a model that runtime cannot run fails the gate.
    """
    runtime = gates.runtime
    float_model, int8_model = model_of(report, "float"), model_of(report, "int8")
    for model in (float_model, int8_model):
        if top1(model, runtime) is None:
            on = (model.get("runtimes") or {}).get(runtime.value) or {}
            why = on.get("error") or f"{runtime.value} was not measured"
            name = f"{model['role']} model on {runtime.value}"
            return [Check(name, None, 1.0, ">=", False, f"{name}: no accuracy in the report ({why})")]
    float_pct, int8_pct = 100 * top1(float_model, runtime), 100 * top1(int8_model, runtime)
    where = where_measured(report, runtime)
    # onnxruntime is the default and goes unsaid in the accuracy lines; another runtime is named on every line.
    label = None if runtime is Runtime.ONNXRUNTIME else where
    checks = []
    # The absolute error depends on the dataset, so it is off unless configured; the drop is relative to float.
    if gates.max_int8_top1_error_pct is not None:
        checks.append(_error_check(int8_model, int8_pct, gates, label))
    if gates.max_accuracy_drop_pp is not None:
        checks.append(_drop_check(int8_model, float_pct, int8_pct, gates, label))

    latency, throughput = latency_ratio(report, runtime), throughput_ratios(report, runtime)
    if gates.max_latency_ratio is not None:
        name = "latency ratio int8/float"
        if latency is None:
            checks.append(_missing_performance(name, gates.max_latency_ratio, "<=", "max_latency_ratio", gates))
        else:
            document = int8_ratios(report, runtime).get("latency_p50_rounds")
            note = f"(p50 on {where})"
            checks.append(_speed_check(name, latency, document, gates.max_latency_ratio, "<=", gates, note))
    if gates.min_throughput_ratio is not None:
        name = "throughput ratio int8/float"
        if not throughput:
            checks.append(_missing_performance(name, gates.min_throughput_ratio, ">=", "min_throughput_ratio", gates))
        else:
            # The largest batch shows what int8 kernels gain once per-call overhead no longer dominates.
            batch = max(throughput)
            document = (int8_ratios(report, runtime).get("throughput_rounds") or {}).get(str(batch))
            note = f"(batch {batch} on {where})"
            minimum = gates.min_throughput_ratio
            checks.append(_speed_check(name, throughput[batch], document, minimum, ">=", gates, note))
    if baseline is not None:
        if baseline["runtime"] != runtime.value:
            raise InputError(
                f"{gates.baseline}: the baseline holds ratios on {baseline['runtime']!r}, but gates.runtime is "
                f"{runtime.value!r}; write a baseline for it with gate --write-baseline"
            )
        if baseline["inference_precision"] != inference_precision(report, runtime):
            # bf16 and f32 OpenVINO differ as much as two runtimes do (a CPU without bf16 runs f32 by default).
            raise InputError(
                f"{gates.baseline}: the baseline was measured at inference precision "
                f"{baseline['inference_precision']} on {runtime.value}, "
                f"this report at {inference_precision(report, runtime)}; "
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
