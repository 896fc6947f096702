"""Which candidates objective latency makes: the greedy search (linear in the compute nodes) or the grid.

The precision of each Conv/MatMul/Gemm node (int8, or kept in fp32) decides a candidate's speed; the
quantization format decides it too; the calibration algorithm moves accuracy, hardly speed (it changes
scales, not the graph). With N compute nodes and F formats:

- ``greedy`` (``tuning.latency.search``), in stages, each screened for speed as it is made
  (tuning/search/candidates.py): (1) every node in int8, in each format (F candidates); (2) each node alone
  in fp32, in each format (F x N), each timed against (1) in session sets; (3) per format, the nodes whose
  fallback alone was *significantly* faster than (1) (the choice rule's test, tuning/search/choice.py), added
  one at a time in :func:`compute_nodes` order (at most F x (N - 2)). The candidates are then scored fastest
  first. Only if none meets the accuracy criterion: (4) every node in int8 with each other calibration
  algorithm, and (5) per format, the nodes whose fallback raised accuracy most, added one at a time until a
  candidate meets it (at most F x (N - 1)). At most F x (3N + A - 3) candidates (:func:`greedy_upper_bound`),
  against the grid's F x A x (1 + N + N(N - 1) / 2).

  Which candidates the greedy search makes is decided on significant differences or not on speed at all, so
  it does not follow the machine's load: from stage 2 to 3 a node is taken only when its interval lies wholly
  beyond the margin, and one whose interval straddles it is timed again before it is left out (noise widens an
  interval, more session sets narrow it: only a node whose effect lies near the margin can go either way); the
  nodes' order is fixed, every set of stage 3 is made, and stages 4-5 read accuracy, which does not depend on
  timing. Screening ratios only order the scoring (tuning/search/candidates.py).
- ``grid``: every fallback set of none, one or two compute nodes x formats x calibration algorithms.

A fallback set covering every compute node is never made (it would leave nothing in int8).
"""

from __future__ import annotations

import itertools
import math
import re
import time

import numpy as np
import onnx

from tuning.config.enums import CalibrationAlgorithm, LatencySearch, QuantFormat
from tuning.config.schema import PipelineConfig
from tuning.graph.nodes import COMPUTE_OP_TYPES
from tuning.inc.mapping import CandidateSpec
from tuning.measure.measurements import Measurements
from tuning.measure.statistics import Interval
from tuning.search.budget import StageRecord
from tuning.search.candidates import Candidates
from tuning.search.choice import significantly_faster, undecided
from tuning.search.timing import MAX_TIMINGS


def compute_nodes(model: onnx.ModelProto, config: PipelineConfig) -> list[str]:
    """The Conv/MatMul/Gemm nodes of the fp32 graph whose precision the latency search varies.

    Nodes the config already keeps in fp32 (``quantization.fp32_op_names``/``fp32_op_types``) and
    unnamed nodes (INC addresses ops by name) are left out. Order, most promising fp32 fallback
    first: ascending multiply-adds per output value (the reduction size of the weight: in x kh x kw
    for a Conv, the inner dimension for MatMul/Gemm), then graph order. The fewer multiply-adds an
    output needs, the less int8 arithmetic saves against the cost of quantizing its input and
    requantizing its output (mnist-12's first Conv, 1 -> 8 channels, is slower in int8).
    """
    quant = config.quantization
    initializers = {init.name: init for init in model.graph.initializer}
    ranked = []
    for position, node in enumerate(model.graph.node):
        if node.op_type not in COMPUTE_OP_TYPES or not node.name or node.name in quant.fp32_op_names:
            continue
        if any(re.fullmatch(pattern, node.op_type) for pattern in quant.fp32_op_types):
            continue
        ranked.append((_reduction_size(node, initializers), position, node.name))
    return [name for _, _, name in sorted(ranked)]


def _reduction_size(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> float:
    weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
    if weight is None or len(weight.dims) < 2:
        return math.inf  # no constant weight: nothing known, try last
    dims = list(weight.dims)
    if node.op_type == "Conv":
        return float(np.prod(dims[1:]))
    trans_b = next((attr.i for attr in node.attribute if attr.name == "transB"), 0)
    return float(dims[-1] if node.op_type == "Gemm" and trans_b else dims[-2])


def _formats(config: PipelineConfig) -> list[QuantFormat]:
    """The configured format first: it wins every tie of the screening's order."""
    return [config.quantization.format, *(f for f in QuantFormat if f is not config.quantization.format)]


def _algorithms(config: PipelineConfig) -> list[CalibrationAlgorithm]:
    configured = config.quantization.calibration_algorithm
    return [configured, *(a for a in CalibrationAlgorithm if a is not configured)]


def candidate_grid(model: onnx.ModelProto, config: PipelineConfig) -> list[CandidateSpec]:
    """Every candidate of the grid search, most promising first.

    Order: calibration algorithm (the configured one, then the others) > fp32 fallback set (none,
    each compute node alone in :func:`compute_nodes` order, then pairs; never all of them) > quantization format (the
    configured one, then the other). The algorithm moves accuracy, hardly speed, so it is the
    outermost axis: a budget cut keeps every speed-relevant variant with the configured algorithm.
    (Objective latency needs static quantization: the config refuses it with dynamic.)
    """
    nodes = compute_nodes(model, config)
    fallbacks = [
        fallback
        for fallback in [(), *((name,) for name in nodes), *itertools.combinations(nodes, 2)]
        if len(fallback) < len(nodes) or not fallback
    ]
    return [
        CandidateSpec(quant_format, algorithm, fallback)
        for algorithm in _algorithms(config)
        for fallback in fallbacks
        for quant_format in _formats(config)
    ]


def resolved_search(model: onnx.ModelProto, config: PipelineConfig) -> LatencySearch:
    """``tuning.latency.search``, with ``auto`` read as the grid while it fits in ``tuning.max_trials`` and
    the greedy search beyond."""
    requested = config.tuning.latency.search
    if requested is not LatencySearch.AUTO:
        return requested
    fits = len(candidate_grid(model, config)) <= config.tuning.max_trials
    return LatencySearch.GRID if fits else LatencySearch.GREEDY


def grid_search(candidates: Candidates) -> None:
    """Make every grid candidate the budget allows, then score them fastest first."""
    grid = candidate_grid(candidates.model, candidates.config)
    candidates.budget.expect(len(grid))
    candidates.make(candidates.stage("grid", grid), grid)
    candidates.score_fastest_first()


def greedy_upper_bound(nodes: int, formats: int, algorithms: int) -> int:
    """The most candidates :func:`greedy_search` makes for ``nodes`` compute nodes: linear in them."""
    if nodes <= 1:  # one compute node: it is never kept in fp32, only formats and algorithms vary
        return formats * algorithms
    return formats * (1 + nodes + (nodes - 2) + (algorithms - 1) + (nodes - 1))


def greedy_search(candidates: Candidates) -> None:
    """Stages (1)-(5) of the module's docstring, each recorded with what the budget left unmade."""
    config, budget = candidates.config, candidates.budget
    nodes = compute_nodes(candidates.model, config)
    formats, algorithms = _formats(config), _algorithms(config)
    configured = algorithms[0]
    budget.expect(greedy_upper_bound(len(nodes), len(formats), len(algorithms)))

    base = dict(zip(formats, _run(candidates, "every node int8", [CandidateSpec(f, configured, ()) for f in formats])))
    faster: dict[QuantFormat, list[str]] = {f: [] for f in formats}
    singles: dict[tuple[QuantFormat, str], int | None] = {}
    if len(nodes) > 1:
        keys = [(f, node) for node in nodes for f in formats]
        specs = [CandidateSpec(f, configured, (node,)) for f, node in keys]
        record = candidates.stage("each node alone in fp32", specs)
        singles = dict(zip(keys, candidates.make(record, specs)))
        faster = _significantly_faster_alone(candidates, record, nodes, base, singles)
    # (3) Per format, the growing sets of those nodes, in compute_nodes order: every set is made, none is judged by
    # its screening, so which sets exist is decided by significant differences only.
    sets = [
        CandidateSpec(f, configured, tuple(faster[f][:size]))
        for size in range(2, max(map(len, faster.values()), default=0) + 1)
        for f in formats
        if size <= len(faster[f])
    ]
    budget.expect(budget.made + len(sets) + len(formats) * (len(algorithms) - 1 + max(len(nodes) - 1, 0)))
    if sets:
        _run(candidates, "fallback sets of the nodes significantly faster alone, one node added at a time", sets)
    candidates.score_fastest_first()
    if candidates.passing():
        budget.expect(budget.made)
        return

    # (4) Nothing meets the criterion: the other calibration algorithms, every node in int8.
    others = [CandidateSpec(f, a, ()) for a in algorithms[1:] for f in formats]
    accuracies = {configured: [_accuracy(candidates, base.get(f)) for f in formats]}
    for spec, index in zip(others, _run(candidates, "other calibration algorithms, every node int8", others)):
        accuracies.setdefault(spec.calibration_algorithm, []).append(_accuracy(candidates, index))
    best = max(algorithms, key=lambda a: max(accuracies.get(a, [-1.0])))
    # (5) Per format, the nodes whose fallback raised accuracy most, added one at a time until one passes.
    gain = {node: max(_accuracy(candidates, singles.get((f, node))) for f in formats) for node in nodes}
    order = sorted(nodes, key=lambda node: -gain[node])[: len(nodes) - 1]
    first = 2 if best is configured else 1  # with the configured algorithm, stage (2) made the single ones
    plan = [CandidateSpec(f, best, tuple(order[:size])) for f in formats for size in range(first, len(order) + 1)]
    if plan:
        record = candidates.stage("accuracy-first fallback sets, until one meets the criterion", plan)
        for quant_format in formats:
            for spec in (spec for spec in plan if spec.quant_format is quant_format):
                index = candidates.make(record, [spec])[0]
                if _accuracy(candidates, index) >= 0 and candidates.trials[index].meets_criterion:
                    break
    candidates.score_fastest_first()
    budget.expect(budget.made)


def _significantly_faster_alone(
    candidates: Candidates,
    record: StageRecord,
    nodes: list[str],
    base: dict[QuantFormat, int | None],
    singles: dict[tuple[QuantFormat, str], int | None],
) -> dict[QuantFormat, list[str]]:
    """Per format, the nodes whose fp32 fallback alone is significantly faster than every node in int8, by the
    choice rule's test (tuning/search/choice.py: the paired ratio's whole interval below 1 - tie_margin), in
    :func:`compute_nodes` order, at most all but one.

    Each single fallback and its format's all-int8 candidate are timed together in session sets
    (:meth:`Candidates.time_together`); a pair whose interval still straddles the margin is timed again in as many
    sets more, up to MAX_TIMINGS times (tuning/search/timing.py), and then left out. A screening ratio below 1 is not enough: a node
    that changes nothing screened faster in one run and slower in the next, and the sets made from it changed
    with the load (mnist-12 under two busy loops: 11 candidates instead of 9). Noise widens an interval and the
    further sets narrow it again, so a node is decided by its effect against the margin, not by the load, unless
    its effect lies so near the margin that even the last sets cannot tell; the order reads no measurement.
    """
    margin = candidates.config.tuning.latency.tie_margin
    pairs = {
        key: (single, base[key[0]])
        for key, single in singles.items()
        if single is not None and base.get(key[0]) is not None and single != base[key[0]]
        and _screened(candidates, single) is not None and _screened(candidates, base[key[0]]) is not None
    }  # fmt: skip
    started = time.monotonic()
    decided: dict[tuple[QuantFormat, str], tuple[Interval, bool, bool]] = {}  # ratio, helped, settled
    measurements: Measurements | None = None
    for attempt in range(MAX_TIMINGS):
        open_pairs = {key: pair for key, pair in pairs.items() if key not in decided}
        if not open_pairs:
            break
        measurements = candidates.time_together(sorted({index for pair in open_pairs.values() for index in pair}), measurements)
        for key, (single, reference) in open_pairs.items():
            ratio = measurements.time_ratio(f"trial {single}", f"trial {reference}")
            helped = significantly_faster(ratio, margin)
            settled = not undecided(ratio, margin)
            if settled or attempt == MAX_TIMINGS - 1:
                decided[key] = (ratio, helped, settled)
    faster: dict[QuantFormat, list[str]] = {quant_format: [] for quant_format in base}
    for (quant_format, node), (single, _) in pairs.items():
        ratio, helped, settled = decided[quant_format, node]
        verdict = (
            "significantly faster" if helped else f"not faster by more than {margin:.0%}" if settled
            else f"not decided after {measurements.session_sets(f'trial {single}') if measurements else 0} session sets, left out"
        )  # fmt: skip
        candidates.budget.decide(
            record, f"{quant_format.value}, fp32: {node}: {ratio.value:.2f}x the time of every node int8 [{ratio.low:.2f}-{ratio.high:.2f}], {verdict}"
        )
        if helped:
            faster[quant_format].append(node)
    candidates.budget.close_stage(record, time.monotonic() - started)
    return {quant_format: found[: len(nodes) - 1] for quant_format, found in faster.items()}


def _run(candidates: Candidates, stage: str, specs: list[CandidateSpec]) -> list[int | None]:
    return candidates.make(candidates.stage(stage, specs), specs)


def _screened(candidates: Candidates, index: int | None) -> float | None:
    """The distinct candidate's screening ratio; None when it was not made or the runtime cannot load it."""
    return None if index is None or index in candidates.unloadable else candidates.screening.get(index)


def _accuracy(candidates: Candidates, index: int | None) -> float:
    """The distinct candidate's accuracy, scored now if need be; -1 when it was not made or cannot load."""
    if _screened(candidates, index) is None:
        return -1.0
    accuracy = candidates.score(index).accuracy
    return -1.0 if accuracy is None else accuracy
