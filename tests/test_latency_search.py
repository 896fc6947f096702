"""Objective latency's search: how many candidates it makes, what a budget cut says, and what it chooses.

Real INC runs on classifiers built and trained with torch here (tests/torch_models.py: a LeNet, 4 compute
nodes; a residual CNN of 5 convolutions, 7), real MNIST, real accuracy scoring. The timing is controlled
instead of measured (:func:`controlled_timing`): each candidate's time per call follows from its own graph
(which compute nodes it runs in int8, read with tuning/graph/nodes.py), so which candidate is faster, and
by how much, is known to the test and does not depend on the machine or its load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT
from test_fp32_fallback import config_for

from tuning.config.enums import LatencySearch, Split
from tuning.data.datasets import calibration_images, evaluation_images
from tuning.graph.nodes import SourcePrecision, source_precisions
from tuning.graph.rewrite import batch_capable_copy
from tuning.measure.benchmark import SECOND_SESSION, Performance, Timing
from tuning.measure.evaluate import AccuracyEvaluator
from tuning.measure.statistics import Interval
from tuning.search.budget import Budget
from tuning.graph.identity import graph_key
from tuning.search.choice import significantly_faster
from tuning.search.latency import quantize_for_latency
from tuning.search.plan import candidate_grid, compute_nodes, greedy_upper_bound, resolved_search

CALLS = 40
QUANTIZE_MS = 0.05  # each change of precision between consecutive compute nodes (a Quantize or Dequantize)


def controlled_timing(source: onnx.ModelProto, int8_ms: dict[str, float], timed: list[str], noise: float = 0.0, seed: int = 0):
    """A stand-in for tuning.measure.benchmark.measure: every call of a model takes its cost in ms.

    Cost: 1 ms per compute node in fp32, ``int8_ms[node]`` in int8, plus QUANTIZE_MS per precision change
    along the compute nodes in graph order (the input counts as fp32): not a sum of independent per-node
    effects. ``timed`` collects the name of every candidate timed. With ``noise``, as on a busy machine, every
    session (a model's calls in one session set) is slower or faster by a factor drawn within 1 +- ``noise``,
    and every call by one within 1 +- ``noise`` / 2 besides (drawn from ``seed``).
    """
    order = [node.name for node in source.graph.node if node.name in int8_ms]
    draw = np.random.default_rng(seed)

    def cost(model: onnx.ModelProto) -> float:
        made = source_precisions(source, model)
        int8 = [made[name] is SourcePrecision.INT8 for name in order]
        changes = sum(a != b for a, b in zip([False, *int8], int8))
        return sum(int8_ms[name] if is_int8 else 1.0 for name, is_int8 in zip(order, int8)) + QUANTIZE_MS * changes

    def measure(targets, images, settings, session, label="benchmark", latency=True, throughput_batch_sizes=None):
        sizes = settings.batch_sizes if throughput_batch_sizes is None else throughput_batch_sizes
        performances = {}
        for position, target in enumerate(targets):
            ms = cost(target.model)
            timed.append(target.name)

            def performance(name: str, ms: float = ms) -> Performance:
                def rounds(batch: int) -> tuple[np.ndarray, ...]:
                    return tuple(
                        ms * batch * draw.uniform(1 - noise, 1 + noise) * draw.uniform(1 - noise / 2, 1 + noise / 2, CALLS)
                        for _ in range(settings.rounds)
                    )

                return Performance(name, Timing(1, 0, rounds(1)) if latency else None, tuple(Timing(b, 0, rounds(b)) for b in sizes),
                                   {"runtime": "onnxruntime"})  # fmt: skip

            twin = performance(SECOND_SESSION.format(name=target.name)) if position == 0 else None
            performances[target.name] = dataclasses.replace(performance(target.name), second_session=twin)
        return performances

    return measure, cost


def search(config, source_path: Path, int8_ms_by_position: list[float], say=lambda line: None, noise: float = 0.0, seed: int = 0):
    """Run objective latency's search on ``source_path`` with the controlled timing (``noise``, ``seed``: its noise).

    ``int8_ms_by_position[i]`` is the int8 cost of the i-th compute node in :func:`compute_nodes` order.
    Returns the outcome (or the TuningError), the names timed, the cost function and the batch-capable source.
    """
    model = batch_capable_copy(onnx.load(str(source_path)), source_path)
    nodes = compute_nodes(model, config)
    timed: list[str] = []
    measure, cost = controlled_timing(model, dict(zip(nodes, int8_ms_by_position)), timed, noise, seed)
    calibration = calibration_images(config.dataset, config.calibration, (1, 28, 28))
    evaluation = evaluation_images(config.dataset, Split.TEST, (1, 28, 28))
    evaluate = AccuracyEvaluator(evaluation, config.evaluation.batch_size)
    workspace = config.output.dir / "nc_workspace"
    outcome = quantize_for_latency(model, calibration, evaluate, evaluation.images[:64], config, workspace, source_path,
                                   say, measure)  # fmt: skip
    return outcome, timed, cost, nodes


def latency_config(tmp_path, model, dataset_roots, **tuning):
    return config_for(
        tmp_path, model, dataset_roots, quantization={"format": "QDQ"},
        tuning={"objective": "latency", "accuracy_criterion": {"kind": "relative", "tolerance": 0.05},
                "latency": {"warmup": 1, "iterations": 1, "rounds": 2, "search": "greedy"}, **tuning},
    )  # fmt: skip


# LeNet's compute nodes by fewest multiply-adds: conv1 (1x5x5), fc2 (64), conv2 (6x5x5), fc1 (400). The first two
# are slower in int8 (each one's fallback alone makes the model about 20 % faster): the fastest candidate keeps both
# in fp32, which no single fallback does.
LENET_INT8_MS = [2.0, 2.0, 0.3, 0.4]
# The residual CNN's 7 by the same order: the stem conv and fc2 are slower in int8 (each one's fallback alone makes
# the model more than 10 % faster: significantly), the rest faster.
RESIDUAL_INT8_MS = [2.0, 2.0, 0.3, 0.4, 0.5, 0.6, 0.7]


@pytest.fixture(scope="module")
def lenet_greedy(tmp_path_factory, torch_model, dataset_roots):
    lenet = torch_model("lenet", "MNIST")
    config = latency_config(tmp_path_factory.mktemp("lenet-greedy"), lenet, dataset_roots)
    return (config, lenet, *search(config, lenet, LENET_INT8_MS))


def test_greedy_search_finds_the_grid_s_best_on_a_lenet_with_fewer_candidates(tmp_path, lenet_greedy, dataset_roots):
    config, lenet, greedy, _, cost, nodes = lenet_greedy
    assert nodes == ["/conv1/Conv", "/fc2/Gemm", "/conv2/Conv", "/fc1/Gemm"]
    # The grid of the configured calibration algorithm: every fallback set of none, one or two nodes x 2 formats.
    minmax_grid = 2 * (1 + 4 + 6)
    grid_config = latency_config(tmp_path, lenet, dataset_roots, max_trials=minmax_grid,
                                 latency={"warmup": 1, "iterations": 1, "rounds": 2, "search": "grid"})  # fmt: skip
    grid, _, _, _ = search(grid_config, lenet, LENET_INT8_MS)

    passing = [t for t in grid.trials[1:] if t.meets_criterion and t.latency_ratio is not None]
    grid_best = min(passing, key=lambda t: t.latency_ratio)
    chosen = greedy.trials[greedy.chosen_index]
    # Not significantly slower than the grid's best, by the choice rule's own test, on the controlled times.
    ratio = grid_best.latency_ratio / chosen.latency_ratio
    assert not significantly_faster(Interval(ratio, ratio, ratio), config.tuning.latency.tie_margin)
    assert chosen.fp32_compute_nodes == ("/conv1/Conv", "/fc2/Gemm") == grid_best.fp32_compute_nodes
    fp32_cost = cost(batch_capable_copy(onnx.load(str(lenet)), lenet))
    assert chosen.latency_ratio == pytest.approx((1 + 1 + 0.3 + 0.4 + 2 * QUANTIZE_MS) / fp32_cost)
    # Fewer candidates: 2 all-int8, 2 x 4 single fallbacks, one greedy pair per format.
    assert greedy.search["models"]["made"] == 2 + 8 + 2 < grid.search["models"]["made"] == minmax_grid
    assert [stage["made"] for stage in greedy.search["stages"]] == [2, 8, 2]
    assert greedy.search["cut"] is None and greedy.search["name"] == "greedy"
    # The grid was cut to the configured algorithm's candidates, and says so: what was not made, what to raise.
    grid_size = len(candidate_grid(onnx.load(str(lenet)), grid_config))
    assert grid.search["name"] == "grid" and grid.search["cut_by"] == "tuning.max_trials"
    assert len(grid.search["stages"][0]["not_made"]) == grid_size - minmax_grid == 2 * minmax_grid
    assert f"raise tuning.max_trials to at least {grid_size}" in grid.search["cut"]


def test_the_candidates_grow_linearly_with_the_compute_nodes(tmp_path, lenet_greedy, torch_model, dataset_roots):
    """A LeNet (4 compute nodes) and a residual CNN (5 convolutions, 2 Gemms: 7), the same controlled costs by rank."""
    model = torch_model("res-cnn", "MNIST")
    config = latency_config(tmp_path, model, dataset_roots, max_trials=1000)
    runs = {4: lenet_greedy[2:], 7: search(config, model, RESIDUAL_INT8_MS)}
    for nodes, (outcome, timed, _, names) in runs.items():
        assert len(names) == nodes
        counts = outcome.search["models"]
        # Every distinct graph is screened once; only screened ones are scored, only scored ones timed in full,
        # at batch 1, and the chosen one at the throughput batch too.
        assert counts["screened"] == counts["distinct"] - counts["graph_twins"] >= counts["scored"] >= counts["timed"] >= 1
        # Besides, the greedy search times every single fallback and the all-int8 ones again for its decisions.
        assert counts["timed_for_decisions"] == 2 + 2 * nodes
        timed_trials = [name for name in timed if name.startswith("trial ")]
        assert len(timed_trials) == counts["screened"] + counts["timed_for_decisions"] + counts["timed"] + 1
        # Linear: every node alone in fp32 in both formats, plus at most one greedy set per node and format.
        assert 2 + 2 * nodes <= counts["made"] <= greedy_upper_bound(nodes, 2, 3)
    made = {nodes: run[0].search["models"]["made"] for nodes, run in runs.items()}
    assert made[7] - made[4] == 2 * (7 - 4)  # two formats per added node (the greedy sets are the same two here)
    assert made[7] < grid_size(7) / 5  # the grid of a 7-node model: 174 candidates


def grid_size(nodes: int) -> int:
    """The grid's size for ``nodes`` compute nodes: (none, singles, pairs) x 2 formats x 3 algorithms."""
    return (1 + nodes + nodes * (nodes - 1) // 2) * 2 * 3


def test_a_budget_cut_is_reported_on_the_console_and_in_the_summary(tmp_path, torch_model, dataset_roots):
    lenet = torch_model("lenet", "MNIST")
    config = latency_config(tmp_path, lenet, dataset_roots, max_trials=5)
    lines: list[str] = []
    outcome, _, _, _ = search(config, lenet, LENET_INT8_MS, say=lines.append)
    record = outcome.search
    assert record["made"] == 5 and record["budget"] == {"max_trials": 5, "timeout_s": 0}
    per_node = record["stages"][1]
    assert per_node["name"] == "each node alone in fp32" and per_node["made"] == 3 and len(per_node["not_made"]) == 5
    assert per_node["not_made"][-1] == "QOperator, minmax, fp32: /fc1/Gemm"
    # The single fallbacks made say conv1 and fc2 help in QDQ: their pair is planned, and not made either.
    assert record["stages"][2]["not_made"] == ["QDQ, minmax, fp32: /conv1/Conv, /fc2/Gemm"]
    assert record["cut_by"] == "tuning.max_trials"
    assert "5 candidates of stage 'each node alone in fp32'; 1 candidate of stage 'fallback sets" in record["cut"]
    assert "raise tuning.max_trials to at least 11" in record["cut"]
    stages = [line for line in lines if line.startswith("tune: search stage")]
    assert len(stages) == 3 and stages[1].startswith("tune: search stage 2, each node alone in fp32: 8 candidates (2 made")
    assert lines.count(f"tune: warning: {record['cut']}") == 1
    # A cut search still writes the best of what it made.
    assert outcome.trials[outcome.chosen_index].meets_criterion


@pytest.mark.fast
def test_the_budget_reports_a_time_cut_and_how_to_widen_it():
    now = [0.0]
    lines: list[str] = []
    budget = Budget(max_trials=100, timeout_s=30, say=lines.append, expected=3, clock=lambda: now[0])
    stage = budget.stage("every node int8", ["a", "b", "c"])
    for description in ("a", "b", "c"):
        if budget.spent():
            stage.not_made.append(description)
            continue
        budget.made_one(stage, description)
        now[0] += 20.0  # the second candidate ends past the limit
    budget.close()
    assert budget.made == 2 and stage.not_made == ["c"]
    assert lines == ["tune: search stage 1, every node int8: 3 candidates (0 made so far, budget: tuning.max_trials "
                     "100, tuning.timeout_s 30; 0 s elapsed)"]  # fmt: skip
    assert budget.cut_message() == (
        "the search was cut by tuning.timeout_s after 2 candidates: not made: 1 candidate of stage 'every node int8' "
        "(listed in the summary, search.stages); to search them, raise tuning.timeout_s above 30 or set it to 0 (no limit)"
    )
    assert budget.to_json("greedy")["cut_by"] == "tuning.timeout_s"


@pytest.mark.fast
def test_a_budget_that_cuts_nothing_reports_nothing():
    budget = Budget(max_trials=2, timeout_s=0, say=lambda line: None, expected=2)
    stage = budget.stage("every node int8", ["a", "b"])
    for description in ("a", "b"):
        assert not budget.spent()
        budget.made_one(stage, description)
    budget.close()
    # The budget is exactly used up, but nothing was left unmade.
    assert budget.cut_message() is None and budget.to_json("grid")["cut"] is None


@pytest.mark.fast
def test_the_greedy_bound_is_linear_and_the_grid_is_not():
    bounds = [greedy_upper_bound(n, 2, 3) for n in range(2, 40)]
    assert len({b - a for a, b in zip(bounds, bounds[1:])}) == 1  # a constant step per node
    assert greedy_upper_bound(22, 2, 3) < grid_size(22) / 10


def test_auto_runs_the_grid_while_it_fits_in_max_trials_and_the_greedy_search_beyond(tmp_path, torch_model, dataset_roots):
    lenet = torch_model("lenet", "MNIST")
    grid_size = len(candidate_grid(onnx.load(str(lenet)), latency_config(tmp_path, lenet, dataset_roots)))
    assert grid_size > greedy_upper_bound(4, 2, 3)  # LeNet's 4 compute nodes: the grid is the larger

    def resolved(max_trials: int) -> LatencySearch:
        config = latency_config(tmp_path, lenet, dataset_roots, max_trials=max_trials,
                                latency={"warmup": 1, "iterations": 1, "rounds": 2})  # fmt: skip
        assert config.tuning.latency.search is LatencySearch.AUTO  # the default
        return resolved_search(onnx.load(str(lenet)), config)

    assert resolved(grid_size) is LatencySearch.GRID
    assert resolved(grid_size - 1) is LatencySearch.GREEDY


@pytest.mark.fast
def test_graph_twins_differ_in_constant_values_only():
    """A graph twin shares its original's speed: other values of its initializers, nothing else."""
    model = onnx.load(str(ROOT / "models" / "mnist-12.onnx"))

    def changed(edit) -> onnx.ModelProto:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        edit(copy.graph)
        return copy

    def scale_weights(graph: onnx.GraphProto) -> None:
        weight = next(init for init in graph.initializer if len(init.dims) == 4)
        weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 0.5, weight.name))

    def widen_a_pool(graph: onnx.GraphProto) -> None:
        pool = next(node for node in graph.node if node.op_type == "MaxPool")
        next(attr for attr in pool.attribute if attr.name == "kernel_shape").ints[:] = [3, 3]

    def reshape_otherwise(graph: onnx.GraphProto) -> None:  # the same dims, other values: other shapes downstream
        shape = next(init for init in graph.initializer if init.data_type == onnx.TensorProto.INT64)
        values = onnx.numpy_helper.to_array(shape)
        shape.CopyFrom(onnx.numpy_helper.from_array((values[::-1]).copy(), shape.name))

    twin = changed(scale_weights)
    assert twin.SerializeToString() != model.SerializeToString() and graph_key(twin) == graph_key(model)
    assert graph_key(changed(widen_a_pool)) != graph_key(model)  # another attribute: another kernel
    assert graph_key(changed(reshape_otherwise)) != graph_key(model)
