"""The line a report opens with: accuracy change and speed verdict of the int8 model, from chosen numbers.

Nothing is timed: every timing of tests/report_fakes.py has exactly the p50s given, so each ratio and its
interval are known. The line must be first in report.md and carried in report.json.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from report_fakes import fake_report, performance

from tuning.config.enums import PixelScale, Runtime
from tuning.report.accuracy import Accuracy
from tuning.report.answer import report_answer
from tuning.report.document import json_document
from tuning.report.markdown import markdown, summary_table

pytestmark = pytest.mark.fast

BATCH = 256


def _accuracy(wrong_per_1000: int) -> Accuracy:
    confusion = np.zeros((10, 10), dtype=np.int64)
    confusion[0, 0] = 1000 - wrong_per_1000
    confusion[0, 1] = wrong_per_1000
    return Accuracy(PixelScale.UNIT, confusion, 1.0, 0, 0, 0)


def _report(int8_batch1_ms: float, int8_batch_ms: float, float_wrong: int = 11, int8_wrong: int = 14):
    fp32 = performance("fp32", np.full(50, 10.0), {BATCH: [10.0, 10.0, 10.0]})
    int8 = performance("int8", np.full(50, int8_batch1_ms), {BATCH: [int8_batch_ms] * 3})
    report = fake_report({"fp32": {Runtime.ONNXRUNTIME: fp32}, "int8": {Runtime.ONNXRUNTIME: int8}}, [BATCH])
    models = [
        dataclasses.replace(result, accuracy=_accuracy(wrong))
        for result, wrong in zip(report.models, (float_wrong, int8_wrong))
    ]
    return dataclasses.replace(report, models=models)


def test_an_int8_model_twice_as_fast_pays_at_both_batches_and_its_error_change_is_signed():
    answer = report_answer(_report(int8_batch1_ms=5.0, int8_batch_ms=5.0))
    assert answer.error_change_pp == pytest.approx(0.3)  # 1.4 % - 1.1 %: int8 less accurate is positive
    assert answer.verdict is not None
    assert answer.verdict.latency_ratio.value == pytest.approx(0.5)  # time int8/fp32
    assert answer.verdict.throughput_ratio.value == pytest.approx(2.0)  # images/s int8/fp32
    line = answer.line()
    assert line.startswith("top-1 error int8 1.40 % vs fp32 1.10 % (+0.30 pp); on onnxruntime, int8 vs fp32:")
    assert "batch 1 pays, 0.50x the time" in line and f"batch {BATCH} pays, 2.00x the throughput" in line
    assert "Example CPU 9000" in line and "VNNI yes" in line


def test_a_slower_int8_model_does_not_pay_and_a_more_accurate_one_has_a_negative_change():
    answer = report_answer(_report(int8_batch1_ms=12.5, int8_batch_ms=20.0, float_wrong=12, int8_wrong=10))
    assert answer.error_change_pp == pytest.approx(-0.2)
    line = answer.line()
    assert "batch 1 does not pay, 1.25x the time" in line
    assert f"batch {BATCH} does not pay, 0.50x the throughput" in line


def test_the_answer_opens_report_md_and_is_in_report_json():
    report = _report(int8_batch1_ms=5.0, int8_batch_ms=20.0)
    text = markdown(report, summary_table(report), [])
    first_paragraph = text.split("\n\n")[1]
    assert first_paragraph == f"**Answer:** {report_answer(report).line()}"
    document = json_document(report)
    assert document["answer"]["line"] == report_answer(report).line()
    assert document["answer"]["speed"]["batch_1"] == "pays"
    assert document["answer"]["speed"]["throughput_batch"] == "does not pay"


def test_without_timings_the_answer_says_speed_was_not_measured():
    report = _report(int8_batch1_ms=5.0, int8_batch_ms=5.0)
    unmeasured = dataclasses.replace(
        report, models=[dataclasses.replace(result, runtimes={}) for result in report.models]
    )
    line = report_answer(unmeasured).line()
    assert line.endswith("speed not measured on onnxruntime")
