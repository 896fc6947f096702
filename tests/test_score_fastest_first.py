"""Objective latency scores its candidates fastest first and stops where none can win (score_fastest_first,
tuning/search/candidates.py).

The candidates are real ONNX models built here with onnx.helper (a small MLP, tests/tiny_models.py)
and scored by onnxruntime on images whose labels are the MLP's own predictions, computed a second
time with numpy. A copy of the MLP (other bytes, same function) is then exactly right on every image;
a copy whose last bias forces one class is right exactly on the images labelled with that class.
Which candidates are scored, in which order, and what each trial records follow from those numbers
and the screening ratios the test sets; no INC run and no timing is involved.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import project_config
from onnx import numpy_helper
from tiny_models import mlp

from tuning.measure.runtimes import make_session
from tuning.search.candidates import score_fastest_first
from tuning.search.timing import SCREEN_FACTOR
from tuning.search.trials import Trial, record_trial

pytestmark = pytest.mark.fast

IMAGES = np.random.default_rng(7).normal(0.5, 0.5, (200, 1, 28, 28)).astype(np.float32)


def forward(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    """The MLP of tiny_models.mlp in numpy: the class each image is given."""
    weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    hidden = np.maximum(images.reshape(len(images), -1) @ weights["w1"] + weights["b1"], 0)
    return np.argmax(hidden @ weights["w2"] + weights["b2"], axis=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    return onnx.load(str(mlp(tmp_path_factory.mktemp("mlp") / "mlp.onnx", seed=3)))


def same_function(source: onnx.ModelProto, tag: str) -> onnx.ModelProto:
    """Another file (its doc string differs) computing exactly what ``source`` computes."""
    copy = onnx.ModelProto()
    copy.CopyFrom(source)
    copy.doc_string = tag
    return copy


def always(source: onnx.ModelProto, label: int, tag: str) -> onnx.ModelProto:
    """A copy whose output bias makes ``label`` win on every image."""
    copy = same_function(source, tag)
    bias = next(tensor for tensor in copy.graph.initializer if tensor.name == "b2")
    values = numpy_helper.to_array(bias).copy()
    values[label] = 1e6
    bias.CopyFrom(numpy_helper.from_array(values, "b2"))
    return copy


class Evaluator:
    """Top-1 accuracy with onnxruntime against the labels; records which models it scored, in order."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.scored: list[str] = []

    def __call__(self, model: onnx.ModelProto) -> float:
        self.scored.append(model.doc_string)
        session = make_session(model)
        logits = session.run(None, {session.get_inputs()[0].name: IMAGES})[0]
        return float(np.mean(np.argmax(logits, axis=1) == self.labels))


def unscored(index: int, same_model_as: int | None = None) -> Trial:
    """A trial as Candidates.make leaves it: how it was made, not yet scored."""
    return Trial(
        index=index,
        accuracy=None,
        meets_criterion=None,
        int8_nodes=(),
        fp32_nodes=(),
        quant_format="QDQ" if index % 2 else "QOperator",
        calibration_algorithm=("minmax", "kl", "percentile")[index % 3],
        fp32_fallback=(f"node{index}",),
        rewrites=(f"rewrite {index}",),
        same_model_as=same_model_as,
    )


@pytest.fixture
def setting(source: onnx.ModelProto, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = project_config(tmp_path)  # absolute criterion, tolerance 0.001
    labels = forward(source, IMAGES)
    rare = int(np.argmin(np.bincount(labels, minlength=10)))
    fp32 = record_trial(0, float(np.mean(forward(source, IMAGES) == labels)), source, [], config, source)
    return config, labels, rare, fp32


def test_scoring_goes_fastest_first_and_stops_past_the_screen_factor_of_the_first_passing_one(source, setting) -> None:
    config, labels, rare, fp32 = setting
    # Screening ratios chosen exact in binary: the first passing one is 0.5, so the limit is 0.625.
    limit = SCREEN_FACTOR * 0.5
    models = {
        1: same_function(source, "t1 passes, screened 0.75"),
        2: always(source, rare, "t2 fails, screened 0.25"),
        3: same_function(source, "t3 passes, screened 0.5"),
        4: same_function(source, "t4 passes, screened at the limit"),
        5: same_function(source, "t5 passes, screened just past the limit"),
        6: always(source, rare, "t6 fails, screened 0.25 too"),
    }
    screening = {1: 0.75, 2: 0.25, 3: 0.5, 4: limit, 5: np.nextafter(limit, 1.0), 6: 0.25}
    evaluate = Evaluator(labels)
    fp32 = replace(fp32, screening_ratio=1.0)  # what the baseline holds passes through, even fields set here
    trials = [fp32, *(unscored(i) for i in range(1, 7))]
    result = score_fastest_first(trials, models, screening, evaluate, config, source)

    # Fastest first, ties by index; the failing ones do not set the limit; the limit itself is within it.
    assert evaluate.scored == [models[i].doc_string for i in (2, 6, 3, 4)]
    assert result[0] == fp32
    assert [t.index for t in result] == list(range(7))
    rare_accuracy = float(np.mean(labels == rare))
    assert rare_accuracy < 1 - config.tuning.accuracy_criterion.tolerance
    for index in (2, 6):
        assert result[index].accuracy == pytest.approx(rare_accuracy) and result[index].meets_criterion is False
    for index in (3, 4):
        assert result[index].accuracy == 1.0 and result[index].meets_criterion is True
    for index in (1, 5):  # could not have won: not scored
        assert result[index].accuracy is None and result[index].meets_criterion is None
    for trial in result[1:]:
        assert trial.screening_ratio == screening[trial.index]
        made = ("quant_format", "calibration_algorithm", "fp32_fallback", "rewrites")
        assert [getattr(trial, field) for field in made] == [getattr(trials[trial.index], field) for field in made]
    # A scored trial's record is read from its own graph.
    scored_trial = result[3]
    assert scored_trial.fp32_nodes == record_trial(3, 1.0, models[3], [fp32], config, source).fp32_nodes
    assert scored_trial.model_sha256 == record_trial(3, 1.0, models[3], [fp32], config, source).model_sha256
    assert len({result[i].model_sha256 for i in (2, 3, 4, 6)}) == 4


def test_the_limit_is_set_by_the_first_passing_candidate_not_a_later_one(source, setting) -> None:
    config, labels, _, fp32 = setting
    models = {
        1: same_function(source, "t1 0.4"),
        2: same_function(source, "t2 0.5: within 1.25 x 0.4"),
        3: same_function(source, "t3 0.6: past 1.25 x 0.4, within 1.25 x 0.5"),
    }
    screening = {1: 0.4, 2: 0.5, 3: 0.6}
    evaluate = Evaluator(labels)
    result = score_fastest_first([fp32, *(unscored(i) for i in (1, 2, 3))], models, screening, evaluate, config, source)
    assert evaluate.scored == [models[1].doc_string, models[2].doc_string]
    assert result[3].accuracy is None


def test_with_no_candidate_passing_every_one_is_scored(source, setting) -> None:
    config, labels, rare, fp32 = setting
    models = {i: always(source, rare, f"t{i}") for i in (1, 2, 3)}
    screening = {1: 3.0, 2: 0.1, 3: 1.0}
    evaluate = Evaluator(labels)
    result = score_fastest_first([fp32, *(unscored(i) for i in (1, 2, 3))], models, screening, evaluate, config, source)
    assert evaluate.scored == ["t2", "t3", "t1"]
    assert [t.meets_criterion for t in result[1:]] == [False, False, False]


def test_a_candidate_is_judged_against_the_fp32_accuracy(source, setting) -> None:
    # fp32 recorded below the candidate's accuracy: every candidate passes, even the one forcing a class.
    config, labels, rare, fp32 = setting
    low = replace(fp32, accuracy=float(np.mean(labels == rare)))
    models = {1: always(source, rare, "t1")}
    result = score_fastest_first([low, unscored(1)], models, {1: 1.0}, Evaluator(labels), config, source)
    assert result[1].accuracy == low.accuracy and result[1].meets_criterion is True
    high = replace(fp32, accuracy=1.0)
    result = score_fastest_first([high, unscored(1)], models, {1: 1.0}, Evaluator(labels), config, source)
    assert result[1].meets_criterion is False


def test_a_duplicate_takes_its_originals_results_and_keeps_how_it_was_made(source, setting) -> None:
    config, labels, rare, fp32 = setting
    models = {1: same_function(source, "t1"), 2: always(source, rare, "t2"), 4: same_function(source, "t4 slow")}
    screening = {1: 0.5, 2: 0.5, 4: 2.0}
    trials = [fp32, unscored(1), unscored(2), unscored(3, same_model_as=1), unscored(4), unscored(5, same_model_as=4)]
    evaluate = Evaluator(labels)
    result = score_fastest_first(trials, models, screening, evaluate, config, source)
    assert evaluate.scored == ["t1", "t2"]  # a duplicate is never scored itself
    original, duplicate = result[1], result[3]
    assert (duplicate.index, duplicate.same_model_as) == (3, 1)
    assert duplicate.accuracy == original.accuracy == 1.0 and duplicate.meets_criterion is True
    assert duplicate.model_sha256 == original.model_sha256 and duplicate.fp32_nodes == original.fp32_nodes
    assert duplicate.screening_ratio == screening[1]
    made = ("quant_format", "calibration_algorithm", "fp32_fallback", "rewrites")
    assert [getattr(duplicate, field) for field in made] == [getattr(trials[3], field) for field in made]
    assert duplicate.calibration_algorithm != original.calibration_algorithm
    # The duplicate of a candidate screened out is not scored either, and says whose ratio it has.
    assert result[5].accuracy is None and result[5].same_model_as == 4 and result[5].screening_ratio == 2.0
    assert result[5].fp32_fallback == ("node5",)


def test_scoring_stops_once_enough_candidates_pass(source, setting) -> None:
    config, labels, rare, fp32 = setting
    models = {1: same_function(source, "t1 0.5"), 2: always(source, rare, "t2 0.55 fails"),
              3: same_function(source, "t3 0.6"), 4: same_function(source, "t4 0.61")}  # fmt: skip
    screening = {1: 0.5, 2: 0.55, 3: 0.6, 4: 0.61}
    evaluate = Evaluator(labels)
    trials = [fp32, *(unscored(i) for i in (1, 2, 3, 4))]
    result = score_fastest_first(trials, models, screening, evaluate, config, source, enough=2)
    # A failing candidate does not count towards enough; the third passing one is not scored.
    assert evaluate.scored == ["t1 0.5", "t2 0.55 fails", "t3 0.6"]
    assert result[4].accuracy is None
    # Scored again, a trial keeps its accuracy: only the one left is scored now.
    again = score_fastest_first(result, models, screening, evaluate, config, source)
    assert evaluate.scored[3:] == ["t4 0.61"] and again[3].accuracy == result[3].accuracy
