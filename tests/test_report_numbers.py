"""The report's numbers from chosen inputs: accuracy, agreement and flips counted again by hand, speed ratios in
their stated directions (time: model / fp32, below 1 faster; images/s: model / fp32, above 1 faster), the names.

Timings are constant per round (tests/report_fakes.py), so every ratio is the quotient of the numbers given.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import pytest
from report_fakes import fake_report, performance

from tuning.config.enums import PixelScale, Runtime
from tuning.errors import InputError
from tuning.report.accuracy import Flip, find_flips, score
from tuning.report.answer import report_answer
from tuning.report.numbers import ModelEntry, Role, RuntimeResult, model_entries, other_scale, package_version
from tuning.report.speed import measured_series, ratios_vs_float

pytestmark = pytest.mark.fast

SCHEMA_DOC = Path(__file__).resolve().parent.parent / "docs" / "report-schema.md"

LABELS = np.array([0, 0, 1, 1, 2, 2, 2, 1])
FLOAT = np.array([0, 1, 1, 1, 2, 0, 2, 0])  # right on 0, 2, 3, 4, 6
INT8 = np.array([0, 0, 1, 2, 2, 1, 2, 0])  # right on 0, 1, 2, 4, 6; differs from FLOAT on 1, 3, 5


def test_score_counts_the_confusion_agreement_and_flips() -> None:
    accuracy = score(INT8, LABELS, FLOAT, 3, PixelScale.RAW)
    # Rows are true labels, columns predictions.
    assert accuracy.confusion.tolist() == [[2, 0, 0], [1, 1, 1], [0, 1, 2]]
    assert accuracy.images == 8 and accuracy.top1_accuracy == 5 / 8 and accuracy.top1_error == 3 / 8
    assert accuracy.per_class_accuracy == [1.0, 1 / 3, 2 / 3]
    assert accuracy.agreement_with_float == 5 / 8  # the same class as the float model on 5 of 8 images
    assert accuracy.flips == 3
    assert accuracy.flips_to_correct == 1  # image 1: float wrong, int8 right
    assert accuracy.flips_to_wrong == 1  # image 3: float right, int8 wrong (image 5: both wrong)
    document = accuracy.to_json()
    assert document["agreement_with_float"] == 5 / 8 and document["top1_error"] == 3 / 8
    assert document["pixel_scale"] == "raw" and document["images"] == 8
    assert score(FLOAT, LABELS, FLOAT, 4, PixelScale.UNIT).per_class_accuracy[3] is None  # no image of class 3
    # Counts, not fractions, in report.json.
    assert json.dumps(document["confusion_matrix"]) == "[[2, 0, 0], [1, 1, 1], [0, 1, 2]]"
    # Two more images both models get wrong, differently: flips to correct stay 1, flips 5.
    more = score(np.append(INT8, [1, 0]), np.append(LABELS, [2, 2]), np.append(FLOAT, [0, 1]), 3, PixelScale.RAW)
    assert (more.flips, more.flips_to_correct, more.flips_to_wrong) == (5, 1, 1)


def test_flips_list_the_costly_ones_first() -> None:
    flips = find_flips(INT8, FLOAT, LABELS)
    assert [(flip.index, flip.kind) for flip in flips] == [(3, "to_wrong"), (1, "to_correct"), (5, "both_wrong")]
    assert flips[0] == Flip(3, 1, 1, 2)
    assert flips[0].to_json() == {"index": 3, "label": 1, "float_prediction": 1, "int8_prediction": 2}


def test_a_runtime_result_states_error_and_agreement_the_right_way_round() -> None:
    result = RuntimeResult(Runtime.OPENVINO, top1_accuracy=0.75, images=400, differing_from_onnxruntime=10)
    accuracy = result.to_json()["accuracy"]
    assert accuracy["top1_error"] == pytest.approx(0.25) and accuracy["top1_accuracy"] == 0.75
    assert accuracy["agreement_with_onnxruntime"] == pytest.approx(390 / 400)
    assert accuracy["differing_from_onnxruntime"] == 10 and accuracy["images"] == 400
    assert result.to_json()["status"] == "ok"
    refused = RuntimeResult(Runtime.OPENVINO, error="cannot convert").to_json()
    assert (refused["status"], refused["error"], refused["accuracy"], refused["conditions"]) == (
        "cannot load", "cannot convert", None, None)


def test_a_runtime_result_carries_the_timings_it_was_given() -> None:
    timed = performance("int8", np.array([1.0, 2.0, 3.0, 4.0, 5.0]), {8: [4.0, 2.0], 64: [16.0]})
    document = RuntimeResult(Runtime.ONNXRUNTIME, performance=timed).to_json()
    latency = document["latency_ms"]
    assert (latency["batch_size"], latency["p50"], latency["mean"], latency["samples"]) == (1, 3.0, 3.0, 5)
    assert latency["p90"] == pytest.approx(np.percentile([1, 2, 3, 4, 5], 90))
    assert latency["p99"] == pytest.approx(np.percentile([1, 2, 3, 4, 5], 99))
    assert [row["batch_size"] for row in document["throughput"]] == [8, 64]
    assert document["throughput"][0]["images_per_s"] == pytest.approx(8 * 1000 / 3.0)  # pooled p50: 3 ms
    assert document["throughput"][1]["batch_p50_ms"] == 16.0
    assert document["throughput"][0]["images_per_s_rounds"] == pytest.approx({"value": 8000 / 3, "min": 2000, "max": 4000})
    # The keys docs/report-schema.md lists for latency_ms and each throughput entry.
    assert set(latency) == {"batch_size", "p50", "p90", "p99", "mean", "p50_rounds", "samples", "warmup"}
    assert latency["p50_rounds"] == {"value": 3.0, "min": 3.0, "max": 3.0} and latency["warmup"] == 0
    assert set(document["throughput"][0]) == {"batch_size", "images_per_s", "images_per_s_rounds", "batch_p50_ms",
                                              "batches", "warmup_batches"}
    assert document["throughput"][1]["batches"] == 40 and document["throughput"][1]["warmup_batches"] == 0
    stated = RuntimeResult(Runtime.ONNXRUNTIME, conditions={"runtime": "onnxruntime"}).to_json()
    assert stated["conditions"] == {"runtime": "onnxruntime"}


def _report(int8_ms: float, int8_batch_ms: float, openvino: bool = False):
    fp32 = {Runtime.ONNXRUNTIME: performance("fp32", np.full(30, 10.0), {64: [10.0] * 3})}
    int8 = {Runtime.ONNXRUNTIME: performance("int8", np.full(30, int8_ms), {64: [int8_batch_ms] * 3})}
    if openvino:
        int8[Runtime.OPENVINO] = performance("int8", np.full(30, 2.5), {64: [20.0] * 3})
    return fake_report({"fp32": fp32, "int8": int8}, [64])


def test_speed_ratios_against_fp32_are_time_over_time_and_images_over_images() -> None:
    ratios = ratios_vs_float(_report(int8_ms=20.0, int8_batch_ms=5.0), Runtime.ONNXRUNTIME)
    assert list(ratios) == ["int8"]  # fp32 against itself is left out
    assert ratios["int8"].latency_p50.value == pytest.approx(2.0)  # int8 takes twice fp32's time at batch 1
    assert ratios["int8"].throughput[64].value == pytest.approx(2.0)  # and does twice its images/s at batch 64
    answer = report_answer(_report(int8_ms=20.0, int8_batch_ms=5.0))
    assert answer.verdict.latency_ratio.value == pytest.approx(2.0)
    assert answer.verdict.throughput_ratio.value == pytest.approx(2.0)
    assert answer.verdict.at_batch_1.value == "does not pay" and answer.verdict.at_throughput_batch.value == "pays"


def test_speed_ratios_across_runtimes_keep_the_float_model_and_mark_the_untimed() -> None:
    report = _report(int8_ms=5.0, int8_batch_ms=40.0, openvino=True)
    across = ratios_vs_float(report, Runtime.OPENVINO, Runtime.ONNXRUNTIME)
    assert list(across) == ["fp32", "int8"]
    assert across["fp32"].latency_p50 is None and across["fp32"].throughput == {64: None}  # fp32 not on OpenVINO
    assert across["int8"].latency_p50.value == pytest.approx(0.25)  # 2.5 ms on OpenVINO against 10 ms
    assert across["int8"].throughput[64].value == pytest.approx(0.5)  # 20 ms against 10 ms a batch
    same = ratios_vs_float(report, Runtime.OPENVINO)
    assert same["int8"].latency_p50 is None  # the float model has no OpenVINO timing to compare with
    labels = [(series.label, series.model_index, series.runtime_index) for series in measured_series(report)]
    assert labels == [("fp32 · onnxruntime", 0, 0), ("int8 · onnxruntime", 1, 0), ("int8 · openvino", 1, 1)]
    assert [series.label for series in measured_series(_report(5.0, 5.0))] == ["fp32", "int8"]


def test_the_answer_widens_by_fp32s_own_noise_floor_and_states_the_change_in_json() -> None:
    twin = performance("fp32 (second session)", np.full(30, 11.0), {64: [10.0] * 3})
    fp32 = dataclasses.replace(performance("fp32", np.full(30, 10.0), {64: [10.0] * 3}), second_session=twin)
    int8 = performance("int8", np.full(30, 5.0), {64: [5.0] * 3})
    report = fake_report({"fp32": {Runtime.ONNXRUNTIME: fp32}, "int8": {Runtime.ONNXRUNTIME: int8}}, [64])
    verdict = report_answer(report).verdict
    assert verdict.noise_floor.value == pytest.approx(1.1)  # the second fp32 session over the first
    assert (verdict.latency_ratio.low, verdict.latency_ratio.high) == pytest.approx((0.5 / 1.1, 0.5 * 1.1))
    document = report_answer(report).to_json()
    assert set(document) == {"line", "int8_top1_error", "fp32_top1_error", "error_change_pp", "speed_runtime", "speed"}
    assert document["error_change_pp"] == pytest.approx(100 * (document["int8_top1_error"] - document["fp32_top1_error"]))


def test_the_answer_reads_the_largest_batch_and_the_gate_runtime() -> None:
    fp32 = {Runtime.ONNXRUNTIME: performance("fp32", np.full(30, 10.0), {8: [10.0] * 3, 64: [10.0] * 3})}
    int8 = {Runtime.ONNXRUNTIME: performance("int8", np.full(30, 10.0), {8: [40.0] * 3, 64: [5.0] * 3})}
    report = fake_report({"fp32": fp32, "int8": int8}, [64, 8])
    answer = report_answer(report)
    assert answer.verdict.batch_size == 64 and answer.verdict.throughput_ratio.value == pytest.approx(2.0)
    document = answer.to_json()
    assert document["speed_runtime"] == "onnxruntime" and document["speed"]["throughput_batch_size"] == 64
    assert document["int8_top1_error"] == answer.int8_error and document["fp32_top1_error"] == answer.float_error
    no_latency = dataclasses.replace(report.models[1].runtimes[Runtime.ONNXRUNTIME],
                                     performance=dataclasses.replace(int8[Runtime.ONNXRUNTIME], latency=None))
    untimed = dataclasses.replace(report, models=[report.models[0], dataclasses.replace(
        report.models[1], runtimes={Runtime.ONNXRUNTIME: no_latency})])
    assert report_answer(untimed).verdict is None
    assert report_answer(untimed).to_json()["speed"] is None


def test_model_entries_name_the_references(tmp_path: Path) -> None:
    entries = model_entries(Path("m/mnist-12.onnx"), Path("out/int8.onnx"),
                            ["zoo/zoo-mnist-12-int8.onnx", "mine=x/a.onnx", "zoo/zoo-mnist-12-int8.onnx"])
    assert [(e.name, e.role) for e in entries] == [
        ("fp32", Role.FLOAT), ("int8", Role.INT8), ("zoo-int8", Role.REFERENCE), ("mine", Role.REFERENCE),
        ("zoo-int8-2", Role.REFERENCE)]
    assert entries[:2] == [ModelEntry("fp32", Role.FLOAT, Path("m/mnist-12.onnx")),
                           ModelEntry("int8", Role.INT8, Path("out/int8.onnx"))]
    assert entries[3] == ModelEntry("mine", Role.REFERENCE, Path("x/a.onnx"))
    thrice = model_entries(Path("f.onnx"), Path("i.onnx"), ["r.onnx", "r.onnx", "r.onnx", "n=d/a=b.onnx"])
    assert [(e.name, e.path) for e in thrice[2:]] == [("r", Path("r.onnx")), ("r-2", Path("r.onnx")),
                                                      ("r-3", Path("r.onnx")), ("n", Path("d/a=b.onnx"))]
    # What is left of the stem loses its separators at the ends; a doubled one inside becomes one.
    assert model_entries(Path("mnist-12.onnx"), Path("i.onnx"), ["z/mnist-12_q8.onnx"])[2].name == "q8"
    assert model_entries(Path("mnist-12.onnx"), Path("i.onnx"), ["z/mnist-12_QX.onnx"])[2].name == "QX"
    assert model_entries(Path(""), Path("i.onnx"), ["z/a--b.onnx"])[2].name == "a--b"  # no float stem: kept as is
    odd = tmp_path / "a=b.onnx"
    odd.write_bytes(b"")
    assert model_entries(Path("f.onnx"), Path("i.onnx"), [str(odd)])[2] == ModelEntry("a=b", Role.REFERENCE, odd)
    assert model_entries(Path("f.onnx"), Path("i.onnx"), ["f.onnx"])[2].name == "f"  # nothing left: its stem
    for bad in ("=x.onnx", "name="):
        with pytest.raises(InputError, match=r"expected PATH or NAME=PATH"):
            model_entries(Path("f.onnx"), Path("i.onnx"), [bad])
    assert other_scale(PixelScale.UNIT) is PixelScale.RAW and other_scale(PixelScale.RAW) is PixelScale.UNIT


def _documented_keys(heading: str) -> set[str]:
    """The keys of the table under ``heading`` in docs/report-schema.md (a row may name several: `a`, `b`)."""
    section = SCHEMA_DOC.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {key for row in rows for key in re.findall(r"`([^`]+)`", row)}


def test_a_model_in_report_json_has_the_documented_keys_and_values() -> None:
    report = _report(int8_ms=20.0, int8_batch_ms=5.0)
    model = report.models[1]
    document = model.to_json()
    assert set(document) == _documented_keys("### `models[]`")
    assert (document["name"], document["role"], document["path"]) == ("int8", "int8", "int8.onnx")
    assert (document["sha256"], document["size_bytes"], document["op_types"]) == ("0" * 64, 1000, {})
    assert document["precisions"] == {"int8": [], "fp32": [], "convert": []}
    assert document["declared_preprocessing"] is None
    assert document["accuracy"] == model.accuracy.to_json()
    assert document["accuracy_other_scale"] == model.accuracy_other_scale.to_json()
    assert document["runtimes"] == {"onnxruntime": model.runtimes[Runtime.ONNXRUNTIME].to_json()}
    assert set(document["runtimes"]["onnxruntime"]) == _documented_keys("#### `models[].runtimes.<runtime>`")
    assert set(document["accuracy"]) == _documented_keys("#### `accuracy` / `accuracy_other_scale`")
    assert model.performance(Runtime.OPENVINO) is None
    assert model.performance(Runtime.ONNXRUNTIME) is model.runtimes[Runtime.ONNXRUNTIME].performance


def test_a_class_is_labelled_with_its_name_unless_the_name_starts_with_its_number() -> None:
    report = _report(5.0, 5.0)
    fashion = dataclasses.replace(report, class_names=("T-shirt/top", "Trouser", "Ankle boot"))
    assert [fashion.class_label(k) for k in range(4)] == ["0 T-shirt/top", "1 Trouser", "2 Ankle boot", "3"]
    digits = dataclasses.replace(report, class_names=("0 - zero", "1 - one"))
    assert [digits.class_label(k) for k in range(3)] == ["0", "1", "2"]
    # The number is the name's first space-separated word; a trailing space is not printed.
    odd = dataclasses.replace(report, class_names=("0\tzero", "Bag "))
    assert [odd.class_label(k) for k in range(2)] == ["0 0\tzero", "1 Bag"]


def test_the_package_version_is_the_installed_distributions() -> None:
    assert package_version() == importlib.metadata.version("mnist-int8-tuning")
