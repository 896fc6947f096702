"""Objective latency: the fastest int8 candidate that meets the accuracy criterion.

INC stops at its first candidate meeting the criterion, and on a small CNN that candidate can be
slower than fp32. Here a search (tuning/search/plan.py: greedy, linear in the compute nodes, or the
grid) decides which candidates are made within the budget (tuning/search/budget.py), each one made by INC (``quantization.fit`` with op-wise configs, no evaluation function), rewritten
exactly where onnxruntime's default optimizers would slow it down (tuning/graph/rewrite.py), scored with
the same evaluator as objective accuracy; then the passing ones are timed together with the fp32
model (tuning/measure/benchmark.py: in turns of consecutive warm calls, in fresh session sets, under the deployment's session
options). The written candidate is the most preferred one that no other is significantly faster than
(tuning/search/choice.py), and the verdict compares it with fp32 (tuning/measure/verdict.py).
Under MPI only the accuracy scoring is spread over the ranks (tuning/search/scoring.py); rank 0 does the rest.

INC's own ``TuningCriterion(objective="performance")`` does not fit: it times the evaluation
function's wall clock in INC's sessions (not batch-1 latency as users run the model) and still
stops at the first candidate meeting the criterion.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx

from tuning.config.enums import LatencySearch, Objective, SlowerThanFp32
from tuning.config.schema import PipelineConfig
from tuning.data.datasets import LabelledImages
from tuning.errors import SlowerThanFp32Error, TuningError
from tuning.inc import distributed
from tuning.measure import benchmark
from tuning.measure.environment import capture_environment
from tuning.measure.measurements import REFERENCE, Measurements
from tuning.measure.runtimes import SessionSettings
from tuning.measure.verdict import Verdict
from tuning.search.budget import Budget
from tuning.search.candidates import Candidates, Measure
from tuning.search.finalists import choose_finalist
from tuning.search.plan import greedy_search, grid_search, resolved_search
from tuning.search.scoring import Scorer, serve
from tuning.search.timing import latency_settings, measurement_conditions, timed_fields, with_performance
from tuning.search.trials import Trial, TuningOutcome, no_model_message, record_trial


def quantize_for_latency(
    model: onnx.ModelProto,
    calibration: LabelledImages,
    evaluate: Callable[[onnx.ModelProto], float],
    images: np.ndarray,
    config: PipelineConfig,
    workspace: Path,
    source: Path,
    say: Callable[[str], None] = lambda _line: None,
    measure: Measure = benchmark.measure,
) -> TuningOutcome | None:
    """Objective latency: search, screen and score candidates; time the finalists; keep the fastest passing one.

    ``model`` is the verified batch-capable fp32 model (tuning/graph/rewrite.py): the accuracy and speed
    baseline, and what INC quantizes, so every candidate and the emitted model take any batch size.
    Every candidate gets the exact rewrites of :func:`tuning.graph.rewrite.deployment_rewrites`. Speed is
    screened before accuracy is scored (tuning/search/candidates.py): a candidate that cannot win is
    not scored. ``say`` gets one progress line per stage; ``measure`` times models (a test injects a
    controlled one). Raises TuningError when no candidate meets the criterion, or, with
    ``tuning.latency.if_slower_than_fp32: fail``, when none is faster than fp32. Under MPI every rank calls
    this: a worker scores what rank 0 sends it and returns None; rank 0 returns the outcome.
    """
    world = distributed.world()
    if world.rank != 0:
        serve(world, evaluate)
        return None
    started = time.monotonic()
    tuning = config.tuning
    search = resolved_search(model, config)
    budget = Budget(tuning.max_trials, tuning.timeout_s, say, expected=1)
    scorer = Scorer(evaluate, world)
    candidates = Candidates(model, calibration, evaluate, images, config, workspace, source, budget, measure, scorer)
    try:
        (grid_search if search is LatencySearch.GRID else greedy_search)(candidates)
    finally:
        budget.close()
    scorer.close()  # the other ranks are done: the finalists are timed with them idle or gone
    cut = budget.cut_message()
    if cut:
        say(f"tune: warning: {cut}")
    runtime = config.deployment.runtime
    trials = candidates.final_trials()
    models = candidates.models
    if not candidates.loadable():
        first = next(iter(candidates.unloadable.values()), "no candidate was made")
        raise TuningError(f"deployment.runtime {runtime.value} can load none of the {len(models)} candidates: {first}")
    passing = candidates.passing()
    if not passing:
        raise TuningError(no_model_message(trials, workspace / "inc.log") + (f"; {cut}" if cut else ""))
    settings = latency_settings(config)
    session = SessionSettings.of(config)
    finalists = {index: models[index] for index in candidates.finalists()}
    targets = {"fp32": benchmark.BenchmarkTarget("fp32", model, source, runtime)} | {
        f"trial {index}": benchmark.BenchmarkTarget(f"trial {index}", candidate, Path(f"<candidate trial {index} of {source}>"), runtime)
        for index, candidate in finalists.items()
    }
    candidates_done = time.monotonic()
    # The choice reads batch-1 ratios only: the finalists are timed at batch 1 (again where the choice hangs on a
    # pair the noise hides), and the throughput batch is timed for the chosen one alone (with fp32 and its A/A
    # twin), in as many fresh session sets.
    say(f"tune: timing the {len(finalists)} finalist{'s' if len(finalists) != 1 else ''} with fp32 at batch 1 in {settings.rounds} session sets")

    def time_finalists(indices: Sequence[int]) -> dict[str, benchmark.Performance]:
        timed_targets = [targets["fp32"]] + [targets[f"trial {index}"] for index in indices]
        return measure(timed_targets, images, settings, session, label="timing candidates", throughput_batch_sizes=())

    file_bytes = {index: candidate.ByteSize() for index, candidate in finalists.items()}
    final = choose_finalist(trials, list(finalists), time_finalists, file_bytes, config.tuning.latency.tie_margin, say)
    chosen, reason, measurements = final.chosen, final.reason, final.measurements
    latency_done = time.monotonic()
    batch_size = max(settings.batch_sizes)
    name = f"trial {chosen}"
    throughput_targets = [targets["fp32"], targets[name]]
    variant = candidates.quantized_pools.get(chosen)  # an OpenVINO candidate whose pools were moved: weigh both placements
    if variant is not None:
        where = Path(f"<candidate trial {chosen} of {source}>")
        throughput_targets.append(benchmark.BenchmarkTarget(_QUANTIZED_POOLS.format(chosen), variant[0], where, runtime))
    both = " and with quantized pools" if variant is not None else ""
    say(f"tune: timing {name}'s throughput at batch {batch_size}{both} with fp32 in {settings.rounds} session sets")
    # With two placements to weigh, batch 1 is timed again with them: the written one's verdict reads both batches.
    at_batch = measure(throughput_targets, images, settings, session, label="timing throughput", latency=variant is not None)
    if variant is not None:
        measurements = measurements.added(at_batch)
    trials = with_performance(final.trials, measurements, at_batch, batch_size)
    written_model, written = models[chosen], name
    if variant is not None:
        trials[chosen], written_model, written, placement = _pool_placement(
            trials[chosen], (written_model, variant[0], variant[1]), measurements, at_batch, batch_size, model, config
        )
        reason = f"{reason}; {placement}"
    trials[chosen] = dataclasses.replace(trials[chosen], chosen=True, reason=reason)
    seconds = {
        "candidates": candidates_done - started,
        "finalists_at_batch_1": latency_done - candidates_done,
        "chosen_at_throughput_batch": time.monotonic() - latency_done,
    }
    verdict = Verdict(
        measurements.time_ratio(written, REFERENCE),
        at_batch[written].throughput_ratio(at_batch[REFERENCE], batch_size),
        batch_size,
        measurements.noise_floor(written),
        capture_environment().features(),
    )
    slower = f"int8 does not pay on this machine: {verdict.line()}" if verdict.slower_than_fp32 else None
    if slower and config.tuning.latency.if_slower_than_fp32 is SlowerThanFp32.FAIL:
        raise SlowerThanFp32Error(f"{slower}; nothing written (tuning.latency.if_slower_than_fp32: fail)")
    return TuningOutcome(
        model=written_model,
        fp32_accuracy=trials[0].accuracy,
        int8_accuracy=trials[chosen].accuracy,
        trials=trials,
        objective=Objective.LATENCY,
        chosen_index=chosen,
        reason=reason,
        measurement=measurement_conditions(config)
        | {"seconds": seconds, "runtime_conditions": candidates.conditions, "verdict": verdict.to_json()},
        warning=slower,
        search=budget.to_json(search.value)
        | {
            "models": candidates.counts() | {"timed": len(finalists)},
            "finalist_timings": final.timings,
            "seconds_by_step": {step: round(spent, 3) for step, spent in candidates.seconds.items()},
        },
    )


_QUANTIZED_POOLS = "trial {} with quantized pools"


def _pool_placement(
    trial: Trial,
    placements: tuple[onnx.ModelProto, onnx.ModelProto, list[str]],
    measurements: Measurements,
    at_batch: dict[str, benchmark.Performance],
    batch_size: int,
    source: onnx.ModelProto,
    config: PipelineConfig,
) -> tuple[Trial, onnx.ModelProto, str, str]:
    """The chosen OpenVINO candidate in the pool placement to write, the name it was timed under, and why.

    ``placements``: the candidate with its pools before their quantizers, the same with quantized pools, and
    the latter's rewrites.

    Both placements compute the same outputs (tuning/graph/rewrite.py: pool_before_quantize), so throughput at
    the throughput batch decides, where the placement matters (at batch 1 it hardly does): the pools stay
    before their quantizers only where that measured significantly faster (the paired ratio's interval, widened
    by fp32's A/A pair, wholly above 1); otherwise INC's quantized pools are written, which were level with
    NNCF's graph on every CPU measured (docs/openvino-nncf.md).
    """
    moved_name, kept_name = f"trial {trial.index}", _QUANTIZED_POOLS.format(trial.index)
    fp32, moved, kept = at_batch[REFERENCE], at_batch[moved_name], at_batch[kept_name]
    gain = moved.throughput_at(batch_size).time_ratio(kept.throughput_at(batch_size), fp32.noise_floor(batch_size)).inverse()
    measured = f"{gain.value:.2f}x [{gain.low:.2f}-{gain.high:.2f}] the throughput at batch {batch_size}"
    if gain.above(1.0):
        return trial, placements[0], moved_name, f"pools before their quantizers: {measured} of quantized pools"
    _, model, rewrites = placements
    graph = record_trial(trial.index, trial.accuracy, model, [], config, source)
    made = dataclasses.replace(
        trial, **timed_fields(kept_name, measurements, at_batch, batch_size),
        int8_nodes=graph.int8_nodes, fp32_nodes=graph.fp32_nodes, source_precisions=graph.source_precisions,
        fp32_compute_nodes=graph.fp32_compute_nodes, model_sha256=graph.model_sha256, rewrites=tuple(rewrites),
    )  # fmt: skip
    return made, model, kept_name, f"pools left quantized: moving them before their quantizers gave {measured}, not significantly more"
