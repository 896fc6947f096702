"""The greedy latency search's decisions: which candidates it makes does not follow the machine's load, and when
nothing meets the accuracy criterion it tries the other calibration algorithms, then fallback sets by accuracy.

Real INC runs on a LeNet built and trained with torch here (tests/torch_models.py), real MNIST; the timing is
controlled (tests/test_latency_search.py's ``controlled_timing``), with noise where the test says so, and the
last test controls the scoring too, so that which candidates pass is known to it.
"""

from __future__ import annotations

import onnx
import pytest
from test_latency_search import LENET_INT8_MS, controlled_timing, latency_config, search

from tuning.config.enums import Split
from tuning.data.datasets import calibration_images, evaluation_images
from tuning.graph.rewrite import batch_capable_copy
from tuning.search.budget import Budget
from tuning.search.candidates import Candidates
from tuning.search.plan import compute_nodes, greedy_search
from tuning.search.timing import MAX_TIMINGS

# LeNet's compute nodes in compute_nodes order: conv1, fc2, conv2, fc1. Alone in fp32 (1 ms), conv1 makes the model
# 0.81x the time of every node int8, fc1 0.83x: both beyond the 10 % margin. fc2's fallback changes nothing (1.05 ms
# in int8 against 1 ms and one more Quantize in fp32): 1.00x, which noise alone puts above or below 1.
NEUTRAL_INT8_MS = [2.0, 1.05, 0.3, 2.0]
NOISE = 0.015  # each session 1 +- 1.5 % slower, each call 1 +- 0.75 % besides: the intervals hold it within the margin


def made(outcome) -> list[tuple[str, str, tuple[str, ...]]]:
    """What the search asked INC for, in order: format, calibration algorithm, fp32 fallback."""
    return [(t.quant_format, t.calibration_algorithm, t.fp32_fallback) for t in outcome.trials[1:]]


def test_noise_within_the_intervals_does_not_change_the_greedy_candidates(tmp_path, torch_model, dataset_roots):
    lenet = torch_model("lenet", "MNIST")
    runs = {}
    for seed in (None, 3, 6):
        config = latency_config(tmp_path / f"run-{seed}", lenet, dataset_roots)
        runs[seed] = search(config, lenet, NEUTRAL_INT8_MS, noise=0.0 if seed is None else NOISE, seed=seed or 0)[0]
    quiet = runs[None]
    pair = ("/conv1/Conv", "/fc1/Gemm")
    assert made(quiet)[10:] == [("QDQ", "minmax", pair), ("QOperator", "minmax", pair)]
    for seed in (3, 6):
        noisy = runs[seed]
        # The noise is real: every screening ratio moved ...
        assert all(a.screening_ratio != b.screening_ratio for a, b in zip(quiet.trials[1:], noisy.trials[1:]))
        # ... and in these runs it put fc2's fallback below every node int8, which the old rule (screened faster:
        # helped) would have taken; the interval does not.
        fc2 = {t.quant_format: t.screening_ratio for t in noisy.trials[1:] if t.fp32_fallback == ("/fc2/Gemm",)}
        every_int8 = {t.quant_format: t.screening_ratio for t in noisy.trials[1:3]}
        assert any(fc2[f] < every_int8[f] for f in fc2), f"seed {seed} no longer fools the screening"
        assert made(noisy) == made(quiet)
        assert [t.model_sha256 for t in noisy.trials] == [t.model_sha256 for t in quiet.trials]
    # Each decision is in the summary with its interval; fc2's says why it was not taken.
    decisions = quiet.search["stages"][1]["decisions"]
    assert len(decisions) == 8
    assert "QDQ, fp32: /fc2/Gemm: 1.00x the time of every node int8 [1.00-1.00], not faster by more than 10%" in decisions
    assert decisions[0].startswith("QDQ, fp32: /conv1/Conv: 0.81x") and decisions[0].endswith("significantly faster")


# fc1 in int8 1.6 ms: alone in fp32 it makes the model 0.90x the time of every node int8, right at the margin.
AT_THE_MARGIN_INT8_MS = [2.0, 1.05, 0.3, 1.6]


def test_a_fallback_at_the_margin_is_timed_again_then_left_out(tmp_path, torch_model, dataset_roots):
    lenet = torch_model("lenet", "MNIST")
    config = latency_config(tmp_path, lenet, dataset_roots)
    outcome = search(config, lenet, AT_THE_MARGIN_INT8_MS, noise=NOISE, seed=1)[0]
    decisions = outcome.search["stages"][1]["decisions"]
    sets = MAX_TIMINGS * config.tuning.latency.rounds
    assert [line for line in decisions if "/fc1/Gemm" in line] == [
        line for line in decisions if line.endswith(f"not decided after {sets} session sets, left out")
    ] and len(decisions) == 8
    # The first timing: all 8 single fallbacks with both all-int8 candidates; each later one: fc1's 2 with them.
    assert outcome.search["models"]["timed_for_decisions"] == 10 + (MAX_TIMINGS - 1) * 4
    # Only conv1 helped: no set of stage 3.
    assert [stage["name"] for stage in outcome.search["stages"]] == ["every node int8", "each node alone in fp32"]


# Accuracy lost by each compute node in int8 (scored by the test, not measured), and gained by each calibration
# algorithm: ordered unlike compute_nodes (conv1, fc2, conv2, fc1) and unlike speed (conv1 and fc2 help it).
LOSS = {"/conv1/Conv": 0.0002, "/fc2/Gemm": 0.0001, "/conv2/Conv": 0.004, "/fc1/Gemm": 0.003}
BONUS = {"minmax": 0.0, "kl": 0.001, "percentile": 0.002}
FP32_ACCURACY = 0.99


def test_when_nothing_passes_the_other_algorithms_then_sets_by_accuracy_gain_are_made(tmp_path, torch_model, dataset_roots):
    lenet = torch_model("lenet", "MNIST")
    config = latency_config(tmp_path, lenet, dataset_roots, accuracy_criterion={"kind": "absolute", "tolerance": 0.001})
    model = batch_capable_copy(onnx.load(str(lenet)), lenet)
    measure, _ = controlled_timing(model, dict(zip(compute_nodes(model, config), LENET_INT8_MS)), [])
    search: list[Candidates] = []

    def evaluate(candidate: onnx.ModelProto) -> float:
        if not search:
            return FP32_ACCURACY  # the fp32 model, scored as the search starts
        trial = next(search[0].trials[i] for i, m in search[0].models.items() if m is candidate)
        int8 = [node for node in LOSS if node not in trial.fp32_compute_nodes]
        return FP32_ACCURACY - sum(LOSS[node] for node in int8) + BONUS[trial.calibration_algorithm]

    lines: list[str] = []
    budget = Budget(100, 0, lines.append, expected=1)
    images = evaluation_images(config.dataset, Split.TEST, (1, 28, 28)).images[:64]
    calibration = calibration_images(config.dataset, config.calibration, (1, 28, 28))
    search.append(Candidates(model, calibration, evaluate, images, config, tmp_path / "nc_workspace", lenet, budget, measure))
    greedy_search(search[0])
    budget.close()

    stages = [(stage.name, stage.made) for stage in budget.stages]
    assert stages == [
        ("every node int8", 2),
        ("each node alone in fp32", 8),
        ("fallback sets of the nodes significantly faster alone, one node added at a time", 2),
        ("other calibration algorithms, every node int8", 4),
        ("accuracy-first fallback sets, until one meets the criterion", 4),
    ]
    trials = search[0].trials
    # Stages 1-3 (minmax) pass nothing: the speed's pair, conv1 and fc2, keeps the two costliest nodes in int8.
    assert not any(t.meets_criterion for t in trials[1:13]) and trials[11].fp32_fallback == ("/conv1/Conv", "/fc2/Gemm")
    # Stage 4: every node int8 with kl, then percentile, in both formats; none passes, percentile is the best.
    assert [(t.quant_format, t.calibration_algorithm, t.fp32_fallback) for t in trials[13:17]] == [
        ("QDQ", "kl", ()), ("QOperator", "kl", ()), ("QDQ", "percentile", ()), ("QOperator", "percentile", ()),
    ]  # fmt: skip
    assert not any(t.meets_criterion for t in trials[13:17])
    # Stage 5, with percentile: the nodes by accuracy gain (conv2, then fc1), one added at a time, per format,
    # until one passes.
    assert [(t.quant_format, t.calibration_algorithm, t.fp32_fallback, t.meets_criterion) for t in trials[17:]] == [
        ("QDQ", "percentile", ("/conv2/Conv",), False),
        ("QDQ", "percentile", ("/conv2/Conv", "/fc1/Gemm"), True),
        ("QOperator", "percentile", ("/conv2/Conv",), False),
        ("QOperator", "percentile", ("/conv2/Conv", "/fc1/Gemm"), True),
    ]
    assert sorted(search[0].passing()) == [18, 20]
    assert trials[18].accuracy == pytest.approx(FP32_ACCURACY - 0.0003 + 0.002)
