"""Objective latency: the fastest int8 candidate that meets the accuracy criterion.

INC stops at its first candidate meeting the criterion, and on a small CNN that candidate can be
slower than fp32. Here a grid of candidates is built from the model's graph (:func:`candidate_grid`),
each one made by INC (``quantization.fit`` with op-wise configs, no evaluation function), scored
with the same evaluator as objective accuracy, then all of them are timed together with the fp32
model (tuning/benchmark.py, interleaved, in rounds). The fastest passing candidate is kept, up to
a noise rule (:func:`choose_fastest`) that makes reruns emit the same model.

INC's own ``TuningCriterion(objective="performance")`` does not fit: it times the evaluation
function's wall clock in INC's sessions (not batch-1 latency under this project's session options)
and still stops at the first candidate meeting the criterion.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tqdm import tqdm

from tuning import benchmark
from tuning.config import BenchmarkSection, CalibrationAlgorithm, Objective, PipelineConfig, QuantFormat
from tuning.data import BatchLoader, LabelledImages
from tuning.errors import TuningError
from tuning.graph import COMPUTE_OP_TYPES
from tuning.quantize import (
    CandidateSpec,
    Trial,
    TuningOutcome,
    check_kept_in_fp32,
    fp32_requests,
    inc_config,
    interrupts_survive_inc,
    no_model_message,
    record_trial,
)



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
    batch_model: onnx.ModelProto,
    calibration: LabelledImages,
    evaluate: Callable[[onnx.ModelProto], float],
    images: np.ndarray,
    config: PipelineConfig,
    workspace: Path,
    source: Path,
) -> TuningOutcome:
    """Objective latency: make, evaluate and time the candidate grid; keep the fastest passing candidate.

    ``model`` is the fp32 model (accuracy and latency baseline); ``batch_model`` its verified
    batch-capable copy (tuning/benchmark.py), which INC quantizes, so every candidate and the
    emitted model take any batch size: the model measured at batch 256 is the model deployed.
    Raises TuningError when no candidate meets the accuracy criterion.
    """
    from neural_compressor import quantization, set_random_seed, set_workspace

    started = time.monotonic()
    workspace.mkdir(parents=True, exist_ok=True)
    set_workspace(str(workspace))
    tuning = config.tuning
    trials = [record_trial(0, evaluate(model), model, [], config, model)]
    requested = fp32_requests(batch_model, config, source)
    models: dict[int, onnx.ModelProto] = {}
    seen: dict[bytes, int] = {}
    calibration_loader = BatchLoader(calibration, config.calibration.batch_size)
    grid = candidate_grid(batch_model, config)[: tuning.max_trials]
    for spec in tqdm(grid, desc="candidates", unit="candidate", disable=None, leave=False):
        if tuning.timeout_s and time.monotonic() - started >= tuning.timeout_s:
            break
        made = {
            "quant_format": spec.quant_format.value,
            "calibration_algorithm": spec.calibration_algorithm.value,
            "fp32_fallback": spec.fp32_fallback,
        }
        set_random_seed(tuning.seed)
        source_copy = onnx.ModelProto()
        source_copy.CopyFrom(batch_model)
        try:
            with interrupts_survive_inc(config.tuning.timeout_s):
                result = quantization.fit(source_copy, inc_config(config, requested, spec), calib_dataloader=calibration_loader)
        except Exception as exc:  # INC raises bare Exceptions of many kinds from deep inside its adaptors
            raise TuningError(
                f"INC failed making candidate {len(trials)} ({spec.description}): {exc.__class__.__name__}: {exc}"
            ) from None
        if result is None:
            raise TuningError(
                f"INC returned no model for candidate {len(trials)} ({spec.description}); see {workspace / 'inc.log'}"
            )
        candidate = result.model
        # A fallback INC ignores would make a candidate whose label claims what its graph does not hold.
        what = f"candidate {len(trials)} ({spec.description})"
        check_kept_in_fp32(batch_model, candidate, (*requested, *spec.fp32_fallback), what)
        key = candidate.SerializeToString(deterministic=True)
        index = len(trials)
        if key in seen:
            trials.append(dataclasses.replace(trials[seen[key]], index=index, same_model_as=seen[key], **made))
            continue
        seen[key] = index
        models[index] = candidate
        trials.append(dataclasses.replace(record_trial(index, evaluate(candidate), candidate, trials, config, batch_model), **made))
    if not any(trial.meets_criterion for trial in trials[1:]):
        raise TuningError(no_model_message(trials, workspace / "inc.log"))

    settings = latency_settings(config)
    targets = [benchmark.BenchmarkTarget("fp32", model, source)] + [
        benchmark.BenchmarkTarget(f"trial {index}", candidate, Path(f"<candidate trial {index} of {source}>"))
        for index, candidate in models.items()
    ]
    candidates_done = time.monotonic()
    rounds = benchmark.measure_rounds(targets, images, settings, tuning.latency.rounds)
    seconds = {"candidates": candidates_done - started, "measurement": time.monotonic() - candidates_done}
    trials = _with_performance(trials, rounds, max(settings.batch_sizes))
    chosen, reason = choose_fastest(trials, tuning.latency.tie_margin)
    trials[chosen] = dataclasses.replace(trials[chosen], chosen=True, reason=reason)
    return TuningOutcome(
        model=models[chosen],
        fp32_accuracy=trials[0].accuracy,
        int8_accuracy=trials[chosen].accuracy,
        trials=trials,
        objective=Objective.LATENCY,
        chosen_index=chosen,
        reason=reason,
        measurement=measurement_conditions(config) | {"seconds": seconds},
    )


def latency_settings(config: PipelineConfig) -> BenchmarkSection:
    """The benchmark settings of objective latency's measurement: batch 1 and the largest batch size."""
    latency = config.tuning.latency
    return BenchmarkSection(
        warmup=latency.warmup,
        iterations=latency.iterations,
        batch_sizes=(max(config.benchmark.batch_sizes),),
        intra_op_threads=config.benchmark.intra_op_threads,
        reference_models=(),
    )


def measurement_conditions(config: PipelineConfig) -> dict[str, Any]:
    """How objective latency timed its candidates, for the summary and the report."""
    settings = latency_settings(config)
    latency = config.tuning.latency
    return {
        "models": "fp32 and every distinct candidate, interleaved",
        "rounds": latency.rounds,
        "warmup": latency.warmup,
        "iterations": latency.iterations,
        "runs_at_batch_per_round": {
            str(b): dict(zip(("warmup", "timed"), benchmark.runs_at_batch(settings, b, latency.rounds)))
            for b in sorted({1, *settings.batch_sizes})
        },
        "throughput_batch_size": max(settings.batch_sizes),
        "intra_op_threads": settings.intra_op_threads,
        "tie_margin": latency.tie_margin,
        "session_options": benchmark.describe_session_options(settings.intra_op_threads),
    }


def _with_performance(trials: list[Trial], rounds: Sequence[dict[str, Any]], batch_size: int) -> list[Trial]:
    """Fill in every trial's latency and throughput from the rounds (a duplicate takes its original's).

    Ratios are taken within each round (both models ran interleaved in it) and their median over
    the rounds is the trial's ratio; p50 and images/s pool every round's runs.
    """
    def name(trial: Trial) -> str:
        index = trial.same_model_as if trial.same_model_as is not None else trial.index
        return "fp32" if index == 0 else f"trial {index}"

    filled = []
    for trial in trials:
        key = name(trial)
        perf = benchmark.pooled([measured[key] for measured in rounds])
        latency_rounds = tuple(measured[key].latency.p50 / measured["fp32"].latency.p50 for measured in rounds)
        throughput_rounds = [
            measured[key].throughput_at(batch_size).images_per_s
            / measured["fp32"].throughput_at(batch_size).images_per_s
            for measured in rounds
        ]
        filled.append(
            dataclasses.replace(
                trial,
                latency_p50_ms=perf.latency.p50,
                latency_ratio=float(np.median(latency_rounds)),
                latency_ratio_rounds=latency_rounds,
                throughput_images_per_s=perf.throughput_at(batch_size).images_per_s,
                throughput_ratio=float(np.median(throughput_rounds)),
            )
        )
    return filled


def ties_with(trial: Trial, fastest: Trial, tie_margin: float) -> bool:
    """Whether ``trial`` is as fast as ``fastest`` within the measurement's noise.

    The two are compared round by round: in each round both ran interleaved, so their ratio
    ``p50(trial) / p50(fastest)`` (= the ratio of their per-round ratios to fp32) is free of the
    load that moves whole rounds. ``trial`` is slower only when it is slower by more than
    ``tie_margin`` in every round; otherwise it ties.
    """
    return min(
        mine / theirs for mine, theirs in zip(trial.latency_ratio_rounds, fastest.latency_ratio_rounds)
    ) <= 1 + tie_margin


def choose_fastest(trials: Sequence[Trial], tie_margin: float) -> tuple[int, str]:
    """The emitted candidate and why: the fastest passing one, up to noise.

    The fastest is the passing candidate with the lowest p50 latency ratio (then higher accuracy).
    Of the passing candidates that tie with it (:func:`ties_with`), the earliest in the candidate
    order is chosen: which of two candidates within noise of each other measures faster changes
    from run to run; the order does not, so the same config gives the same model.
    """
    passing = [t for t in trials[1:] if t.meets_criterion and t.same_model_as is None]
    fastest = min(passing, key=lambda t: (t.latency_ratio, -t.accuracy, t.index))
    tied = [t for t in passing if ties_with(t, fastest, tie_margin)]
    chosen = tied[0]
    summary = f"{len(passing)} passing candidate{'s' if len(passing) != 1 else ''}"
    noise = f"within noise of it (no more than {tie_margin:.0%} slower in at least one round)"
    if chosen is fastest:
        reason = f"fastest of {summary}: p50 {fastest.latency_ratio:.2f}x fp32"
        others = [t.index for t in tied if t is not fastest]
        if others:
            reason += f"; trials {', '.join(map(str, others))} are {noise} but later in the candidate order"
    else:
        reason = (
            f"p50 {chosen.latency_ratio:.2f}x fp32; the earliest in the candidate order of the {len(tied)} of "
            f"{summary} that tie with the fastest (trial {fastest.index}, p50 {fastest.latency_ratio:.2f}x fp32), "
            f"i.e. are {noise}"
        )
    return chosen.index, reason
