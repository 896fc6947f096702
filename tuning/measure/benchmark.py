"""Latency and throughput of ONNX classifiers, timed the way users run them.

Every model runs on a :class:`tuning.measure.runtimes.Runner`: a plain ``onnxruntime.InferenceSession`` with
onnxruntime's default options, except the thread count and any session config entries the config's
``deployment`` declares, or an OpenVINO compiled model with OpenVINO's defaults except the thread
count and, when the runtime names one, the precision hint: a speed that needs a setting the user
must remember is not the product's speed.

Timing rule (config ``benchmark`` / ``tuning.latency``, :class:`tuning.config.schema._TimingSection`):
models are measured interleaved, in ``rounds`` rounds. In each round and at each batch size
``b`` every model first runs ``ceil(warmup / b)`` untimed batches; then the models take turns,
each running about ``INTERLEAVE_IMAGES`` images per turn, until every model has run at least
``ceil(iterations / b)`` timed batches and at least ``min_time_s`` seconds. A drift in clock speed
or load hits all models alike, and a fast model is not judged on a few milliseconds.

Statistics come from per-run ``time.perf_counter_ns`` durations. A figure (p50 latency,
throughput = ``b / p50 batch time``) pools every round's runs; its spread is the range of the
per-round values; a ratio between two models is the median of their per-round ratios (both ran
interleaved in each round), with the range of those as its spread.

Models with a fixed batch dimension (the zoo's) are measured above batch 1 through a verified
batch-capable copy (:mod:`tuning.graph.rewrite`).
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tqdm import tqdm

from tuning.config.enums import Runtime
from tuning.config.schema import BenchmarkSection, PipelineConfig
from tuning.data import datasets
from tuning.files.onnx_io import describe, load_model, preprocessing_warning
from tuning.graph.rewrite import batch_capable_copy
from tuning.measure.environment import capture_environment
from tuning.measure.evaluate import (
    check_classifier,
    predict,
    top1_accuracy,
    verify_batch_copy,
)
from tuning.measure.runtimes import (
    Runner,
    SessionSettings,
    conditions_phrase,
    open_runner,
    thread_warning,
)

INTERLEAVE_IMAGES = 100  # images each model runs before the next model's turn
_CYCLED_IMAGES = 2048  # distinct input images cycled through per measurement, bounded for memory


@dataclass(frozen=True)
class BenchmarkTarget:
    """A model to measure on a runtime, under the name the report gives that pair."""

    name: str
    model: onnx.ModelProto
    source: Path
    runtime: Runtime = Runtime.ONNXRUNTIME


@dataclass(frozen=True)
class Spread:
    """A figure and the range of its per-round values."""

    value: float
    low: float
    high: float

    @classmethod
    def of_rounds(cls, values: Sequence[float]) -> Spread:
        return cls(float(np.median(values)), float(min(values)), float(max(values)))

    @classmethod
    def from_json(cls, document: Mapping[str, float]) -> Spread:
        return cls(document["value"], document["min"], document["max"])

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "min": self.low, "max": self.high}


@dataclass(frozen=True)
class Timing:
    """Per-run durations of one model at one batch size, per round."""

    batch_size: int
    warmup_runs: int  # untimed batches in each round
    rounds_ms: tuple[np.ndarray, ...] = field(repr=False, compare=False)

    @property
    def durations_ms(self) -> np.ndarray:
        return np.concatenate(self.rounds_ms)

    @property
    def runs(self) -> int:
        return sum(len(durations) for durations in self.rounds_ms)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.durations_ms, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return float(np.mean(self.durations_ms))

    @property
    def images_per_s(self) -> float:
        return self.batch_size * 1000.0 / self.p50

    @property
    def latency_per_image_ms(self) -> float:
        return self.p50 / self.batch_size

    @property
    def round_p50s(self) -> tuple[float, ...]:
        return tuple(float(np.median(durations)) for durations in self.rounds_ms)

    @property
    def p50_spread(self) -> Spread:
        return Spread(self.p50, min(self.round_p50s), max(self.round_p50s))

    @property
    def images_per_s_spread(self) -> Spread:
        per_round = [self.batch_size * 1000.0 / p50 for p50 in self.round_p50s]
        return Spread(self.images_per_s, min(per_round), max(per_round))

    def ratio_rounds(self, reference: Timing) -> tuple[float, ...]:
        """This model's p50 over ``reference``'s, round by round (both ran interleaved in each round)."""
        return tuple(mine / theirs for mine, theirs in zip(self.round_p50s, reference.round_p50s))


@dataclass(frozen=True)
class Performance:
    """Batch-1 latency of the model as given and throughput of its batch-capable copy per batch size."""

    name: str
    latency: Timing
    throughput: tuple[Timing, ...]
    conditions: dict[str, Any] = field(default_factory=dict, compare=False)  # the runner's, read back

    def throughput_at(self, batch_size: int) -> Timing:
        return next(timing for timing in self.throughput if timing.batch_size == batch_size)

    def latency_ratio(self, reference: Performance) -> Spread:
        """p50 latency at batch 1 relative to ``reference``: median and range of the per-round ratios."""
        return Spread.of_rounds(self.latency.ratio_rounds(reference.latency))

    def throughput_ratio(self, reference: Performance, batch_size: int) -> Spread:
        """Images/s at ``batch_size`` relative to ``reference``: median and range of the per-round ratios."""
        inverse = self.throughput_at(batch_size).ratio_rounds(reference.throughput_at(batch_size))
        return Spread.of_rounds([1.0 / ratio for ratio in inverse])


def batch_sizes(settings: BenchmarkSection) -> tuple[int, ...]:
    """The configured throughput batch sizes, ascending and once each: tables, plots and ratios key on them."""
    return tuple(sorted(set(settings.batch_sizes)))


def runs_at_batch(settings: BenchmarkSection, batch_size: int) -> tuple[int, int]:
    """Warm-up batches and the minimum of timed batches at ``batch_size`` in each round (module docstring)."""
    return math.ceil(settings.warmup / batch_size), math.ceil(settings.iterations / batch_size)


def time_models(
    runners: Mapping[str, Runner],
    images: np.ndarray,
    batch_size: int,
    warmup_runs: int,
    min_runs: int,
    min_seconds: float,
) -> dict[str, np.ndarray]:
    """Per-run durations in ms of every runner at ``batch_size``, interleaved in chunks, for one round.

    Every model runs the same number of timed batches: turns go on until each has run ``min_runs``
    batches and ``min_seconds`` of timed work. Inputs cycle through real images so no model is timed
    on one cached input.
    """
    feeds = {name: _feeds(runner, images, batch_size) for name, runner in runners.items()}
    calls = {name: runner.infer for name, runner in runners.items()}
    chunk = math.ceil(INTERLEAVE_IMAGES / batch_size)
    durations: dict[str, list[int]] = {name: [] for name in runners}
    timed_ns = dict.fromkeys(runners, 0)
    min_ns = int(min_seconds * 1e9)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run would land on whichever model happens to be running
    try:
        for name, infer in calls.items():
            for run in range(warmup_runs):
                infer(feeds[name][run % len(feeds[name])])
        done = 0
        while done < min_runs or min(timed_ns.values()) < min_ns:
            for name, infer in calls.items():
                model_feeds, out = feeds[name], durations[name]
                for run in range(done, done + chunk):
                    feed = model_feeds[run % len(model_feeds)]
                    began = time.perf_counter_ns()
                    infer(feed)
                    out.append(time.perf_counter_ns() - began)
                timed_ns[name] += sum(out[done:])
            done += chunk
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: np.asarray(runs, dtype=np.float64) / 1e6 for name, runs in durations.items()}


def _feeds(runner: Runner, images: np.ndarray, batch_size: int) -> list[dict[str, np.ndarray]]:
    distinct = max(1, min(INTERLEAVE_IMAGES, _CYCLED_IMAGES // batch_size))
    batches = [np.take(images, (k * batch_size + np.arange(batch_size)) % len(images), axis=0) for k in range(distinct)]
    return [runner.feed(np.ascontiguousarray(batch)) for batch in batches]


def prepare_runners(
    targets: Sequence[BenchmarkTarget], images: np.ndarray, session: SessionSettings
) -> tuple[dict[str, Runner], dict[str, Runner]]:
    """Runners for batch-1 latency and for throughput, per target name, each on its target's runtime.

    Latency runs the model as shipped; only a model that cannot take batch 1 is timed through its copy.
    Throughput runs the batch-capable copy, checked first to give the original's outputs (a model
    whose batch dimension is already symbolic, as every int8 model this pipeline emits, is its own copy).
    """
    latency, batched = {}, {}
    for target in targets:
        spec = describe(target.model, target.source)
        original = open_runner(target.model, target.runtime, session, target.source)
        if spec.batch_dim is None:
            latency[target.name] = batched[target.name] = original
            continue
        copy = batch_capable_copy(target.model, target.source)
        verify_batch_copy(target.model, copy, images, target.source)
        batched[target.name] = open_runner(copy, target.runtime, session, target.source)
        latency[target.name] = original if spec.batch_dim == 1 else batched[target.name]
    return latency, batched


def measure(
    targets: Sequence[BenchmarkTarget],
    images: np.ndarray,
    settings: BenchmarkSection,
    session: SessionSettings,
    label: str = "benchmark",
) -> dict[str, Performance]:
    """Latency at batch 1 and throughput at every ``settings.batch_sizes``, all targets interleaved, in rounds.

    Each round times every target at batch 1, then at every batch size, so a ratio's per-round values
    show how far one measurement of it can be trusted. Targets on different runtimes take turns like
    any others, so a ratio across runtimes is as fair as one within a runtime.
    """
    latency_runners, batched_runners = prepare_runners(targets, images, session)
    plan = [(1, latency_runners), *((b, batched_runners) for b in batch_sizes(settings))]
    per_round: dict[tuple[str, int], list[np.ndarray]] = {}
    with tqdm(total=settings.rounds * len(plan), desc=label, unit="step", disable=None, leave=False) as bar:
        for round_index in range(settings.rounds):
            for step, (batch_size, runners) in enumerate(plan):
                bar.set_postfix_str(f"round {round_index + 1}/{settings.rounds}, batch {batch_size}")
                warmup, min_runs = runs_at_batch(settings, batch_size)
                timed = time_models(runners, images, batch_size, warmup, min_runs, settings.min_time_s)
                for name, durations in timed.items():
                    per_round.setdefault((name, step), []).append(durations)
                bar.update()

    def timing(name: str, step: int) -> Timing:
        batch_size = plan[step][0]
        return Timing(batch_size, runs_at_batch(settings, batch_size)[0], tuple(per_round[name, step]))

    return {
        target.name: Performance(
            target.name,
            timing(target.name, 0),
            tuple(timing(target.name, step) for step in range(1, len(plan))),
            latency_runners[target.name].conditions,
        )
        for target in targets
    }


def runner_for_batch(
    target: BenchmarkTarget, images: np.ndarray, batch_size: int, session: SessionSettings
) -> Runner:
    """A runner for ``batch_size``: the model itself, or its verified batch-capable copy if it needs one."""
    spec = describe(target.model, target.source)
    if spec.batch_dim in (None, batch_size):
        return open_runner(target.model, target.runtime, session, target.source)
    copy = batch_capable_copy(target.model, target.source)
    verify_batch_copy(target.model, copy, images, target.source)
    return open_runner(copy, target.runtime, session, target.source)


def measure_at_batch(
    runner: Runner, name: str, images: np.ndarray, settings: BenchmarkSection, batch_size: int
) -> Timing:
    """One model at one batch size, in the rounds of the timing rule."""
    warmup, min_runs = runs_at_batch(settings, batch_size)
    rounds = [
        time_models({name: runner}, images, batch_size, warmup, min_runs, settings.min_time_s)[name]
        for _ in tqdm(range(settings.rounds), desc="benchmark", unit="round", disable=None, leave=False)
    ]
    return Timing(batch_size, warmup, tuple(rounds))


def timing_conditions(settings: BenchmarkSection) -> str:
    """The timing rule's settings in one phrase, for the lines printed beside the numbers."""
    return (
        f"{settings.rounds} round{'s' if settings.rounds != 1 else ''}, each >= {settings.min_time_s:g} s and "
        f">= {settings.iterations} images per model and batch size after {settings.warmup} warm-up images"
    )


@dataclass(frozen=True)
class BenchmarkRun:
    """What ``python -m tuning benchmark`` prints, in the line format of INC's examples."""

    batch_size: int
    accuracy: float | None
    timing: Timing | None
    conditions: str
    runtime_conditions: dict[str, Any]  # how the runtime ran the model, read back (tuning.measure.runtimes)
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        lines = [f"Batch size = {self.batch_size}"]
        if self.accuracy is not None:
            lines.append(f"Accuracy: {self.accuracy:.5f}")
        if self.timing is not None:
            # INC's convention: latency per image, throughput its batch-scaled reciprocal.
            lines.append(f"Latency: {self.timing.latency_per_image_ms:.3f} ms")
            lines.append(f"Throughput: {self.timing.images_per_s:.1f} images/sec")
            spread = self.timing.images_per_s_spread
            lines.append(
                f"Spread: {spread.low:.1f}-{spread.high:.1f} images/sec over {len(self.timing.rounds_ms)} rounds"
            )
        lines.append(self.conditions)
        return lines


def run_benchmark(
    config: PipelineConfig, model_path: Path, mode: str, batch_size: int, runtime: Runtime = Runtime.ONNXRUNTIME
) -> BenchmarkRun:
    """Accuracy on the evaluation split, or latency and throughput, of one model at ``batch_size`` on ``runtime``."""
    model_path = Path(model_path)
    model = load_model(model_path)
    spec = describe(model, model_path)
    spec.require_batch_fits(batch_size, config.benchmark.max_batch_bytes, "--batch_size", model_path)
    evaluation = datasets.evaluation_images(config.dataset, config.evaluation.split, spec.sample_shape)
    check_classifier(model, spec, evaluation, len(datasets.class_names(config.dataset)), model_path)
    target = BenchmarkTarget(model_path.stem, model, model_path, runtime)
    session = SessionSettings.of(config)
    runner = runner_for_batch(target, evaluation.images, batch_size, session)
    warnings = tuple(
        warning
        for warning in (
            preprocessing_warning(model, model_path, config.preprocessing, evaluation.images),
            thread_warning(runner, session),
        )
        if warning
    )
    on = conditions_phrase(runner.conditions)
    if mode == "accuracy":
        accuracy = top1_accuracy(predict(runner, evaluation, batch_size), evaluation.labels)
        conditions = (
            f"Conditions: {len(evaluation):,} {config.dataset.name} {config.evaluation.split.value} images, "
            f"preprocessing {json.dumps(config.preprocessing, sort_keys=True)}, {on}; "
            f"{capture_environment().summary()}"
        )
        return BenchmarkRun(batch_size, accuracy, None, conditions, runner.conditions, warnings)
    timing = measure_at_batch(runner, target.name, evaluation.images, config.benchmark, batch_size)
    conditions = (
        f"Conditions: {on}; {timing.runs} timed batches in {timing_conditions(config.benchmark)}, "
        f"latency = median batch time / batch size; {capture_environment().summary()}"
    )
    return BenchmarkRun(batch_size, None, timing, conditions, runner.conditions, warnings)


def threads_phrase(count: int) -> str:
    """``1 intra-op thread`` / ``2 intra-op threads``: how every report states its threads."""
    return f"{count} intra-op thread{'s' if count != 1 else ''}"
