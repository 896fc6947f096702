"""How objective latency times its candidates: the screening set, the settings, and the trials' ratios.

Every timing goes through the one measurement entry point, :func:`tuning.measure.benchmark.measure`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tuning.config.enums import Runtime
from tuning.config.schema import BenchmarkSection, PipelineConfig
from tuning.errors import InputError
from tuning.measure import benchmark
from tuning.measure.measurements import REFERENCE, Measurements
from tuning.measure.paired import MIN_CALLS
from tuning.measure.runtimes import SessionSettings, open_runner
from tuning.measure.statistics import set_ratios
from tuning.search.choice import CHOICE_RULE, PREFERENCE
from tuning.search.trials import Trial

# Candidates slower than this times the best one in the screening set are not timed further (:func:`screen`).
SCREEN_FACTOR = 1.25
# Of the passing candidates within SCREEN_FACTOR, this many fastest by screening are timed in full, and the most
# preferred one (tuning/search/choice.py) besides: the full timing costs the same per model, and on a CNN most
# candidates screen within 1.25x of each other (a 5-conv CNN: 22 of 26), which made it the run's longest step.
MAX_FINALISTS = 4
# Timings at most of a comparison whose interval holds 1 - tie_margin: such a pair is timed again in as many session
# sets, then left out (the greedy search's single fallbacks, tuning/search/plan.py) or to the preference (the
# finalists' choice, tuning/search/finalists.py).
MAX_TIMINGS = 3
# Timed calls per model in each session set of the timing for a search's decisions, after MIN_CALLS warm-up calls:
# the greedy search times 2N + 2 models in up to 18 sets. With tuning.latency's 400 calls and 0.05 s per model and
# set, a 20-convolution CNN (46 models) was still in that timing after 8 minutes on a busy machine; with 20
# calls the per-set medians were so noisy that LeNet's first Conv, 0.56x [0.42-0.73] with 400, went undecided
# (0.80x [0.51-1.09], both at load 13-15 on 2 cores).
DECISION_CALLS = 100


def screen(
    fp32: onnx.ModelProto,
    candidates: dict[int, onnx.ModelProto],
    images: np.ndarray,
    settings: BenchmarkSection,
    session: SessionSettings,
    runtime: Runtime,
    source: Path,
    measure: Callable[..., dict[str, benchmark.Performance]] = benchmark.measure,
) -> tuple[dict[int, float], dict[str, Any], dict[int, str]]:
    """Batch-1 p50 of every candidate relative to fp32 in one short interleaved round (the screening round),
    on the deployment's runtime.

    A candidate more than SCREEN_FACTOR times slower than the fastest passing one cannot win the full
    measurement: it is neither scored nor timed further (most of a large grid is clearly slower).
    Returns the ratios, how the runtime compiled the fp32 model (read back), and why each candidate
    the runtime cannot load was left out (OpenVINO refuses some QOperator graphs). ``measure`` is
    :func:`tuning.measure.benchmark.measure` unless a test injects a controlled timing.
    """
    unloadable: dict[int, str] = {}
    for index, candidate in candidates.items():
        try:
            open_runner(candidate, runtime, session, f"candidate {index}")
        except InputError as exc:
            unloadable[index] = str(exc)
    targets = [benchmark.BenchmarkTarget("fp32", fp32, source, runtime)] + [
        benchmark.BenchmarkTarget(f"trial {index}", candidate, Path(f"<candidate trial {index} of {source}>"), runtime)
        for index, candidate in candidates.items()
        if index not in unloadable
    ]
    screening = settings.model_copy(update={"rounds": 1})
    performances = measure(
        targets, images, screening, session, label="screening candidates", throughput_batch_sizes=()
    )
    fp32_performance = performances.pop("fp32")
    ratios = {
        int(name.removeprefix("trial ")): performance.latency.time_ratio(fp32_performance.latency).value
        for name, performance in performances.items()
    }
    return ratios, fp32_performance.conditions, unloadable


def latency_settings(config: PipelineConfig) -> BenchmarkSection:
    """The benchmark settings of objective latency's measurement: batch 1 and the largest batch size."""
    latency = config.tuning.latency
    return BenchmarkSection(
        warmup=latency.warmup,
        iterations=latency.iterations,
        min_time_s=latency.min_time_s,
        rounds=latency.rounds,
        batch_sizes=(max(config.benchmark.batch_sizes),),
        intra_op_threads=config.benchmark.intra_op_threads,
        reference_models=(),
    )


def measurement_conditions(config: PipelineConfig) -> dict[str, Any]:
    """How objective latency timed its candidates, for the summary and the report."""
    settings = latency_settings(config)
    latency = config.tuning.latency
    return {
        "models": (
            "fp32, a second fp32 session (the A/A pair) and the distinct candidates, in turns: each candidate "
            "once in one screening session set at batch 1 with fp32 (one per search stage), then the session sets "
            f"below (rounds) at batch 1 for the ones meeting the accuracy criterion within {SCREEN_FACTOR}x of the "
            f"screening's best (the {MAX_FINALISTS} fastest by screening and the most preferred one), as many again for "
            f"the chosen one and each one whose interval against it holds 1 - tie_margin (up to {MAX_TIMINGS} timings "
            "in all), then as many session sets at the throughput batch size for the chosen one alone (the choice "
            "reads batch 1 only)"
        ),
        "min_calls": MIN_CALLS,
        "screen_factor": SCREEN_FACTOR,
        "max_finalists": MAX_FINALISTS,
        "final_timings": MAX_TIMINGS,
        "rounds": latency.rounds,
        "warmup": latency.warmup,
        "iterations": latency.iterations,
        "min_time_s": latency.min_time_s,
        "throughput_batch_size": max(settings.batch_sizes),
        "intra_op_threads": settings.intra_op_threads,
        "tie_margin": latency.tie_margin,
        "runtime": config.deployment.runtime.value,
        "choice_rule": CHOICE_RULE.format(margin=f"{latency.tie_margin:.0%}"),
        "preference": PREFERENCE,
        "ratio_statistic": (
            "median over session sets of the paired per-call ratios; interval: order-statistic confidence "
            "interval of that median widened by the A/A pair's excursion (docs/measurement.md)"
        ),
        "session_options": SessionSettings.of(config).describe(),
    }


def timed_fields(
    name: str,
    measurements: Measurements,
    at_batch: Mapping[str, benchmark.Performance] | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The :class:`Trial` fields of the model timed as ``name``: batch-1 latency over every measurement in
    ``measurements`` that timed it, and throughput at ``batch_size`` where ``at_batch`` timed it.

    Ratios against fp32 are paired (tuning/measure/statistics.py): latency as time int8/fp32, throughput as
    images/s int8/fp32; each with its interval (widened by fp32's A/A pair) and its per-session-set values.
    p50 and images/s pool every set's calls.
    """
    latency = measurements.time_ratio(name, REFERENCE)
    fields: dict[str, Any] = dict(
        latency_p50_ms=measurements.p50_ms(name),
        latency_ratio=latency.value,
        latency_ratio_interval=(latency.low, latency.high),
        latency_ratio_rounds=tuple(measurements.set_ratios(name, REFERENCE)),
    )
    performance, fp32 = (at_batch or {}).get(name), (at_batch or {}).get(REFERENCE)
    if performance is not None and fp32 is not None and any(t.batch_size == batch_size for t in performance.throughput):
        throughput = performance.throughput_ratio(fp32, batch_size)
        timing, reference = performance.throughput_at(batch_size), fp32.throughput_at(batch_size)
        fields |= dict(
            throughput_images_per_s=timing.images_per_s,
            throughput_ratio=throughput.value,
            throughput_ratio_interval=(throughput.low, throughput.high),
            throughput_ratio_rounds=tuple(1.0 / r for r in set_ratios(timing.rounds_ms, reference.rounds_ms)),
        )
    return fields


def with_performance(
    trials: list[Trial],
    measurements: Measurements,
    at_batch: Mapping[str, benchmark.Performance] | None = None,
    batch_size: int | None = None,
) -> list[Trial]:
    """Every timed trial with its :func:`timed_fields` (a duplicate takes its original's); without ``at_batch``, the
    batch-1 fields only. Objective latency times the throughput batch for the chosen candidate only: the others'
    throughput fields stay None, and so do every field of a candidate not timed (it misses the accuracy
    criterion, or was screened out)."""
    filled = []
    for trial in trials:
        index = trial.same_model_as if trial.same_model_as is not None else trial.index
        name = REFERENCE if index == 0 else f"trial {index}"
        timed = measurements.session_sets(name) > 0
        filled.append(dataclasses.replace(trial, **timed_fields(name, measurements, at_batch, batch_size)) if timed else trial)
    return filled
