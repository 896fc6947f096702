"""Which candidates objective latency makes (tuning/search/plan.py): the compute nodes and their order, the grid,
the choice between grid and greedy, and the greedy search's five stages, in process.

The searches run on a real :class:`~tuning.search.candidates.Candidates` over a 4-layer MLP built here. INC's
``quantization.fit`` is the one step replaced, by onnxruntime's own static quantizer (``quantize_static``), asked
for the same format, calibration method and excluded nodes on the same calibration batches, so every candidate is
a real int8 graph that onnxruntime loads and whose precisions tuning/graph/nodes.py reads. The timing is
controlled: every call of a model takes the sum of its compute nodes' costs in the test's tables (1 ms in fp32, a
per-format int8 cost), so which single fallback is significantly faster is known to the test (each is more than
15 % faster or slower, far from the 10 % margin). The accuracy is the test's too: the fp32 accuracy less a loss
per node left in int8, plus a bonus per calibration algorithm. Which candidates each stage must make is written
out here from the rule in plan.py's docstring.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import project_config
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantType, quantize_static
from onnxruntime.quantization import QuantFormat as OrtFormat

from tuning.config.enums import CalibrationAlgorithm, LatencySearch, QuantFormat
from tuning.data.datasets import LabelledImages
from tuning.graph.nodes import SourcePrecision, source_precisions
from tuning.inc.mapping import CandidateSpec
from tuning.measure.benchmark import SECOND_SESSION, Performance, Timing
from tuning.search import candidates as candidates_module
from tuning.search.budget import Budget
from tuning.search.candidates import Candidates
from tuning.search.plan import (
    candidate_grid,
    compute_nodes,
    greedy_search,
    greedy_upper_bound,
    grid_search,
    resolved_search,
)

pytestmark = pytest.mark.fast

QDQ, QOP = QuantFormat.QDQ, QuantFormat.QOPERATOR
MINMAX, KL, PERCENTILE = CalibrationAlgorithm.MINMAX, CalibrationAlgorithm.KL, CalibrationAlgorithm.PERCENTILE
CALLS = 20
IMAGES = np.random.default_rng(1).uniform(0, 1, (16, 1, 28, 28)).astype(np.float32)


def layers(widths: tuple[int, ...], names: list[str]) -> onnx.ModelProto:
    """Flatten, then one MatMul (named ``names[i]``, weight ``widths[i] x widths[i + 1]``) per layer, Relu between."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Flatten", ["pixels"], ["x0"], name="flatten")]
    weights = []
    for i, name in enumerate(names):
        last = i == len(names) - 1
        weights.append(numpy_helper.from_array(rng.normal(0, 0.3, widths[i : i + 2]).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [f"x{i}", f"w{i}"], ["logits" if last else f"m{i}"], name=name))
        if not last:
            nodes.append(helper.make_node("Relu", [f"m{i}"], [f"x{i + 1}"], name=f"relu{i}"))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", widths[-1]])], initializer=weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


# Graph order fcA..fcD; by fewest multiply-adds per output (the weight's rows): fcD (7), fcC (9), fcB (12), fcA (784).
MLP4 = layers((784, 12, 9, 7, 10), ["fcA", "fcB", "fcC", "fcD"])
ORDER = ["fcD", "fcC", "fcB", "fcA"]


def config_for(tmp_path: Path, **overrides: Any):
    return project_config(
        tmp_path, **{"tuning.latency.rounds": 2, "tuning.latency.warmup": 1, "tuning.latency.iterations": 1,
                     "tuning.latency.search": "greedy", "tuning.max_trials": 100, **overrides},
    )  # fmt: skip


class Reader(CalibrationDataReader):
    def __init__(self, loader) -> None:
        self.batches = iter([{"pixels": images} for images, _ in loader])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


# onnxruntime's Entropy calibration makes minmax's very bytes on these MLPs (a duplicate, not a candidate of its own),
# so kl is stood in for by another percentile: each algorithm then makes a model of its own, as INC's do.
METHOD = {
    MINMAX: (CalibrationMethod.MinMax, {}),
    KL: (CalibrationMethod.Percentile, {"CalibPercentile": 99.9}),
    PERCENTILE: (CalibrationMethod.Percentile, {}),
}
REFUSED = "org.example.refused"  # a domain onnxruntime does not know: a graph holding one of its ops does not load


def onnxruntime_fit(refuse: Callable[[CandidateSpec], bool] | None = None):
    """A stand-in for tuning.inc.fit.fit: onnxruntime's static quantizer makes the candidate (``inc_conf`` is the
    CandidateSpec, see :func:`searching`). The candidates ``refuse`` picks end in an op onnxruntime cannot load, as
    OpenVINO refuses some QOperator graphs."""

    def fit(model, spec: CandidateSpec, workspace: Path, *, seed, timeout_s, what, calibration_loader):
        workspace.mkdir(parents=True, exist_ok=True)
        source, made = workspace / "source.onnx", workspace / "made.onnx"
        onnx.save(model, str(source))
        quantize_static(
            str(source), str(made), Reader(calibration_loader),
            quant_format=OrtFormat.QDQ if spec.quant_format is QDQ else OrtFormat.QOperator,
            calibrate_method=METHOD[spec.calibration_algorithm][0], extra_options=METHOD[spec.calibration_algorithm][1],
            nodes_to_exclude=list(spec.fp32_fallback),
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
        quantized = onnx.load(str(made))
        if refuse is not None and refuse(spec):
            output = quantized.graph.output[0].name
            next(node for node in quantized.graph.node if output in node.output).output[:] = ["before refused"]
            quantized.graph.node.append(helper.make_node("Refused", ["before refused"], [output], domain=REFUSED))
            quantized.opset_import.append(helper.make_opsetid(REFUSED, 1))
        return SimpleNamespace(model=quantized)

    return fit


def format_of(model: onnx.ModelProto) -> QuantFormat:
    return QOP if any(node.op_type == "QLinearMatMul" for node in model.graph.node) else QDQ


def controlled_measure(source: onnx.ModelProto, int8_ms: dict[QuantFormat, dict[str, float]], timed: list[str]):
    """A stand-in for tuning.measure.benchmark.measure: each call of a model takes, per compute node, 1 ms in fp32 or
    ``int8_ms[its format][node]`` in int8; fp32 gets its A/A twin, the same durations."""

    def cost(model: onnx.ModelProto) -> float:
        precisions = source_precisions(source, model)
        table = int8_ms[format_of(model)]
        return sum(table[name] if precisions[name] is SourcePrecision.INT8 else 1.0 for name in table)

    def measure(targets, images, settings, session, label="benchmark", latency=True, throughput_batch_sizes=None):
        sizes = settings.batch_sizes if throughput_batch_sizes is None else throughput_batch_sizes
        timed.extend(target.name for target in targets)

        def performance(name: str, ms: float, twin: Performance | None = None) -> Performance:
            def rounds(batch: int) -> tuple[np.ndarray, ...]:
                return tuple(np.full(CALLS, ms * batch) for _ in range(settings.rounds))

            throughput = tuple(Timing(batch, 0, rounds(batch)) for batch in sizes)
            return Performance(name, Timing(1, 0, rounds(1)), throughput, {"runtime": "onnxruntime"}, twin)

        first = targets[0]
        return {first.name: performance(first.name, cost(first.model), performance(SECOND_SESSION.format(name=first.name), cost(first.model)))} | {
            target.name: performance(target.name, cost(target.model)) for target in targets[1:]
        }  # fmt: skip

    return measure


class RecordingBudget(Budget):
    """The budget, recording every total the search tells it to expect."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected: list[int] = []

    def expect(self, total: int) -> None:
        self.expected.append(total)
        super().expect(total)


FP32_ACCURACY = 0.99


@dataclasses.dataclass
class Search:
    candidates: Candidates
    budget: RecordingBudget
    scored: list[int]  # the trials evaluated, in order
    timed: list[str]

    def made(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(t.quant_format, t.calibration_algorithm, t.fp32_fallback) for t in self.candidates.trials[1:]]

    def stages(self) -> list[tuple[str, int, int, int]]:
        return [(s.name, s.planned, s.made, len(s.not_made)) for s in self.budget.stages]


def searching(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    model: onnx.ModelProto,
    int8_ms: dict[QuantFormat, dict[str, float]],
    loss: dict[str, float] | None = None,
    bonus: dict[Any, float] | None = None,
    refuse: Callable[[CandidateSpec], bool] | None = None,
    fp32_accuracy: float = FP32_ACCURACY,
    **overrides: Any,
) -> Search:
    """A Candidates over ``model`` whose candidates onnxruntime makes, timed by the tables and scored by ``loss`` (per
    compute node computing in int8) and ``bonus`` (per calibration algorithm, or per algorithm and format where given);
    none: every candidate scores 0.99."""
    config = config_for(tmp_path, **overrides)
    monkeypatch.setattr(candidates_module, "inc_config", lambda config, requested, spec: spec)
    monkeypatch.setattr(candidates_module, "fit", onnxruntime_fit(refuse))
    loss, bonus = loss or {}, bonus or {}
    found: list[Candidates] = []
    scored: list[int] = []

    def evaluate(candidate: onnx.ModelProto) -> float:
        if not found:
            return fp32_accuracy  # the fp32 model, scored as the search starts
        index = next(i for i, made in found[0].models.items() if made is candidate)
        scored.append(index)
        trial = found[0].trials[index]
        precisions = source_precisions(model, candidate)
        lost = sum(value for node, value in loss.items() if precisions[node] is SourcePrecision.INT8)
        algorithm, quant_format = CalibrationAlgorithm(trial.calibration_algorithm), QuantFormat(trial.quant_format)
        return fp32_accuracy - lost + bonus.get((algorithm, quant_format), bonus.get(algorithm, 0.0))

    timed: list[str] = []
    budget = RecordingBudget(config.tuning.max_trials, config.tuning.timeout_s, lambda line: None, expected=1)
    calibration = LabelledImages(IMAGES, np.zeros(len(IMAGES), dtype=np.int64))
    found.append(
        Candidates(model, calibration, evaluate, IMAGES[:2], config, tmp_path / "workspace", tmp_path / "model.onnx",
                   budget, controlled_measure(model, int8_ms, timed))  # fmt: skip
    )
    return Search(found[0], budget, scored, timed)


# Alone in fp32 (1 ms), in QDQ: fcD, fcC and fcA each make the model 0.84x the time of every node int8 (6.2 ms), fcB
# 1.13x. In QOperator: fcD and fcB 0.77x (of 4.4 ms), fcC and fcA 1.18x.
INT8_MS = {
    QDQ: {"fcD": 2.0, "fcC": 2.0, "fcB": 0.2, "fcA": 2.0},
    QOP: {"fcD": 2.0, "fcC": 0.2, "fcB": 2.0, "fcA": 0.2},
}


def test_the_tables_decide_as_the_comment_says():
    """The controlled timing's single-fallback ratios, computed from the tables alone."""
    for quant_format, faster in ((QDQ, {"fcD", "fcC", "fcA"}), (QOP, {"fcD", "fcB"})):
        every_int8 = sum(INT8_MS[quant_format].values())
        ratios = {node: (every_int8 - ms + 1.0) / every_int8 for node, ms in INT8_MS[quant_format].items()}
        assert {node for node, ratio in ratios.items() if ratio < 0.85} == faster
        assert all(ratio > 1.1 for node, ratio in ratios.items() if node not in faster)


def all_nodes_int8(formats=(QDQ, QOP), algorithm=MINMAX) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.value, algorithm.value, ()) for f in formats]


def singles(formats=(QDQ, QOP), nodes=ORDER) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.value, "minmax", (node,)) for node in nodes for f in formats]


def test_greedy_makes_every_node_int8_then_each_single_then_the_sets_of_the_significantly_faster(monkeypatch, tmp_path):
    search = searching(monkeypatch, tmp_path, MLP4, INT8_MS)
    greedy_search(search.candidates)
    # Stage 3: per format the nodes significantly faster alone, in compute_nodes order, one added at a time; by
    # size, then format (QDQ: fcD, fcC, fcA, so 2 sets; QOperator: fcD, fcB, 1 set).
    sets = [("QDQ", "minmax", ("fcD", "fcC")), ("QOperator", "minmax", ("fcD", "fcB")), ("QDQ", "minmax", ("fcD", "fcC", "fcA"))]
    assert search.made() == all_nodes_int8() + singles() + sets
    assert search.stages() == [
        ("every node int8", 2, 2, 0),
        ("each node alone in fp32", 8, 8, 0),
        ("fallback sets of the nodes significantly faster alone, one node added at a time", 3, 3, 0),
    ]
    # The bound for 4 nodes, 2 formats, 3 algorithms; then what is left once stage 2 decided (the sets, and stages 4
    # and 5 at most: per format 2 other algorithms and 3 accuracy sets); then, as something passed, what was made.
    assert search.budget.expected == [2 * (1 + 4 + 2 + 2 + 3), 10 + 3 + 2 * (2 + 3), 13]
    assert search.candidates.passing()  # every candidate scores 0.99: stages 4 and 5 are not needed


def test_the_configured_format_and_algorithm_come_first(monkeypatch, tmp_path):
    search = searching(monkeypatch, tmp_path, MLP4, INT8_MS, **{"quantization.format": "QOperator",
                                                                "quantization.calibration_algorithm": "kl"})  # fmt: skip
    greedy_search(search.candidates)
    sets = [("QOperator", "kl", ("fcD", "fcB")), ("QDQ", "kl", ("fcD", "fcC")), ("QDQ", "kl", ("fcD", "fcC", "fcA"))]
    assert search.made() == all_nodes_int8((QOP, QDQ), KL) + [(t[0], "kl", t[2]) for t in singles((QOP, QDQ))] + sets


# Accuracy lost by each node computing in int8, gained by each calibration algorithm: the fp32 accuracy is 0.99 and
# the criterion absolute 0.001, so every node int8 loses 0.0073 and fails; ordered unlike compute_nodes and speed.
LOSS = {"fcD": 0.0002, "fcC": 0.0001, "fcB": 0.004, "fcA": 0.003}
BONUS = {MINMAX: 0.0, KL: 0.001, PERCENTILE: 0.002}


def test_when_nothing_passes_the_best_algorithm_then_sets_by_accuracy_gain_are_made_until_one_passes(monkeypatch, tmp_path):
    search = searching(monkeypatch, tmp_path, MLP4, INT8_MS, LOSS, BONUS)
    greedy_search(search.candidates)
    made = search.made()
    trials = search.candidates.trials
    assert not any(trial.meets_criterion for trial in trials[1:18])  # stages 1-4: the best loses 0.0031 (fcB alone)
    # Stage 4: every node int8 with kl, then percentile, in both formats: percentile (0.9847) is the best.
    assert made[13:17] == all_nodes_int8(algorithm=KL) + all_nodes_int8(algorithm=PERCENTILE)
    # Stage 5, with percentile (not the configured minmax: from one node on): the nodes by accuracy gain alone
    # (fcB 0.004, fcA 0.003, fcD, fcC), at most 3; per format until one passes: fcB alone loses 0.0033 - 0.002.
    assert made[17:] == [
        ("QDQ", "percentile", ("fcB",)), ("QDQ", "percentile", ("fcB", "fcA")),
        ("QOperator", "percentile", ("fcB",)), ("QOperator", "percentile", ("fcB", "fcA")),
    ]  # fmt: skip
    assert [trial.meets_criterion for trial in trials[18:]] == [False, True, False, True]
    assert search.stages()[3:] == [
        ("other calibration algorithms, every node int8", 4, 4, 0),
        ("accuracy-first fallback sets, until one meets the criterion", 6, 4, 0),
    ]
    assert search.budget.expected == [24, 23, 21]
    assert sorted(search.candidates.passing()) == [19, 21]


def test_with_the_configured_algorithm_best_the_accuracy_sets_start_at_two_nodes(monkeypatch, tmp_path):
    bonus = {MINMAX: 0.0, KL: -0.001, PERCENTILE: -0.002}
    search = searching(monkeypatch, tmp_path, MLP4, INT8_MS, LOSS, bonus)
    greedy_search(search.candidates)
    # Stage 2 made the single fallbacks with minmax already: stage 5 plans (fcB, fcA), (fcB, fcA, fcD) per format;
    # (fcB, fcA) loses 0.0003 and passes in each.
    assert search.made()[17:] == [("QDQ", "minmax", ("fcB", "fcA")), ("QOperator", "minmax", ("fcB", "fcA"))]
    assert search.stages()[4] == ("accuracy-first fallback sets, until one meets the criterion", 4, 2, 0)


def test_an_algorithm_is_judged_by_its_best_format(monkeypatch, tmp_path):
    """kl scores best in QOperator only (every node int8: 0.9857, against percentile's 0.9847 in both formats and
    kl's 0.9837 in QDQ): the best of each algorithm's formats decides, so stage 5 uses kl."""
    bonus = BONUS | {(KL, QOP): 0.003}
    search = searching(monkeypatch, tmp_path, MLP4, INT8_MS, LOSS, bonus)
    greedy_search(search.candidates)
    assert search.made()[17:] == [
        ("QDQ", "kl", ("fcB",)), ("QDQ", "kl", ("fcB", "fcA")), ("QOperator", "kl", ("fcB",)),
    ]  # fmt: skip


def test_one_compute_node_is_never_kept_in_fp32(monkeypatch, tmp_path):
    one = layers((784, 10), ["fc"])
    search = searching(monkeypatch, tmp_path, one, {QDQ: {"fc": 0.5}, QOP: {"fc": 0.5}}, {"fc": 0.01}, BONUS)
    greedy_search(search.candidates)
    # Nothing passes (0.01 lost, at most 0.002 won back): stage 4 only; stages 2, 3 and 5 plan nothing.
    assert search.made() == all_nodes_int8() + all_nodes_int8(algorithm=KL) + all_nodes_int8(algorithm=PERCENTILE)
    assert [name for name, *_ in search.stages()] == ["every node int8", "other calibration algorithms, every node int8"]
    assert search.budget.expected == [2 * 3, 2 + 2 * 2, 6]


def test_a_format_the_runtime_refuses_is_neither_timed_against_nor_scored(monkeypatch, tmp_path):
    search = searching(monkeypatch, tmp_path, MLP4, INT8_MS, LOSS, BONUS, refuse=lambda spec: spec.quant_format is QOP)
    greedy_search(search.candidates)
    candidates = search.candidates
    refused = {index for index, trial in enumerate(candidates.trials) if trial.quant_format == "QOperator"}
    assert refused and refused <= set(candidates.unloadable) and not refused & set(search.scored)
    # QDQ's sets as before; QOperator's singles were compared with nothing, so it has no set.
    assert search.made()[10:12] == [("QDQ", "minmax", ("fcD", "fcC")), ("QDQ", "minmax", ("fcD", "fcC", "fcA"))]
    # Stage 5 with percentile, the best of the scored (QDQ) candidates. QOperator's are made but cannot load, so
    # none of them ends its format's loop: all 3 are made.
    assert search.made()[16:] == [
        ("QDQ", "percentile", ("fcB",)), ("QDQ", "percentile", ("fcB", "fcA")),
        ("QOperator", "percentile", ("fcB",)), ("QOperator", "percentile", ("fcB", "fcA")),
        ("QOperator", "percentile", ("fcB", "fcA", "fcD")),
    ]  # fmt: skip


def test_a_candidate_scoring_0_that_meets_the_criterion_ends_its_format_s_accuracy_sets(monkeypatch, tmp_path):
    """The edge of stage 5's stop: an accuracy of 0 is a score (not the -1 of a candidate never scored). A model
    right on 5 of 10,000 images, an absolute tolerance of 0.001, and a runtime that loads only candidates keeping
    two nodes or more in fp32: stages 1-4 load nothing, and stage 5's first set (fcD, fcC) scores 0 and passes."""
    search = searching(
        monkeypatch, tmp_path, MLP4, INT8_MS, {"fcB": 0.0005}, refuse=lambda spec: len(spec.fp32_fallback) < 2,
        fp32_accuracy=0.0005,
    )
    greedy_search(search.candidates)
    assert search.made()[14:] == [("QDQ", "minmax", ("fcD", "fcC")), ("QOperator", "minmax", ("fcD", "fcC"))]
    assert [search.candidates.trials[index].accuracy for index in (15, 16)] == [0.0, 0.0]
    assert search.stages()[-1] == ("accuracy-first fallback sets, until one meets the criterion", 4, 2, 0)


def test_a_cut_budget_leaves_the_planned_candidates_unmade_and_reads_no_accuracy_of_them(monkeypatch, tmp_path):
    search = searching(monkeypatch, tmp_path, MLP4, INT8_MS, LOSS, BONUS, **{"tuning.max_trials": 1})
    greedy_search(search.candidates)
    assert search.made() == [("QDQ", "minmax", ())]
    # Nothing else made: no accuracy but QDQ's every node int8 (minmax) is known, so minmax stays the best, and
    # the accuracy sets start at two nodes in compute_nodes order (every gain unknown: -1).
    assert search.stages() == [
        ("every node int8", 2, 1, 1),
        ("each node alone in fp32", 8, 0, 8),
        ("other calibration algorithms, every node int8", 4, 0, 4),
        ("accuracy-first fallback sets, until one meets the criterion", 4, 0, 4),
    ]
    assert search.budget.stages[3].not_made == [
        "QDQ, minmax, fp32: fcD, fcC", "QDQ, minmax, fp32: fcD, fcC, fcB",
        "QOperator, minmax, fp32: fcD, fcC", "QOperator, minmax, fp32: fcD, fcC, fcB",
    ]  # fmt: skip
    assert search.budget.expected == [24, 1 + 0 + 2 * (2 + 3), 1]


# The grid on a 2-layer MLP: fc2 (16 rows) before fc1 (784).
MLP2 = layers((784, 16, 10), ["fc1", "fc2"])


def test_with_two_compute_nodes_each_is_tried_alone_and_no_set_is_made(monkeypatch, tmp_path):
    # Alone in fp32, fc2 makes the model 0.6x the time of every node int8 (2.5 ms), in both formats; fc1 1.2x.
    search = searching(monkeypatch, tmp_path, MLP2, {QDQ: {"fc1": 0.5, "fc2": 2.0}, QOP: {"fc1": 0.5, "fc2": 2.0}})
    greedy_search(search.candidates)
    assert search.made() == all_nodes_int8() + singles(nodes=["fc2", "fc1"])  # a set of both would be every node
    assert [name for name, *_ in search.stages()] == ["every node int8", "each node alone in fp32"]
    assert search.budget.expected == [2 * (1 + 2 + 0 + 2 + 1), 6 + 0 + 2 * (2 + 1), 6]


def test_the_grid_makes_every_candidate_in_grid_order_then_scores_the_fastest_first(monkeypatch, tmp_path):
    int8_ms = {QDQ: {"fc1": 0.5, "fc2": 2.0}, QOP: {"fc1": 0.4, "fc2": 2.0}}
    search = searching(monkeypatch, tmp_path, MLP2, int8_ms, **{"tuning.latency.search": "grid"})
    grid_search(search.candidates)
    expected = [
        (f.value, a.value, fallback)
        for a in (MINMAX, KL, PERCENTILE) for fallback in [(), ("fc2",), ("fc1",)] for f in (QDQ, QOP)
    ]  # fmt: skip
    assert search.made() == expected
    assert search.stages() == [("grid", 18, 18, 0)] and search.budget.expected == [18]
    # Scored fastest first: fc2 alone in fp32, QOperator (1.4 ms), is the fastest distinct graph and passes.
    assert search.scored[0] == 4 and search.candidates.trials[4].fp32_fallback == ("fc2",)


def test_a_cut_grid_records_what_it_did_not_make(monkeypatch, tmp_path):
    search = searching(monkeypatch, tmp_path, MLP2, {QDQ: {"fc1": 0.5, "fc2": 2.0}, QOP: {"fc1": 0.4, "fc2": 2.0}},
                       **{"tuning.latency.search": "grid", "tuning.max_trials": 5})  # fmt: skip
    grid_search(search.candidates)
    assert search.stages() == [("grid", 18, 5, 13)] and search.budget.expected == [18]


# compute_nodes and the grid on graphs that are never run: only their structure is read.
def weight(name: str, *dims: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(dims, dtype=np.float32), name)


def structure(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "structure", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=initializers)  # fmt: skip
    return helper.make_model(graph)


def test_compute_nodes_fewest_multiply_adds_per_output_first_then_graph_order(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "wide"], ["c1"], name="conv_wide"),  # 8 x 5 x 5 = 200
        helper.make_node("Relu", ["c1"], ["r"], name="relu"),  # not a compute node
        helper.make_node("Conv", ["r", "narrow", "bias"], ["c2"], name="conv_narrow"),  # 1 x 3 x 3 = 9
        helper.make_node("MatMul", ["c2", "tall"], ["m1"], name="matmul"),  # the weight's rows: 30
        helper.make_node("Gemm", ["m1", "transposed"], ["g1"], name="gemm_t", transB=1),  # its columns: 20
        helper.make_node("Gemm", ["g1", "plain"], ["g2"], name="gemm"),  # rows: 40 (transB 0 by default)
        helper.make_node("Gemm", ["g2", "plain0"], ["g3"], name="gemm_0", transB=0),  # rows: 9, after conv_narrow
        helper.make_node("MatMul", ["g3", "g2"], ["m2"], name="computed"),  # no constant weight: last
        helper.make_node("MatMul", ["m2", "vector"], ["m3"], name="vector"),  # a 1-D weight: nothing known, last
        helper.make_node("Conv", ["m3"], ["m4"], name="no_weight"),  # no second input: last
        helper.make_node("MatMul", ["m4", "tall"], ["y"]),  # unnamed: INC addresses nodes by name
    ]
    initializers = [
        weight("wide", 4, 8, 5, 5), weight("narrow", 8, 1, 3, 3), weight("bias", 8), weight("tall", 30, 3),
        weight("transposed", 3, 20), weight("plain", 40, 3), weight("plain0", 9, 3), weight("vector", 7),
    ]  # fmt: skip
    model = structure(nodes, initializers)
    config = config_for(tmp_path)
    assert compute_nodes(model, config) == [
        "conv_narrow", "gemm_0", "gemm_t", "matmul", "gemm", "conv_wide", "computed", "vector", "no_weight"
    ]  # fmt: skip
    kept = config_for(tmp_path, **{"quantization.fp32_op_names": ["matmul"], "quantization.fp32_op_types": ["Gem.", "Conv"]})
    assert compute_nodes(model, kept) == ["computed", "vector"]
    partial = config_for(tmp_path, **{"quantization.fp32_op_types": ["Ge"]})  # a pattern matches the whole type only
    assert compute_nodes(model, partial) == compute_nodes(model, config)


def test_the_grid_never_keeps_every_compute_node_in_fp32(tmp_path):
    config = config_for(tmp_path)
    three = layers((784, 12, 9, 10), ["a", "b", "c"])  # order: c (9), b (12), a (784)
    fallbacks = [(), ("c",), ("b",), ("a",), ("c", "b"), ("c", "a"), ("b", "a")]
    assert candidate_grid(three, config) == [
        CandidateSpec(f, a, fallback) for a in (MINMAX, KL, PERCENTILE) for fallback in fallbacks for f in (QDQ, QOP)
    ]
    two = layers((784, 16, 10), ["a", "b"])
    assert [spec.fp32_fallback for spec in candidate_grid(two, config)[:6]] == [(), (), ("b",), ("b",), ("a",), ("a",)]
    assert len(candidate_grid(two, config)) == 3 * 3 * 2  # the pair would be every node
    one = layers((784, 10), ["a"])
    assert candidate_grid(one, config) == [CandidateSpec(f, a, ()) for a in (MINMAX, KL, PERCENTILE) for f in (QDQ, QOP)]
    none = structure([helper.make_node("Relu", ["x"], ["y"], name="relu")], [])
    assert len(candidate_grid(none, config)) == 6
    other = config_for(tmp_path, **{"quantization.format": "QOperator", "quantization.calibration_algorithm": "percentile"})
    assert candidate_grid(one, other) == [
        CandidateSpec(f, a, ()) for a in (PERCENTILE, MINMAX, KL) for f in (QOP, QDQ)
    ]


def test_auto_is_the_grid_while_it_fits_in_max_trials(tmp_path):
    three = layers((784, 12, 9, 10), ["a", "b", "c"])
    grid = len(candidate_grid(three, config_for(tmp_path)))
    assert grid == 42

    def resolved(search: str, max_trials: int) -> LatencySearch:
        return resolved_search(three, config_for(tmp_path, **{"tuning.latency.search": search, "tuning.max_trials": max_trials}))

    assert resolved("auto", 42) is LatencySearch.GRID and resolved("auto", 41) is LatencySearch.GREEDY
    assert resolved("grid", 1) is LatencySearch.GRID and resolved("greedy", 1000) is LatencySearch.GREEDY


def test_the_greedy_bound_counts_every_stage():
    # Stages 1-5 for N nodes, F formats, A algorithms: F (1 + N + (N - 2) + (A - 1) + (N - 1)).
    for nodes, formats, algorithms in itertools.product(range(2, 9), (1, 2), (1, 3)):
        stages = [1, nodes, nodes - 2, algorithms - 1, nodes - 1]
        assert greedy_upper_bound(nodes, formats, algorithms) == formats * sum(stages)
    # One node or none: only the formats and algorithms vary.
    assert [greedy_upper_bound(n, 2, 3) for n in (0, 1)] == [6, 6]
    assert greedy_upper_bound(2, 2, 3) == 12


