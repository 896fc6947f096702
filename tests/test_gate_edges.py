"""The gate at its edges: each threshold and each validated value just inside and just outside.

Accuracies are binary fractions (0.75, 0.5, 0.625...) where the edge has to be exact, so that the
percentages the gate computes equal the thresholds here with no float noise either way.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_gate import accepted, by_name, make_report, mnist_gates, write_json

from tuning.config.enums import Runtime
from tuning.errors import InputError
from tuning.gate.baseline import baseline_json, load_baseline
from tuning.gate.checks import Check, evaluate_gates
from tuning.gate.outputs import github_annotations, junit_xml
from tuning.gate.report_file import load_report

pytestmark = pytest.mark.fast


def report_error(tmp_path: Path, report: Any) -> str:
    with pytest.raises(InputError) as caught:
        load_report(write_json(tmp_path, report))
    return str(caught.value)


def baseline_error(tmp_path: Path, baseline: Any) -> str:
    with pytest.raises(InputError) as caught:
        load_baseline(write_json(tmp_path, baseline, "baseline.json"))
    return str(caught.value)


# --- the accuracy checks ---------------------------------------------------------------------------


def test_an_int8_model_better_than_float_has_a_negative_drop_and_passes():
    check = by_name(evaluate_gates(make_report(float_accuracy=0.75, int8_accuracy=0.875), mnist_gates(), None))
    drop = check["accuracy drop vs float"]
    assert drop.measured == -12.5 and drop.passed
    assert drop.message == "accuracy drop vs float: -12.50 pp <= 0.10 pp allowed"


@pytest.mark.parametrize(("threshold", "passed"), [(1.5625, True), (1.5, False)])
def test_int8_error_threshold_is_inclusive(threshold, passed):
    # int8 accuracy 98.4375 %: 1.5625 % error, exactly the first threshold.
    gates = mnist_gates(max_int8_top1_error_pct=threshold, max_accuracy_drop_pp=100)
    check = evaluate_gates(make_report(float_accuracy=1.0, int8_accuracy=0.984375), gates, None)[0]
    assert check.name == "int8 top-1 error" and check.measured == 1.5625
    assert check.passed is passed


@pytest.mark.parametrize(("other", "hinted"), [(0.625, False), (0.6328125, True), (0.5, False)])
def test_pixel_scale_hint_when_the_other_scale_recovers_more_than_half_the_drop(other, hinted):
    # float 75 %, int8 50 %: a 25 pp drop; the other scale recovers 12.5 pp (exactly half), 13.28125, or 0.
    report = make_report(float_accuracy=0.75, int8_accuracy=0.5, other_scale_accuracy=other)
    check = by_name(evaluate_gates(report, mnist_gates(), None))["accuracy drop vs float"]
    assert not check.passed
    assert check.message.startswith("accuracy drop vs float: 25.00 pp > 0.10 pp allowed (float 75.00 %, int8 50.00 %)")
    assert ("likely calibrated for the other preprocessing" in check.message) is hinted
    if hinted:
        assert f"accuracy at pixel_scale raw is {100 * other:.2f} %" in check.message


def test_a_passing_drop_gets_no_note_even_when_the_other_scale_is_better():
    report = make_report(float_accuracy=0.75, int8_accuracy=0.75, other_scale_accuracy=1.0)
    assert by_name(evaluate_gates(report, mnist_gates(), None))["accuracy drop vs float"].message == (
        "accuracy drop vs float: 0.00 pp <= 0.10 pp allowed"
    )


def test_a_failing_check_with_a_note_keeps_its_numbers():
    checks = by_name(evaluate_gates(make_report(int8_accuracy=0.5, other_scale_accuracy=0.99), mnist_gates(), None))
    for name in ("int8 top-1 error", "accuracy drop vs float"):
        assert (checks[name].comparison, checks[name].passed) == ("<=", False)
    assert (checks["int8 top-1 error"].measured, checks["int8 top-1 error"].threshold) == (50.0, 1.5)


def test_a_passing_error_check_does_not_name_the_model():
    check = evaluate_gates(make_report(), mnist_gates(), None)[0]
    assert check.passed and "(model" not in check.message


# --- comparisons and printed digits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("measured", "passed", "shown"),
    [
        (1.2 + 5e-10, True, "1.20x <= 1.20x allowed"),  # within the slack: float noise of an equal value
        (1.2 + 5e-9, False, "1.200000x > 1.200000x allowed"),  # past it, printed to the last digit tried
        (1.2000004, False, "1.200000x > 1.200000x allowed"),
        (1.200004, False, "1.200004x > 1.200000x allowed"),
        (1.20004, False, "1.20004x > 1.20000x allowed"),
        (1.19, True, "1.19x <= 1.20x allowed"),
    ],
)
def test_maximum_checks_at_their_edge(measured, passed, shown):
    check = evaluate_gates(make_report(latency_p50=measured), mnist_gates(max_latency_ratio=1.2), None)[2]
    assert check.passed is passed
    assert check.message == f"latency ratio int8/float: {shown} (p50 on onnxruntime)"


@pytest.mark.parametrize(
    ("measured", "passed", "shown"),
    [(0.8 - 5e-10, True, "0.80x >= 0.80x required"), (0.79999, False, "0.79999x < 0.80000x required")],
)
def test_minimum_checks_at_their_edge(measured, passed, shown):
    report = make_report(throughput={"256": measured})
    check = evaluate_gates(report, mnist_gates(min_throughput_ratio=0.8), None)[2]
    assert check.passed is passed and check.comparison == ">="
    assert check.message == f"throughput ratio int8/float: {shown} (batch 256 on onnxruntime)"


def test_a_value_exactly_the_slack_away_passes_and_prints_as_equal():
    # measured computed as the gate computes its bound (threshold + 1e-9): the edge of the slack itself.
    at_max = evaluate_gates(make_report(latency_p50=1.25 + 1e-9), mnist_gates(max_latency_ratio=1.25), None)[2]
    at_min = evaluate_gates(make_report(throughput={"256": 1.25 - 1e-9}), mnist_gates(min_throughput_ratio=1.25), None)[2]
    assert at_max.passed and at_min.passed
    # A difference of exactly the slack prints as equal at two digits (threshold 0: the difference is exact).
    zero = evaluate_gates(make_report(latency_p50=1e-9), mnist_gates(max_latency_ratio=0.0), None)[2]
    assert zero.passed and zero.message == "latency ratio int8/float: 0.00x <= 0.00x allowed (p50 on onnxruntime)"



def test_throughput_is_judged_at_the_largest_measured_batch_not_the_largest_name():
    report = make_report(throughput={"64": 0.5, "256": 1.2, "1024": None, "9": 2.0})
    check = evaluate_gates(report, mnist_gates(min_throughput_ratio=1.0), None)[2]
    assert check.passed and check.measured == 1.2 and check.message.endswith("(batch 256 on onnxruntime)")


# --- the baseline ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("int8", "passed"), [(0.75, True), (0.7490234375, False)])
def test_baseline_accuracy_tolerance_is_inclusive(int8, passed):
    # Baseline 75.5 %, tolerance 0.5 pp: 75.0 % is at the edge; 74.90234375 % is below it.
    gates = mnist_gates(baseline_accuracy_tolerance_pp=0.5, max_int8_top1_error_pct=100, max_accuracy_drop_pp=100)
    report = make_report(float_accuracy=0.75, int8_accuracy=int8)
    check = by_name(evaluate_gates(report, gates, accepted(int8_top1_accuracy=0.755)))["int8 accuracy vs baseline"]
    assert check.passed is passed
    assert check.threshold == pytest.approx(75.0)


def test_baseline_performance_tolerance_widens_both_ratios_the_right_way():
    # 25 % tolerance on latency 0.8 (allowed up to 1.0) and throughput 1.6 (required from 1.2).
    gates = mnist_gates(baseline_performance_tolerance_pct=25)
    at_edge = by_name(evaluate_gates(make_report(latency_p50=1.0, throughput={"256": 1.2}), gates,
                                     accepted(latency_p50_ratio=0.8, throughput_ratio=1.6)))  # fmt: skip
    latency, throughput = at_edge["latency ratio vs baseline"], at_edge["throughput ratio vs baseline"]
    assert latency.passed and latency.threshold == pytest.approx(1.0)
    assert throughput.passed and throughput.threshold == pytest.approx(1.2)
    assert latency.message == "latency ratio vs baseline: 1.00x <= 1.00x allowed (p50; baseline 0.80x plus 25 % tolerance)"
    assert throughput.message == (
        "throughput ratio vs baseline: 1.20x >= 1.20x required (batch 256; baseline 1.60x minus 25 % tolerance)"
    )
    past = by_name(evaluate_gates(make_report(latency_p50=1.01, throughput={"256": 1.19}), gates,
                                  accepted(latency_p50_ratio=0.8, throughput_ratio=1.6)))  # fmt: skip
    assert not past["latency ratio vs baseline"].passed and not past["throughput ratio vs baseline"].passed


def test_baseline_throughput_is_compared_at_the_baselines_batch_size():
    report = make_report(throughput={"64": 1.0, "256": 2.0})
    checks = by_name(evaluate_gates(report, mnist_gates(), accepted(throughput_ratio=1.0, throughput_batch_size=64)))
    check = checks["throughput ratio vs baseline"]
    assert check.measured == 1.0 and check.message.endswith("(batch 64; baseline 1.00x minus 10 % tolerance)")


def test_skipped_baseline_checks_say_why():
    report = make_report(latency_p50=None, throughput={"1": 1.0})
    checks = by_name(evaluate_gates(report, mnist_gates(), accepted()))
    assert checks["latency ratio vs baseline"].message == (
        "latency ratio vs baseline: skipped, the report has no p50 latency ratio"
    )
    assert checks["throughput ratio vs baseline"].message == (
        "throughput ratio vs baseline: skipped, the report has no throughput ratio at batch 256"
    )
    assert checks["latency ratio vs baseline"].threshold == pytest.approx(0.88)
    assert checks["throughput ratio vs baseline"].threshold == pytest.approx(1.17)
    assert checks["latency ratio vs baseline"].comparison == "<=" and checks["throughput ratio vs baseline"].comparison == ">="
    assert checks["int8 accuracy vs baseline"].comparison == ">="
    assert checks["int8 accuracy vs baseline"].message == (
        "int8 accuracy vs baseline: 98.89 % >= 98.79 % required (baseline 98.89 % minus 0.1 pp tolerance)"
    )


def test_missing_performance_names_the_gate_key_and_threshold():
    report = make_report(latency_p50=None, throughput={})
    checks = evaluate_gates(report, mnist_gates(max_latency_ratio=1.5, min_throughput_ratio=0.75), None)
    assert [check.status for check in checks[2:]] == ["FAIL", "FAIL"]
    assert checks[3].message == (
        "throughput ratio int8/float: no performance numbers on onnxruntime in the report to compare with "
        "gates.min_throughput_ratio 0.75 (run the report with benchmarks and onnxruntime in benchmark.runtimes, or set "
        "gates.fail_on_missing_performance: false)"
    )
    assert (checks[3].threshold, checks[3].comparison) == (0.75, ">=")
    assert (checks[2].threshold, checks[2].comparison) == (1.5, "<=")
    assert checks[2].passed is False and checks[3].passed is False  # --json writes the field as it is
    allowed = mnist_gates(max_latency_ratio=1.5, min_throughput_ratio=0.75, fail_on_missing_performance=False)
    skipped = evaluate_gates(report, allowed, None)[2:]
    assert [(c.status, c.threshold, c.comparison, c.passed) for c in skipped] == [
        ("SKIP", 1.5, "<=", True), ("SKIP", 0.75, ">=", True)
    ]


def test_baseline_json_takes_the_largest_measured_batch(tmp_path):
    written = json.loads(baseline_json(make_report(throughput={"16": 1.5, "128": 1.25, "512": None}), Runtime.ONNXRUNTIME))
    assert written == {
        "schema_version": 2, "runtime": "onnxruntime", "inference_precision": None, "int8_top1_accuracy": 0.9889,
        "latency_p50_ratio": 0.8,
        "throughput_ratio": 1.25, "throughput_batch_size": 128,
    }  # fmt: skip
    # Committed to git beside the code, so written to diff well: two-space indents, a final newline.
    expected = {**accepted(), "latency_p50_ratio": 0.8, "throughput_ratio": 1.3, "throughput_batch_size": 256}
    assert baseline_json(make_report(), Runtime.ONNXRUNTIME) == json.dumps(expected, indent=2) + "\n"


# --- what the loaders accept -----------------------------------------------------------------------


@pytest.mark.parametrize("accuracy", [0, 1, 0.5])
def test_fractions_at_zero_and_one_are_accepted(tmp_path, accuracy):
    report = make_report(int8_accuracy=accuracy)
    assert load_report(write_json(tmp_path, report)) == report


@pytest.mark.parametrize("accuracy", [-1e-9, 1.0000001, math.inf, True, "0.9", None])
def test_fractions_outside_zero_to_one_are_refused(tmp_path, accuracy):
    report = make_report()
    report["models"][1]["accuracy"]["top1_accuracy"] = accuracy
    message = report_error(tmp_path, report)
    assert message.endswith(f"$.models[1].accuracy.top1_accuracy: expected a number between 0 and 1, got {json.dumps(accuracy)}")


def test_nan_is_refused_as_a_fraction(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(make_report()).replace('"top1_accuracy": 0.9889', '"top1_accuracy": NaN'))
    with pytest.raises(InputError, match=r"\$\.models\[1\]\.accuracy\.top1_accuracy: expected a number between 0 and 1, got NaN"):
        load_report(path)


@pytest.mark.parametrize("ratio", [1e-12, 0.5, 3, None])
def test_positive_ratios_and_null_are_accepted(tmp_path, ratio):
    assert load_report(write_json(tmp_path, make_report(latency_p50=ratio)))["ratios_vs_float"]["onnxruntime"]["int8"]["latency_p50"] == ratio


@pytest.mark.parametrize("ratio", [0, -0.5, False, "1.2", [1]])
def test_ratios_that_are_not_positive_numbers_are_refused(tmp_path, ratio):
    assert report_error(tmp_path, make_report(latency_p50=ratio)).endswith(
        f"$.ratios_vs_float.onnxruntime.int8.latency_p50: expected a positive number or null, got {json.dumps(ratio)}"
    )


@pytest.mark.parametrize("batch", ["1", "7", "256"])
def test_batch_size_keys_from_one(tmp_path, batch):
    assert load_report(write_json(tmp_path, make_report(throughput={batch: 1.0})))


@pytest.mark.parametrize("batch", ["0", "-1", "1.5", "", "x"])
def test_batch_size_keys_below_one_or_not_integers_are_refused(tmp_path, batch):
    assert report_error(tmp_path, make_report(throughput={batch: 1.0})).endswith(
        f"$.ratios_vs_float.onnxruntime.int8.throughput: expected batch sizes (positive integers) as keys, got {batch!r}"
    )


def test_a_throughput_ratio_under_a_batch_key_is_validated(tmp_path):
    assert report_error(tmp_path, make_report(throughput={"8": -1.0})).endswith(
        "$.ratios_vs_float.onnxruntime.int8.throughput.8: expected a positive number or null, got -1.0"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r["ratios_vs_float"]["onnxruntime"].update(int8=[1]), "$.ratios_vs_float.onnxruntime.int8: expected a JSON object, got [1]"),
        (lambda r: r["ratios_vs_float"]["onnxruntime"]["int8"].update(throughput=[1]),
         "$.ratios_vs_float.onnxruntime.int8.throughput: expected a JSON object, got [1]"),
        (lambda r: r.update(ratios_vs_float=3), "$.ratios_vs_float: expected a JSON object, got 3"),
        (lambda r: r.update(models={}), "$.models: expected a non-empty list of models, got {}"),
        (lambda r: r["models"].__setitem__(2, "zoo"), "$.models[2]: expected a JSON object, got \"zoo\""),
        (lambda r: r["models"][1].update(role="reference"), "exactly one model with role 'int8', found 0"),
        (lambda r: r["models"][0].update(name=7), "$.models[0].name: expected a string, got 7"),
        (lambda r: r["models"][1].update(accuracy=None), "$.models[1].accuracy: expected a JSON object, got null"),
        (lambda r: r["models"][0]["accuracy"].update(pixel_scale=1), "$.models[0].accuracy.pixel_scale: expected a string, got 1"),
        (lambda r: r["models"][1].update(accuracy_other_scale=5),
         "$.models[1].accuracy_other_scale: expected a JSON object, got 5"),
        (lambda r: r["models"][1].update(accuracy_other_scale={"pixel_scale": "raw", "top1_accuracy": 2}),
         "$.models[1].accuracy_other_scale.top1_accuracy: expected a number between 0 and 1, got 2"),
        (lambda r: r["models"][1].update(accuracy_other_scale={"top1_accuracy": 0.5}),
         "missing key $.models[1].accuracy_other_scale.pixel_scale"),
        (lambda r: r.pop("models"), "missing key $.models"),
        (lambda r: r["models"][0].pop("accuracy"), "missing key $.models[0].accuracy"),
    ],
)  # fmt: skip
def test_report_structure_errors_name_their_json_path(tmp_path, change, expected):
    report = make_report()
    change(report)
    assert report_error(tmp_path, report).endswith(expected)


def test_a_reference_model_is_not_validated_but_float_and_int8_are(tmp_path):
    report = make_report()
    report["models"][2]["accuracy"] = "not checked"
    assert load_report(write_json(tmp_path, report)) == report
    report["ratios_vs_float"]["onnxruntime"]["zoo-int8"] = "not checked either"
    assert load_report(write_json(tmp_path, report)) == report


def test_long_values_are_cut_to_forty_characters(tmp_path):
    forty = "x" * 38  # json.dumps adds the two quotes: 40 characters
    report = make_report()
    report["models"][0]["accuracy"]["top1_accuracy"] = forty
    assert report_error(tmp_path, report).endswith(f"got {json.dumps(forty)}")
    report["models"][0]["accuracy"]["top1_accuracy"] = forty + "y"
    assert report_error(tmp_path, report).endswith(f"got {json.dumps(forty + 'y')[:37]}...")


def test_report_path_problems(tmp_path):
    with pytest.raises(InputError, match="report file is a directory, expected a regular file"):
        load_report(tmp_path)
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(InputError, match=r"latin1.json: cannot read report \(UnicodeDecodeError: "):
        load_report(tmp_path / "latin1.json")
    (tmp_path / "broken.json").write_text('{\n  "a": 1,\n  oops\n}')
    with pytest.raises(InputError, match="not valid JSON at line 3, column 3: Expecting property name"):
        load_report(tmp_path / "broken.json")
    with pytest.raises(InputError, match="baseline file not found"):
        load_baseline(tmp_path / "none.json")


@pytest.mark.parametrize("version", [0, 1, 3, "2", None])
def test_only_schema_version_2_is_read(tmp_path, version):
    assert report_error(tmp_path, {**make_report(), "schema_version": version}).endswith(
        f"report schema_version {version!r} is not supported (this gate reads 2); write it again with this "
        "version's report (docs/report-schema.md)"
    )
    assert baseline_error(tmp_path, {**accepted(), "schema_version": version}).endswith(
        f"baseline schema_version {version!r} is not supported (this gate reads 2); write it again with this "
        "version's gate --write-baseline (docs/report-schema.md)"
    )


@pytest.mark.parametrize("batch", [0, -1, True, 1.0, "256", None])
def test_baseline_throughput_batch_size_must_be_a_positive_integer(tmp_path, batch):
    assert baseline_error(tmp_path, accepted(throughput_batch_size=batch)).endswith(
        f"$.throughput_batch_size: expected a positive integer, got {json.dumps(batch)}"
    )


def test_baseline_without_throughput_needs_no_batch_size(tmp_path):
    baseline = accepted(throughput_ratio=None)
    baseline.pop("throughput_batch_size")
    assert load_baseline(write_json(tmp_path, baseline, "baseline.json")) == baseline
    assert load_baseline(write_json(tmp_path, accepted(throughput_batch_size=1), "baseline.json"))["throughput_batch_size"] == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda b: b.update(int8_top1_accuracy=1.5), "$.int8_top1_accuracy: expected a number between 0 and 1, got 1.5"),
        (lambda b: b.update(latency_p50_ratio=0), "$.latency_p50_ratio: expected a positive number or null, got 0"),
        (lambda b: b.update(throughput_ratio=-2), "$.throughput_ratio: expected a positive number or null, got -2"),
        (lambda b: b.pop("latency_p50_ratio"), "missing key $.latency_p50_ratio"),
        (lambda b: b.pop("throughput_ratio"), "missing key $.throughput_ratio"),
        (lambda b: b.pop("runtime"), "missing key $.runtime"),
        (lambda b: b.update(runtime=None), "$.runtime: expected a string, got null"),
        (lambda b: b.pop("inference_precision"), "missing key $.inference_precision"),
        (lambda b: b.update(inference_precision=16), "$.inference_precision: expected a string or null, got 16"),
        (lambda b: b.update(inference_precision=["bf16"]), '$.inference_precision: expected a string or null, got ["bf16"]'),
    ],
)  # fmt: skip
def test_baseline_values_are_validated(tmp_path, change, expected):
    baseline = accepted()
    change(baseline)
    assert baseline_error(tmp_path, baseline).endswith(expected)


@pytest.mark.parametrize("precision", [None, "bf16", "f32"])
def test_a_baseline_names_its_runtime_and_any_inference_precision(tmp_path, precision):
    baseline = accepted(runtime="openvino", inference_precision=precision)
    assert load_baseline(write_json(tmp_path, baseline, "baseline.json")) == baseline


# --- JUnit and GitHub annotations -------------------------------------------------------------------


def test_junit_counts_and_passing_checks_output():
    checks = [
        Check("a", 1.0, 2.0, "<=", True, "a: passed"),
        Check("b", 3.0, 2.0, "<=", False, "b: failed"),
        Check("c", None, 2.0, "<=", True, "c: skipped, why", skipped=True),
        Check("d", None, 2.0, "<=", False, "d: no numbers"),
        Check("e", 4.0, 2.0, "<=", False, "e: failed"),
    ]
    root = ET.fromstring(junit_xml(checks))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("5", "3", "0", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert all(case.get("classname") == "quality-gate" for case in cases.values())
    assert cases["a"].find("system-out").text == "a: passed" and cases["a"].find("failure") is None
    failure = cases["b"].find("failure")
    assert (failure.get("message"), failure.get("type"), failure.text) == ("b: failed", "GateFailed", "b: failed")
    assert cases["c"].find("skipped").get("message") == "c: skipped, why" and cases["c"].find("system-out") is None
    assert cases["d"].find("failure") is not None
    assert junit_xml(checks).startswith("<?xml") and junit_xml(checks).endswith("\n")


def test_github_annotations_escape_what_the_runner_would_read_as_syntax():
    checks = [
        Check("ok", 1.0, 2.0, "<=", True, "ok: fine"),
        Check("drop: a, b", 3.0, 2.0, "<=", False, "50% of it\nfailed\r"),
        Check("perf", None, 2.0, "<=", True, "perf: skipped, 100%", skipped=True),
    ]
    assert github_annotations(checks) == [
        "::error title=gate%3A drop%3A a%2C b::50%25 of it%0Afailed%0D",
        "::warning title=gate%3A perf::perf: skipped, 100%25",
    ]
    assert github_annotations([checks[0]]) == []


def test_check_status_names():
    assert [Check("x", 1.0, 1.0, "<=", p, "", skipped=s).status for p, s in ((True, False), (False, False), (True, True))] == [
        "PASS", "FAIL", "SKIP"
    ]
