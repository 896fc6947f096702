"""The quality gate over report.json: each check, the baseline, JUnit XML (the command: tests/test_gate_cli.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import CONFIG

from tuning.config.enums import Runtime
from tuning.config.loading import load_config
from tuning.config.schema import GatesSection
from tuning.errors import InputError
from tuning.gate.baseline import baseline_json, load_baseline
from tuning.gate.checks import Check, evaluate_gates
from tuning.gate.outputs import junit_xml
from tuning.gate.report_file import load_report

pytestmark = pytest.mark.fast


def make_report(
    float_accuracy: float = 0.989,
    int8_accuracy: float = 0.9889,
    latency_p50: float | None = 0.8,
    throughput: dict[str, float | None] | None = None,
    other_scale_accuracy: float | None = None,
) -> dict[str, Any]:
    """A schema_version 2 report (the report command's contract) holding just these numbers, on onnxruntime."""

    def model(name: str, role: str, accuracy: float) -> dict[str, Any]:
        return {
            "name": name,
            "role": role,
            "path": f"models/{name}.onnx",
            "accuracy": {"pixel_scale": "unit", "top1_accuracy": accuracy, "top1_error": 1 - accuracy},
            "runtimes": {"onnxruntime": {"status": "ok", "error": None, "accuracy": {"top1_accuracy": accuracy},
                                         "latency_ms": None, "throughput": None}},
        }  # fmt: skip

    int8 = model("int8", "int8", int8_accuracy)
    if other_scale_accuracy is not None:
        int8["accuracy_other_scale"] = {"pixel_scale": "raw", "top1_accuracy": other_scale_accuracy}
    return {
        "schema_version": 2,
        "preprocessing": {"pixel_scale": "unit", "mean": 0.0, "std": 1.0},
        "models": [
            model("fp32", "float", float_accuracy),
            int8,
            model("zoo-int8", "reference", 0.10),  # references must not influence the gate
        ],
        "ratios_vs_float": {
            "onnxruntime": {
                "int8": {
                    "latency_p50": latency_p50,
                    "throughput": {"1": 1.1, "256": 1.3} if throughput is None else throughput,
                },
                "zoo-int8": {"latency_p50": 9.0, "throughput": {"1": 0.01}},
            }
        },
    }


def mnist_gates(**overrides: Any) -> GatesSection:
    """The shipped config's accuracy gates (configs/mnist.yaml: 1.5 % error, 0.1 pp drop) with ``overrides``; its
    speed checks off unless overridden (the shipped ones: test_speed_decisions.py)."""
    speed_off = {"max_latency_ratio": None, "min_throughput_ratio": None}
    return load_config(CONFIG).gates.model_copy(update=speed_off | overrides)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def only_failure(checks: list[Check]) -> Check:
    failed = [check for check in checks if not check.passed]
    assert len(failed) == 1, [check.message for check in failed]
    return failed[0]


# --- the checks --------------------------------------------------------------------------------


def test_good_numbers_pass_every_check():
    gates = mnist_gates(max_latency_ratio=1.2, min_throughput_ratio=0.9)
    checks = evaluate_gates(make_report(), gates, None)
    assert [check.status for check in checks] == ["PASS"] * 4
    assert [check.name for check in checks] == [
        "int8 top-1 error",
        "accuracy drop vs float",
        "latency ratio int8/float",
        "throughput ratio int8/float",
    ]


def test_ratios_are_read_under_the_int8_model_name():
    report = make_report(latency_p50=1.5)
    report["models"][1]["name"] = "tuned"
    report["ratios_vs_float"]["onnxruntime"]["tuned"] = report["ratios_vs_float"]["onnxruntime"].pop("int8")
    check = only_failure(evaluate_gates(report, mnist_gates(max_latency_ratio=1.2), None))
    assert check.measured == 1.5


def test_default_gates_run_only_the_accuracy_checks():
    assert [check.name for check in evaluate_gates(make_report(), mnist_gates(), None)] == [
        "int8 top-1 error",
        "accuracy drop vs float",
    ]


def test_schema_default_gates_are_relative_to_the_float_model():
    # A FashionMNIST-like model: 9.8 % error in fp32 and int8 alike passes; an absolute error gate is off.
    report = make_report(float_accuracy=0.902, int8_accuracy=0.898)
    checks = evaluate_gates(report, GatesSection(), None)
    assert [(check.name, check.passed) for check in checks] == [("accuracy drop vs float", True)]
    assert checks[0].threshold == 1.0
    failing = evaluate_gates(make_report(float_accuracy=0.902, int8_accuracy=0.89), GatesSection(), None)
    assert [check.passed for check in failing] == [False]


def test_int8_error_above_the_maximum_fails_naming_the_model():
    # The zoo int8 model fed [0, 1] pixels: both accuracy checks fail.
    checks = evaluate_gates(make_report(int8_accuracy=0.5452), mnist_gates(), None)
    error = by_name(checks)["int8 top-1 error"]
    assert not error.passed
    assert error.measured == pytest.approx(45.48)
    assert error.threshold == 1.5
    assert error.message == (
        "int8 top-1 error: 45.48 % > 1.50 % allowed (model int8: models/int8.onnx evaluated with pixel_scale unit)"
    )


def test_accuracy_drop_above_the_maximum_fails():
    check = only_failure(evaluate_gates(make_report(int8_accuracy=0.9875), mnist_gates(), None))
    assert check.name == "accuracy drop vs float"
    assert check.measured == pytest.approx(0.15)
    assert check.threshold == 0.1
    assert check.message == "accuracy drop vs float: 0.15 pp > 0.10 pp allowed (float 98.90 %, int8 98.75 %)"


def test_accuracy_drop_hints_at_the_pixel_scale_when_the_other_scale_recovers_it():
    report = make_report(int8_accuracy=0.5452, other_scale_accuracy=0.9892)
    check = by_name(evaluate_gates(report, mnist_gates(), None))["accuracy drop vs float"]
    assert not check.passed
    assert check.message.endswith(
        "accuracy at pixel_scale raw is 98.92 %: the model was likely calibrated for the other preprocessing"
    )


def test_no_pixel_scale_hint_when_the_other_scale_is_no_better():
    report = make_report(int8_accuracy=0.5452, other_scale_accuracy=0.11)
    check = by_name(evaluate_gates(report, mnist_gates(), None))["accuracy drop vs float"]
    assert "calibrated" not in check.message


def test_values_equal_to_their_threshold_pass_despite_float_noise():
    # 1 - 0.985 is 0.015000000000000013 in binary floating point.
    checks = evaluate_gates(make_report(float_accuracy=0.986, int8_accuracy=0.985), mnist_gates(), None)
    assert all(check.passed for check in checks), [check.message for check in checks]


def test_latency_ratio_above_the_maximum_fails():
    report = make_report(latency_p50=1.45)
    check = only_failure(evaluate_gates(report, mnist_gates(max_latency_ratio=1.2), None))
    assert check.name == "latency ratio int8/float"
    assert (check.measured, check.threshold, check.comparison) == (1.45, 1.2, "<=")
    assert check.message == "latency ratio int8/float: 1.45x > 1.20x allowed (p50 on onnxruntime)"


def test_throughput_ratio_below_the_minimum_fails_at_the_largest_batch():
    report = make_report(throughput={"1": 1.5, "16": 1.2, "256": 0.7})
    check = only_failure(evaluate_gates(report, mnist_gates(min_throughput_ratio=0.8), None))
    assert check.name == "throughput ratio int8/float"
    assert (check.measured, check.threshold, check.comparison) == (0.7, 0.8, ">=")
    assert check.message == "throughput ratio int8/float: 0.70x < 0.80x required (batch 256 on onnxruntime)"


def test_unmeasured_batch_sizes_do_not_count_as_largest():
    report = make_report(throughput={"1": 0.95, "256": None})
    check = by_name(evaluate_gates(report, mnist_gates(min_throughput_ratio=0.9), None))["throughput ratio int8/float"]
    assert check.passed and "(batch 1 on onnxruntime)" in check.message


def test_close_values_print_enough_digits_to_differ():
    report = make_report(latency_p50=1.2004)
    check = only_failure(evaluate_gates(report, mnist_gates(max_latency_ratio=1.2), None))
    assert "1.2004x > 1.2000x" in check.message


@pytest.mark.parametrize("int8_ratios", [None, {"latency_p50": None, "throughput": None}])
def test_missing_performance_fails_a_set_performance_gate_by_default(int8_ratios):
    report = make_report()
    report["ratios_vs_float"]["onnxruntime"]["int8"] = int8_ratios
    checks = evaluate_gates(report, mnist_gates(max_latency_ratio=1.2, min_throughput_ratio=0.8), None)
    failed = [check for check in checks if not check.passed]
    assert [check.name for check in failed] == ["latency ratio int8/float", "throughput ratio int8/float"]
    assert all(check.measured is None for check in failed)
    assert "no performance numbers on onnxruntime in the report to compare with gates.max_latency_ratio 1.2" in failed[0].message


def test_missing_performance_is_skipped_when_allowed():
    report = make_report(latency_p50=None, throughput={})
    gates = mnist_gates(max_latency_ratio=1.2, min_throughput_ratio=0.8, fail_on_missing_performance=False)
    checks = evaluate_gates(report, gates, None)
    assert [check.status for check in checks] == ["PASS", "PASS", "SKIP", "SKIP"]
    assert all(check.passed for check in checks)
    assert "skipped, no performance numbers on onnxruntime in the report" in checks[2].message


def test_missing_performance_is_not_a_failure_when_no_performance_gate_is_set():
    report = make_report(latency_p50=None, throughput={})
    assert all(check.passed for check in evaluate_gates(report, mnist_gates(), None))


# --- the baseline ------------------------------------------------------------------------------


def accepted(**numbers: Any) -> dict[str, Any]:
    baseline = {
        "schema_version": 2,
        "runtime": "onnxruntime",
        "inference_precision": None,
        "int8_top1_accuracy": 0.9889,
        "latency_p50_ratio": 0.8,
        "throughput_ratio": 1.3,
        "throughput_batch_size": 256,
    }
    return {**baseline, **numbers}


def test_baseline_passes_on_the_same_numbers():
    checks = evaluate_gates(make_report(), mnist_gates(), accepted())
    assert [check.name for check in checks[2:]] == [
        "int8 accuracy vs baseline",
        "latency ratio vs baseline",
        "throughput ratio vs baseline",
    ]
    assert all(check.passed for check in checks)


def test_baseline_accuracy_more_than_the_tolerance_below_fails():
    report = make_report(float_accuracy=0.99, int8_accuracy=0.9895)
    check = only_failure(evaluate_gates(report, mnist_gates(), accepted(int8_top1_accuracy=0.9910)))
    assert check.name == "int8 accuracy vs baseline"
    assert check.measured == pytest.approx(98.95)
    assert check.threshold == pytest.approx(99.0)
    assert check.message == (
        "int8 accuracy vs baseline: 98.95 % < 99.00 % required (baseline 99.10 % minus 0.1 pp tolerance)"
    )


def test_baseline_accuracy_within_the_tolerance_passes():
    report = make_report(float_accuracy=0.99, int8_accuracy=0.9900)
    assert all(check.passed for check in evaluate_gates(report, mnist_gates(), accepted(int8_top1_accuracy=0.9910)))


def test_baseline_latency_more_than_the_tolerance_worse_fails():
    report = make_report(latency_p50=0.9)  # 12.5 % slower than the accepted 0.8
    check = only_failure(evaluate_gates(report, mnist_gates(), accepted()))
    assert check.name == "latency ratio vs baseline"
    assert (check.measured, check.comparison) == (0.9, "<=")
    assert check.threshold == pytest.approx(0.88)
    assert check.message == "latency ratio vs baseline: 0.90x > 0.88x allowed (p50; baseline 0.80x plus 10 % tolerance)"


def test_baseline_throughput_more_than_the_tolerance_worse_fails():
    report = make_report(throughput={"1": 1.1, "256": 1.1})
    check = only_failure(evaluate_gates(report, mnist_gates(), accepted()))
    assert check.name == "throughput ratio vs baseline"
    assert (check.measured, check.comparison) == (1.1, ">=")
    assert check.threshold == pytest.approx(1.17)


def test_baseline_performance_within_the_tolerance_passes():
    report = make_report(latency_p50=0.87, throughput={"256": 1.18})
    assert all(check.passed for check in evaluate_gates(report, mnist_gates(), accepted()))


def test_baseline_compares_only_numbers_both_have():
    checks = evaluate_gates(make_report(), mnist_gates(), accepted(latency_p50_ratio=None, throughput_ratio=None))
    assert [check.name for check in checks][2:] == ["int8 accuracy vs baseline"]

    report = make_report(latency_p50=None, throughput={"1": 1.0})
    statuses = {check.name: check.status for check in evaluate_gates(report, mnist_gates(), accepted())}
    assert statuses["latency ratio vs baseline"] == "SKIP"
    assert statuses["throughput ratio vs baseline"] == "SKIP"  # no ratio at the baseline's batch size 256


def test_written_baseline_loads_and_matches_the_report(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(baseline_json(make_report(throughput={"1": 1.1, "64": 1.25, "256": None}), Runtime.ONNXRUNTIME))
    assert load_baseline(path) == accepted(throughput_ratio=1.25, throughput_batch_size=64)


def test_written_baseline_without_performance(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(baseline_json(make_report(latency_p50=None, throughput={}), Runtime.ONNXRUNTIME))
    assert load_baseline(path) == accepted(latency_p50_ratio=None, throughput_ratio=None, throughput_batch_size=None)


# --- JUnit XML ---------------------------------------------------------------------------------


def test_junit_xml_has_one_testcase_per_check_and_marks_failures():
    report = make_report(int8_accuracy=0.5452, latency_p50=None, throughput={"256": 1.3})
    gates = mnist_gates(max_latency_ratio=1.2, min_throughput_ratio=0.8, fail_on_missing_performance=False)
    checks = evaluate_gates(report, gates, None)
    root = ET.fromstring(junit_xml(checks))
    suite = root.find("testsuite")
    assert suite.get("name") == "quality-gate"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "1")
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [check.name for check in checks]
    failure = cases[0].find("failure")
    assert failure.get("message").startswith("int8 top-1 error: 45.48 % > 1.50 % allowed")
    assert cases[2].find("skipped") is not None
    assert cases[3].find("failure") is None and cases[3].find("skipped") is None


# --- reading the report ------------------------------------------------------------------------


def write_json(tmp_path: Path, data: Any, name: str = "report.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_report(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_load_report_returns_a_valid_report(tmp_path):
    assert load_report(write_json(tmp_path, make_report())) == make_report()


def test_missing_report(tmp_path):
    assert load_error(tmp_path / "nope.json").endswith("report file not found")


def test_report_that_is_not_json(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("{ not json")
    assert "not valid JSON at line 1, column 3" in load_error(path)


def test_report_with_another_schema_version(tmp_path):
    report = {**make_report(), "schema_version": 1}
    assert "report schema_version 1 is not supported (this gate reads 2)" in load_error(write_json(tmp_path, report))


@pytest.mark.parametrize(
    ("remove", "json_path"),
    [
        (lambda report: report.pop("schema_version"), "$.schema_version"),
        (lambda report: report.pop("ratios_vs_float"), "$.ratios_vs_float"),
        (lambda report: report["models"][0]["accuracy"].pop("top1_accuracy"), "$.models[0].accuracy.top1_accuracy"),
        (lambda report: report["models"][1].pop("path"), "$.models[1].path"),
        (lambda report: report["models"][2].pop("role"), "$.models[2].role"),
    ],
)
def test_report_with_a_missing_key_names_its_json_path(tmp_path, remove, json_path):
    report = make_report()
    remove(report)
    assert load_error(write_json(tmp_path, report)).endswith(f"missing key {json_path}")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r["models"][1].update(role="float"), "exactly one model with role 'float', found 2"),
        (lambda r: r["models"][1]["accuracy"].update(top1_accuracy=98.9), "expected a number between 0 and 1"),
        (lambda r: r["models"][1]["accuracy"].update(top1_accuracy=True), "got true"),
        (lambda r: r["ratios_vs_float"]["onnxruntime"]["int8"].update(latency_p50="fast"), "latency_p50: expected a positive"),
        (lambda r: r["ratios_vs_float"]["onnxruntime"]["int8"]["throughput"].update(big=1.0), "expected batch sizes"),
        (lambda r: r.update(models=[]), "$.models: expected a non-empty list"),
    ],
)
def test_report_with_a_wrong_value(tmp_path, change, expected):
    report = make_report()
    change(report)
    assert expected in load_error(write_json(tmp_path, report))


def test_report_that_is_not_an_object(tmp_path):
    assert "$: expected a JSON object, got [1, 2]" in load_error(write_json(tmp_path, [1, 2]))


def test_baseline_missing_a_key(tmp_path):
    baseline = accepted()
    baseline.pop("throughput_batch_size")
    with pytest.raises(InputError, match=r"missing key \$\.throughput_batch_size$"):
        load_baseline(write_json(tmp_path, baseline, "baseline.json"))
