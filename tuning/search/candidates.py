"""Objective latency's candidates: made by INC within the budget, screened for speed, scored fastest first.

A candidate whose graph differs from an earlier one's only in the values of its numeric constants (weights, biases,
scales, zero points: :func:`graph_key`) is a *graph twin* of it (the same fallbacks and format under another
calibration algorithm): it runs the same operators on the same shapes, so it takes its original's screening ratio
instead of being screened, and of twins that meet the criterion only the first by preference is timed in full (the
choice rule, which prefers the earlier trial among candidates indistinguishable in speed, would pick it). On
mnist-12's grid of 42 candidates: 28 distinct models, 14 graphs. onnxruntime's optimizers take some decisions on
constant values; on that grid they optimize every twin pair to the same operators (docs/pipeline.md).

:class:`Candidates` holds everything a search has made so far (its trials, the distinct models, their
screening ratios) and is the only way a search makes, screens or scores one: the searches of
tuning/search/plan.py decide *which* candidates, this module does it the same way for all of them.
Scoring goes through a :class:`~tuning.search.scoring.Scorer`, told which candidates may be scored next, so
that under MPI other ranks score them in parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tuning.config.schema import PipelineConfig
from tuning.data.datasets import BatchLoader, LabelledImages
from tuning.errors import TuningError
from tuning.graph.identity import graph_key
from tuning.graph.rewrite import BEFORE_QUANTIZER, deployment_rewrites
from tuning.inc.fit import fit
from tuning.inc.mapping import CandidateSpec, check_kept_in_fp32, fp32_requests, inc_config
from tuning.measure import benchmark
from tuning.measure.measurements import Measurements
from tuning.measure.paired import MIN_CALLS
from tuning.measure.runtimes import SessionSettings
from tuning.search.budget import Budget, StageRecord
from tuning.search.choice import preference
from tuning.search.scoring import Scorer
from tuning.search.timing import DECISION_CALLS, MAX_FINALISTS, SCREEN_FACTOR, latency_settings, screen
from tuning.search.trials import Trial, record_trial

# How a candidate was made: its own even when it made the same bytes as an earlier one.
_MADE_FIELDS = ("quant_format", "calibration_algorithm", "fp32_fallback", "rewrites", "same_graph_as")

Measure = Callable[..., dict[str, benchmark.Performance]]  # benchmark.measure's signature


class Candidates:
    """The candidates of one objective-latency search, trial 0 being the fp32 model.

    ``measure`` times models (tuning/measure/benchmark.py's ``measure``; a test injects a controlled one).
    ``scorer`` scores the candidates (default: ``evaluate`` in this process); the fp32 baseline is scored here.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        calibration: LabelledImages,
        evaluate: Callable[[onnx.ModelProto], float],
        images: np.ndarray,
        config: PipelineConfig,
        workspace: Path,
        source: Path,
        budget: Budget,
        measure: Measure = benchmark.measure,
        scorer: Scorer | None = None,
    ) -> None:
        self.model, self.evaluate, self.images, self.config = model, evaluate, images, config
        self.scorer = Scorer(evaluate) if scorer is None else scorer
        self.workspace, self.source, self.budget, self.measure = workspace, source, budget, measure
        self.models: dict[int, onnx.ModelProto] = {}  # distinct candidates by trial index
        # Distinct OpenVINO candidates whose pools moved before their quantizers, as they were before that move
        # (the model and its rewrites): the finalists are timed in both placements (tuning/search/latency.py).
        self.quantized_pools: dict[int, tuple[onnx.ModelProto, list[str]]] = {}
        self.screening: dict[int, float] = {}  # batch-1 p50 / fp32's in the candidate's screening round
        self.unloadable: dict[int, str] = {}
        self.conditions: dict[str, Any] = {}
        self.screened = 0
        self.decision_timed = 0  # candidate timings in session sets for a search's decisions (time_together)
        self.scored = 0
        # The search's time by step; scoring includes the fp32 model's.
        self.seconds = {"making": 0.0, "screening": 0.0, "scoring": 0.0}
        with self._spent("scoring"):
            self.trials: list[Trial] = [record_trial(0, evaluate(model), model, [], config, model)]
        self._seen: dict[bytes, int] = {}
        self._graphs: dict[str, int] = {}  # graph without its constants' values -> the first distinct candidate
        self.twin_of: dict[int, int] = {}  # distinct candidate -> that first one, when it is not it
        self._requested = fp32_requests(model, config, source)
        self._calibration = BatchLoader(calibration, config.calibration.batch_size)

    def stage(self, name: str, specs: Sequence[CandidateSpec]) -> StageRecord:
        """Open a stage of the search that plans to make ``specs`` (or at most these, when results decide)."""
        return self.budget.stage(name, [spec.description for spec in specs])

    def make(self, record: StageRecord, specs: Sequence[CandidateSpec]) -> list[int | None]:
        """INC makes each of ``specs`` while the budget allows, then the new distinct graphs are screened.

        Returns, per spec, the trial index of its distinct model (an earlier one's when INC made the same
        bytes), or None when the budget left it unmade (recorded under the stage ``record``).
        """
        started = time.monotonic()
        made: list[int | None] = []
        new: list[int] = []
        for spec in specs:
            if self.budget.spent():
                record.not_made.append(spec.description)
                made.append(None)
                continue
            with self._spent("making"):
                index = self._make_one(spec)
            self.budget.made_one(record, spec.description)
            made.append(self.original(index))
            if self.original(index) == index:
                new.append(index)
        self.screen([index for index in new if index not in self.twin_of])
        for index in new:  # a graph twin shares its original's speed, and its loadability: the same operators
            original = self.twin_of.get(index)
            if original in self.screening:
                self.screening[index] = self.screening[original]
            if original in self.unloadable:
                self.unloadable[index] = self.unloadable[original]
        self.budget.close_stage(record, time.monotonic() - started)
        return made

    def _make_one(self, spec: CandidateSpec) -> int:
        tuning = self.config.tuning
        index = len(self.trials)
        source_copy = onnx.ModelProto()
        source_copy.CopyFrom(self.model)
        what = f"making candidate {index} ({spec.description})"
        result = fit(
            source_copy,
            inc_config(self.config, self._requested, spec),
            self.workspace,
            seed=tuning.seed,
            timeout_s=tuning.timeout_s,
            what=what,
            calibration_loader=self._calibration,
        )
        if result is None:
            raise TuningError(f"INC returned no model for candidate {index} ({spec.description}); see {self.workspace / 'inc.log'}")
        candidate, rewrites = deployment_rewrites(result.model, self.config.deployment.runtime)
        made = {
            "quant_format": spec.quant_format.value,
            "calibration_algorithm": spec.calibration_algorithm.value,
            "fp32_fallback": spec.fp32_fallback,
            "rewrites": tuple(rewrites),
        }
        # A fallback INC ignores would make a candidate whose label claims what its graph does not hold.
        check_kept_in_fp32(self.model, candidate, (*self._requested, *spec.fp32_fallback), f"candidate {index} ({spec.description})")
        key = candidate.SerializeToString(deterministic=True)
        if key in self._seen:
            self.trials.append(dataclasses.replace(self.trials[self._seen[key]], index=index, same_model_as=self._seen[key], **made))
            return index
        self._seen[key] = index
        self.models[index] = candidate
        original = self._graphs.setdefault(graph_key(candidate), index)
        if original != index:
            self.twin_of[index] = original
        made["same_graph_as"] = self.twin_of.get(index)
        if any(rewrite.endswith(BEFORE_QUANTIZER) for rewrite in rewrites):
            self.quantized_pools[index] = deployment_rewrites(result.model, self.config.deployment.runtime, False)
        self.trials.append(dataclasses.replace(record_trial(index, None, candidate, self.trials, self.config, self.model), **made))
        return index

    def original(self, index: int) -> int:
        same = self.trials[index].same_model_as
        return index if same is None else same

    def screen(self, indices: Sequence[int]) -> None:
        """One screening round of these distinct candidates with fp32 (tuning/search/timing.py)."""
        if not indices:
            return
        config = self.config
        with self._spent("screening"):
            ratios, conditions, unloadable = screen(
                self.model,
                {index: self.models[index] for index in indices},
                self.images,
                latency_settings(config),
                SessionSettings.of(config),
                config.deployment.runtime,
                self.source,
                self.measure,
            )
        self.screening.update(ratios)
        self.unloadable.update(unloadable)
        self.conditions = self.conditions or conditions
        self.screened += len(ratios)

    def time_together(self, indices: Sequence[int], earlier: Measurements | None = None) -> Measurements:
        """Time these distinct loadable candidates with fp32 and its A/A twin at batch 1 in ``tuning.latency.rounds``
        session sets, in turns as the finalists are timed (tuning/search/latency.py), but DECISION_CALLS timed calls
        per set and no throughput batch; with ``earlier``, added to those measurements (a ratio between two
        candidates timed again reads every set both ran in: narrower intervals).
        """
        config, runtime = self.config, self.config.deployment.runtime
        targets = [benchmark.BenchmarkTarget("fp32", self.model, self.source, runtime)] + [
            benchmark.BenchmarkTarget(f"trial {index}", self.models[index], Path(f"<candidate trial {index} of {self.source}>"), runtime)
            for index in indices
        ]
        settings = latency_settings(config).model_copy(update={"warmup": MIN_CALLS, "iterations": DECISION_CALLS, "min_time_s": 0.0})
        performances = self.measure(
            targets, self.images, settings, SessionSettings.of(config),
            label="timing for the search's decisions", throughput_batch_sizes=(),
        )  # fmt: skip
        self.decision_timed += len(indices)
        return (earlier or Measurements()).added(performances)

    def score(self, index: int) -> Trial:
        """The distinct candidate's trial, its accuracy scored (once: a scored trial keeps its accuracy)."""
        trial = self.trials[index]
        if trial.accuracy is None:
            scored = record_trial(index, self._evaluate(self.models[index]), self.models[index], self.trials[:1], self.config, self.model)
            self.trials[index] = dataclasses.replace(
                scored, screening_ratio=self.screening.get(index), **{name: getattr(trial, name) for name in _MADE_FIELDS}
            )
        return self.trials[index]

    def _evaluate(self, model: onnx.ModelProto) -> float:
        self.scored += 1
        index = next(index for index, made in self.models.items() if made is model)
        with self._spent("scoring"):
            return self.scorer.accuracy(index, model)

    @contextlib.contextmanager
    def _spent(self, step: str) -> Iterator[None]:
        """Add the block's wall time to ``self.seconds[step]``."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] += time.monotonic() - started

    def _unscored(self, indices: Sequence[int]) -> list[tuple[int, onnx.ModelProto]]:
        return [(index, self.models[index]) for index in indices if self.trials[index].accuracy is None]

    def loadable(self) -> dict[int, onnx.ModelProto]:
        return {index: model for index, model in self.models.items() if index not in self.unloadable and index in self.screening}

    def score_fastest_first(self) -> None:
        """Score what the finalists (:meth:`finalists`) need: fastest first until MAX_FINALISTS pass
        (:func:`score_fastest_first`), then, within SCREEN_FACTOR of the fastest passing one, in order of
        preference until one passes (the most preferred candidate that could win)."""
        loadable = self.loadable()
        with self.scorer.ahead(self._unscored(sorted(loadable, key=lambda index: (self.screening[index], index)))):
            self.trials = score_fastest_first(
                self.trials, loadable, self.screening, self._evaluate, self.config, self.model, enough=MAX_FINALISTS,
                twin_of=self.twin_of,
            )
        within = self._within()
        with self.scorer.ahead(self._unscored(within)):
            for index in within:
                if self.score(index).meets_criterion:
                    break
        # Scores nothing more: the duplicates take their originals' results.
        self.trials = score_fastest_first(self.trials, {}, self.screening, self._evaluate, self.config, self.model)

    def _within(self) -> list[int]:
        """Loadable candidates within SCREEN_FACTOR of the fastest passing one, in order of preference."""
        passing = self.passing()
        if not passing:
            return []
        limit = SCREEN_FACTOR * min(self.screening[index] for index in passing)
        return sorted(
            (index for index in self.loadable() if self.screening[index] <= limit),
            key=lambda index: preference(self.trials[index], self.models[index].ByteSize()),
        )

    def passing(self) -> list[int]:
        return [index for index in self.loadable() if self.trials[index].meets_criterion]

    def finalists(self) -> list[int]:
        """The passing candidates timed in full: the MAX_FINALISTS fastest by screening within SCREEN_FACTOR of
        the fastest, and the most preferred passing one within it (the choice rule's first pick when nothing
        is significantly faster than it)."""
        within: list[int] = []
        for index in self._within():  # in order of preference: each graph by its most preferred passing twin
            graph = self.twin_of.get(index, index)
            if self.trials[index].meets_criterion and all(self.twin_of.get(other, other) != graph for other in within):
                within.append(index)
        fastest = sorted(within, key=lambda index: (self.screening[index], index))[:MAX_FINALISTS]
        return fastest + [index for index in within[:1] if index not in fastest]

    def final_trials(self) -> list[Trial]:
        """Every trial, each with its screening ratio, where the runtime refused it, why, and under MPI the rank
        that scored it."""
        return [
            dataclasses.replace(
                trial,
                unloadable=self.unloadable.get(self.original(trial.index)) if trial.index else None,
                rank=self.scorer.rank_of(self.original(trial.index)),
            )
            for trial in self.trials
        ]

    def counts(self) -> dict[str, int]:
        """How many models the search made, screened (timed in one short round), timed in session sets for its
        decisions (the greedy search's single fallbacks) and scored, for the summary; under MPI also how many a
        worker scored ahead that the search never asked for."""
        counts = {
            "made": len(self.trials) - 1,
            "distinct": len(self.models),
            "graph_twins": len(self.twin_of),
            "screened": self.screened,
            "timed_for_decisions": self.decision_timed,
            "scored": self.scored,
        }
        return counts | ({"scored_ahead_unused": self.scorer.unused()} if self.scorer.rank_of(0) is not None else {})


def score_fastest_first(
    trials: list[Trial],
    models: dict[int, onnx.ModelProto],
    screening: dict[int, float],
    evaluate: Callable[[onnx.ModelProto], float],
    config: PipelineConfig,
    source: onnx.ModelProto,
    enough: int | None = None,
    twin_of: dict[int, int] | None = None,
) -> list[Trial]:
    """Score the candidates' accuracy in order of their screening ratio, fastest first, while one can still win.

    Once the fastest passing candidate is known, a candidate more than SCREEN_FACTOR times slower in the
    screening round could not be timed further, let alone chosen: it and every slower one stay unscored
    (accuracy None). With ``enough``, scoring also stops once that many candidates pass. A trial scored
    earlier keeps its accuracy (it is not scored twice). Duplicates take their original's results. A graph twin
    (``twin_of``: the same graph as an earlier candidate, other constants) of a passing candidate is not scored:
    it has the same speed and comes later by preference, so it could not be chosen; ``enough`` counts graphs.
    """
    twin_of = twin_of or {}
    scored = list(trials)
    first_passing: float | None = None
    passed: set[int] = set()  # the graphs with a passing candidate
    for index in sorted(models, key=lambda i: (screening[i], i)):
        if first_passing is not None and screening[index] > SCREEN_FACTOR * first_passing:
            break
        if enough is not None and len(passed) >= enough:
            break
        if twin_of.get(index, index) in passed:
            continue
        if scored[index].accuracy is None:
            made = {field: getattr(scored[index], field) for field in _MADE_FIELDS}
            trial = record_trial(index, evaluate(models[index]), models[index], scored[:1], config, source)
            scored[index] = dataclasses.replace(trial, **made)
        if scored[index].meets_criterion:
            passed.add(twin_of.get(index, index))
            first_passing = screening[index] if first_passing is None else first_passing
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


def _original(trial: Trial) -> int:
    return trial.same_model_as if trial.same_model_as is not None else trial.index
