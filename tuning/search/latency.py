"""Objective latency: the fastest int8 candidate that meets the accuracy criterion.

INC stops at its first candidate meeting the criterion, and on a small CNN that candidate can be
slower than fp32. Here a grid of candidates is built from the model's graph (:func:`candidate_grid`),
each one made by INC (``quantization.fit`` with op-wise configs, no evaluation function), rewritten
exactly where onnxruntime's default optimizers would slow it down (tuning/graph/rewrite.py), scored with
the same evaluator as objective accuracy; then the passing ones are timed together with the fp32
model (tuning/measure/benchmark.py: call by call, in fresh session sets, under the deployment's session
options). The written candidate is the most preferred one that no other is significantly faster than
(tuning/search/choice.py), and the verdict compares it with fp32 (tuning/measure/verdict.py).

INC's own ``TuningCriterion(objective="performance")`` does not fit: it times the evaluation
function's wall clock in INC's sessions (not batch-1 latency as users run the model) and still
stops at the first candidate meeting the criterion.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from tuning.config.enums import (
    CalibrationAlgorithm,
    Objective,
    QuantFormat,
    SlowerThanFp32,
)
from tuning.config.schema import PipelineConfig
from tuning.data.datasets import BatchLoader, LabelledImages
from tuning.errors import SlowerThanFp32Error, TuningError
from tuning.graph.nodes import COMPUTE_OP_TYPES
from tuning.graph.rewrite import deployment_rewrites
from tuning.inc.fit import fit
from tuning.inc.mapping import (
    CandidateSpec,
    check_kept_in_fp32,
    fp32_requests,
    inc_config,
)
from tuning.measure import benchmark
from tuning.measure.environment import capture_environment
from tuning.measure.runtimes import SessionSettings
from tuning.measure.statistics import Interval
from tuning.measure.verdict import Verdict
from tuning.search.choice import choose_fastest
from tuning.search.timing import SCREEN_FACTOR, latency_settings, measurement_conditions, screen, with_performance
from tuning.search.trials import Trial, TuningOutcome, no_model_message, record_trial



def compute_nodes(model: onnx.ModelProto, config: PipelineConfig) -> list[str]:
    """The Conv/MatMul/Gemm nodes of the fp32 graph whose precision the latency grid varies.

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


def candidate_grid(model: onnx.ModelProto, config: PipelineConfig) -> list[CandidateSpec]:
    """Every candidate of objective latency, most promising first; ``max_trials`` takes a prefix.

    Order: calibration algorithm (the configured one, then the others) > fp32 fallback set (none,
    each compute node alone in :func:`compute_nodes` order, then pairs; never all of them) > quantization format (the
    configured one, then the other). The algorithm moves accuracy, hardly speed, so it is the
    outermost axis: the cheap prefix covers every speed-relevant variant with the configured
    algorithm. (Objective latency needs static quantization: the config refuses it with dynamic.)
    """
    quant = config.quantization
    nodes = compute_nodes(model, config)
    # A set covering every compute node would leave nothing in int8: not a candidate (an MLP has two).
    fallbacks = [
        fallback
        for fallback in [(), *((name,) for name in nodes), *itertools.combinations(nodes, 2)]
        if len(fallback) < len(nodes) or not fallback
    ]
    configured = quant.calibration_algorithm
    algorithms = [configured, *(a for a in CalibrationAlgorithm if a is not configured)]
    formats = [quant.format, *(f for f in QuantFormat if f is not quant.format)]
    return [
        CandidateSpec(quant_format, algorithm, fallback)
        for algorithm in algorithms
        for fallback in fallbacks
        for quant_format in formats
    ]


def quantize_for_latency(
    model: onnx.ModelProto,
    calibration: LabelledImages,
    evaluate: Callable[[onnx.ModelProto], float],
    images: np.ndarray,
    config: PipelineConfig,
    workspace: Path,
    source: Path,
) -> TuningOutcome:
    """Objective latency: make, screen, score and time the candidate grid; keep the fastest passing candidate.

    ``model`` is the verified batch-capable fp32 model (tuning/graph/rewrite.py): the accuracy and speed
    baseline, and what INC quantizes, so every candidate and the emitted model take any batch size.
    Every candidate gets the exact rewrites of :func:`tuning.graph.rewrite.deployment_rewrites`. Speed is
    screened before accuracy is scored (:func:`score_fastest_first`): a candidate that cannot win is
    not scored. Raises TuningError when no candidate meets the criterion, or, with
    ``tuning.latency.if_slower_than_fp32: fail``, when none is faster than fp32.
    """
    started = time.monotonic()
    trials = [record_trial(0, evaluate(model), model, [], config, model)]
    trials, models = make_candidates(model, calibration, config, workspace, source, trials)
    settings = latency_settings(config)
    session = SessionSettings.of(config)
    runtime = config.deployment.runtime
    screening, conditions, unloadable = screen(model, models, images, settings, session, runtime, source)
    trials = [
        dataclasses.replace(trial, unloadable=unloadable.get(_original(trial))) if trial.index else trial
        for trial in trials
    ]
    loadable = {index: candidate for index, candidate in models.items() if index not in unloadable}
    if not loadable:
        first = next(iter(unloadable.values()), "no candidate was made")
        raise TuningError(f"deployment.runtime {runtime.value} can load none of the {len(models)} candidates: {first}")
    trials = score_fastest_first(trials, loadable, screening, evaluate, config, model)
    passing = [index for index in loadable if trials[index].meets_criterion]
    if not passing:
        raise TuningError(no_model_message(trials, workspace / "inc.log"))
    best = min(screening[index] for index in passing)
    finalists = {index: models[index] for index in passing if screening[index] <= SCREEN_FACTOR * best}
    targets = [benchmark.BenchmarkTarget("fp32", model, source, runtime)] + [
        benchmark.BenchmarkTarget(f"trial {index}", candidate, Path(f"<candidate trial {index} of {source}>"), runtime)
        for index, candidate in finalists.items()
    ]
    candidates_done = time.monotonic()
    performances = benchmark.measure(targets, images, settings, session, label="timing candidates")
    seconds = {"candidates": candidates_done - started, "measurement": time.monotonic() - candidates_done}
    batch_size = max(settings.batch_sizes)
    trials = with_performance(trials, performances, batch_size)
    fp32 = performances["fp32"]

    def time_ratio(mine: int, theirs: int) -> Interval:
        # Both candidates ran in the same turns as fp32: the interval is widened by fp32's A/A pair like theirs.
        return performances[f"trial {mine}"].latency.time_ratio(performances[f"trial {theirs}"].latency, fp32.noise_floor())

    file_bytes = {index: finalists[index].ByteSize() for index in finalists}
    chosen, reason = choose_fastest(trials, time_ratio, file_bytes, config.tuning.latency.tie_margin)
    trials[chosen] = dataclasses.replace(trials[chosen], chosen=True, reason=reason)
    written = performances[f"trial {chosen}"]
    verdict = Verdict(
        written.latency_ratio(fp32),
        written.throughput_ratio(fp32, batch_size),
        batch_size,
        fp32.noise_floor(),
        capture_environment().features(),
    )
    slower = f"int8 does not pay on this machine: {verdict.line()}" if verdict.slower_than_fp32 else None
    if slower and config.tuning.latency.if_slower_than_fp32 is SlowerThanFp32.FAIL:
        raise SlowerThanFp32Error(f"{slower}; nothing written (tuning.latency.if_slower_than_fp32: fail)")
    return TuningOutcome(
        model=models[chosen],
        fp32_accuracy=trials[0].accuracy,
        int8_accuracy=trials[chosen].accuracy,
        trials=trials,
        objective=Objective.LATENCY,
        chosen_index=chosen,
        reason=reason,
        measurement=measurement_conditions(config)
        | {"seconds": seconds, "runtime_conditions": conditions, "verdict": verdict.to_json()},
        warning=slower,
    )


def make_candidates(
    model: onnx.ModelProto,
    calibration: LabelledImages,
    config: PipelineConfig,
    workspace: Path,
    source: Path,
    trials: list[Trial],
) -> tuple[list[Trial], dict[int, onnx.ModelProto]]:
    """INC makes every candidate of the grid (``max_trials``, ``timeout_s``); each is rewritten and checked.

    Returns the trials, unscored, and the distinct candidates by trial index; a candidate with the
    same bytes as an earlier one is recorded as ``same_model_as`` it and not kept twice.
    """
    started = time.monotonic()
    tuning = config.tuning
    trials = list(trials)
    requested = fp32_requests(model, config, source)
    models: dict[int, onnx.ModelProto] = {}
    seen: dict[bytes, int] = {}
    calibration_loader = BatchLoader(calibration, config.calibration.batch_size)
    grid = candidate_grid(model, config)[: tuning.max_trials]
    for spec in tqdm(grid, desc="candidates", unit="candidate", disable=None, leave=False):
        if tuning.timeout_s and time.monotonic() - started >= tuning.timeout_s:
            break
        source_copy = onnx.ModelProto()
        source_copy.CopyFrom(model)
        what = f"making candidate {len(trials)} ({spec.description})"
        result = fit(
            source_copy,
            inc_config(config, requested, spec),
            workspace,
            seed=tuning.seed,
            timeout_s=tuning.timeout_s,
            what=what,
            calibration_loader=calibration_loader,
        )
        if result is None:
            raise TuningError(
                f"INC returned no model for candidate {len(trials)} ({spec.description}); see {workspace / 'inc.log'}"
            )
        candidate, rewrites = deployment_rewrites(result.model, config.deployment.runtime)
        made = {
            "quant_format": spec.quant_format.value,
            "calibration_algorithm": spec.calibration_algorithm.value,
            "fp32_fallback": spec.fp32_fallback,
            "rewrites": tuple(rewrites),
        }
        # A fallback INC ignores would make a candidate whose label claims what its graph does not hold.
        check_kept_in_fp32(model, candidate, (*requested, *spec.fp32_fallback), f"candidate {len(trials)} ({spec.description})")
        key = candidate.SerializeToString(deterministic=True)
        index = len(trials)
        if key in seen:
            trials.append(dataclasses.replace(trials[seen[key]], index=index, same_model_as=seen[key], **made))
            continue
        seen[key] = index
        models[index] = candidate
        trials.append(dataclasses.replace(record_trial(index, None, candidate, trials, config, model), **made))
    return trials, models


def score_fastest_first(
    trials: list[Trial],
    models: dict[int, onnx.ModelProto],
    screening: dict[int, float],
    evaluate: Callable[[onnx.ModelProto], float],
    config: PipelineConfig,
    source: onnx.ModelProto,
) -> list[Trial]:
    """Score the candidates' accuracy in order of their screening ratio, fastest first, while one can still win.

    Once the fastest passing candidate is known, a candidate more than SCREEN_FACTOR times slower in the
    screening round could not be timed further, let alone chosen: it and every slower one stay unscored
    (accuracy None). Duplicates take their original's results.
    """
    scored = list(trials)
    first_passing: float | None = None
    for index in sorted(models, key=lambda i: (screening[i], i)):
        if first_passing is not None and screening[index] > SCREEN_FACTOR * first_passing:
            break
        made = {field: getattr(scored[index], field) for field in _MADE_FIELDS}
        trial = record_trial(index, evaluate(models[index]), models[index], scored[:1], config, source)
        scored[index] = dataclasses.replace(trial, **made)
        if trial.meets_criterion and first_passing is None:
            first_passing = screening[index]
    return [
        dataclasses.replace(
            scored[_original(trial)] if trial.same_model_as is not None else trial,
            index=trial.index,
            same_model_as=trial.same_model_as,
            screening_ratio=screening.get(_original(trial)),
            **{field: getattr(trial, field) for field in _MADE_FIELDS},
        )
        if trial.index
        else trial
        for trial in scored
    ]


# How a candidate was made: its own even when it made the same bytes as an earlier one.
_MADE_FIELDS = ("quant_format", "calibration_algorithm", "fp32_fallback", "rewrites")


def _original(trial: Trial) -> int:
    return trial.same_model_as if trial.same_model_as is not None else trial.index


