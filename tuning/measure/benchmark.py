"""Latency and throughput of ONNX classifiers, timed the way users run them: the one measurement entry point.

Every model runs on a :class:`tuning.measure.runtimes.Runner`: a plain ``onnxruntime.InferenceSession`` with
onnxruntime's default options, except the thread count and any session config entries the config's
``deployment`` declares, or an OpenVINO compiled model with OpenVINO's defaults except the thread
count and, when the runtime names one, the precision hint: a speed that needs a setting the user
must remember is not the product's speed.

:func:`measure` serves objective latency's screening and measurement, ``report``, ``benchmark`` and (through
report.json) the gate. Timing rule (config ``benchmark`` / ``tuning.latency``, docs/measurement.md): the
models are measured in ``rounds`` *session sets*; each set opens fresh sessions of every model (where a
session lands in memory moves its speed by several percent), and at each batch size every model runs
``ceil(warmup / b)`` untimed batches, then the models take turns, a block of consecutive calls each
(:mod:`tuning.measure.paired`: 64 images, the first call of a block untimed), until each has run at least ``ceil(iterations / b)`` and
:data:`~tuning.measure.paired.MIN_CALLS` timed batches and ``min_time_s`` seconds. The first model on each
runtime (the reference: fp32) runs a second session beside the others, the A/A pair whose ratio is the
noise floor.

Statistics: a figure (p50 latency, throughput = ``b / p50 batch time``) pools every set's calls, its
spread is the range of the per-set values; a ratio between two models is a paired ratio with its
confidence interval, widened by the reference's noise floor (:mod:`tuning.measure.statistics`).

Models with a fixed batch dimension (the zoo's) are measured above batch 1 through a verified
batch-capable copy (:mod:`tuning.graph.rewrite`). On OpenVINO every model is compiled for the batch size
it is timed at (static shapes, as benchmark_app's ``-shape``: a dynamic batch compiles to slower kernels);
onnxruntime runs each graph's own shapes, as it always did.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Sequence
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
from tuning.measure.evaluate import check_classifier, predict, top1_accuracy, verify_batch_copy
from tuning.measure.paired import MIN_CALLS, TURN_IMAGES, calls_per_turn, existing_objects_frozen, time_in_turns
from tuning.measure.runtimes import (
    Runner,
    SessionSettings,
    conditions_phrase,
    is_openvino,
    open_runner,
    thread_warning,
)
from tuning.measure.statistics import Interval
from tuning.measure.timings import Spread, Timing  # re-exported: the report reads them from here

_DISTINCT_BATCHES = 100  # distinct input batches cycled through per model and batch size ...
_CYCLED_IMAGES = 2048  # ... and at most this many images in them, bounded for memory
SECOND_SESSION = "{name} (second session)"  # the A/A twin of a reference model


@dataclass(frozen=True)
class BenchmarkTarget:
    """A model to measure on a runtime, under the name the report gives that pair."""

    name: str
    model: onnx.ModelProto
    source: Path
    runtime: Runtime = Runtime.ONNXRUNTIME


@dataclass(frozen=True)
class Performance:
    """Batch-1 latency of the model as given and throughput of its batch-capable copy per batch size.

    ``second_session`` is the A/A twin a reference model (the first on its runtime) ran beside itself.
    """

    name: str
    latency: Timing | None  # None: batch-1 latency was not asked for (``benchmark`` at another batch size)
    throughput: tuple[Timing, ...]
    conditions: dict[str, Any] = field(default_factory=dict, compare=False)  # the runner's, read back
    second_session: Performance | None = field(default=None, compare=False)

    def throughput_at(self, batch_size: int) -> Timing:
        return next(timing for timing in self.throughput if timing.batch_size == batch_size)

    def noise_floor(self, batch_size: int | None = None) -> Interval | None:
        """The A/A pair: time of the second session over the first, at batch 1 (``None``) or ``batch_size``
        (on the batch-capable copy); None when no second session ran."""
        if self.second_session is None:
            return None
        if batch_size is None:
            assert self.latency is not None and self.second_session.latency is not None
            return self.second_session.latency.time_ratio(self.latency)
        return self.second_session.throughput_at(batch_size).time_ratio(self.throughput_at(batch_size))

    def latency_ratio(self, reference: Performance) -> Interval:
        """p50 time ratio at batch 1, ``self / reference`` (below 1: faster), widened by the reference's noise floor."""
        assert self.latency is not None and reference.latency is not None
        return self.latency.time_ratio(reference.latency, reference.noise_floor())

    def throughput_ratio(self, reference: Performance, batch_size: int) -> Interval:
        """Images/s ratio at ``batch_size``, ``self / reference`` (above 1: faster): the inverse of the time ratio."""
        mine, theirs = self.throughput_at(batch_size), reference.throughput_at(batch_size)
        return mine.time_ratio(theirs, reference.noise_floor(batch_size)).inverse()


def batch_sizes(settings: BenchmarkSection) -> tuple[int, ...]:
    """The configured throughput batch sizes, ascending and once each: tables, plots and ratios key on them."""
    return tuple(sorted(set(settings.batch_sizes)))


def runs_at_batch(settings: BenchmarkSection, batch_size: int) -> tuple[int, int]:
    """Warm-up batches and the configured minimum of timed batches at ``batch_size`` in each session set
    (:data:`~tuning.measure.paired.MIN_CALLS` raises the latter where it is lower)."""
    return math.ceil(settings.warmup / batch_size), math.ceil(settings.iterations / batch_size)


def _feeds(runner: Runner, images: np.ndarray, batch_size: int) -> list[dict[str, np.ndarray]]:
    distinct = max(1, min(_DISTINCT_BATCHES, _CYCLED_IMAGES // batch_size))
    batches = [np.take(images, (k * batch_size + np.arange(batch_size)) % len(images), axis=0) for k in range(distinct)]
    return [runner.feed(np.ascontiguousarray(batch)) for batch in batches]


@dataclass(frozen=True)
class _Timed:
    """A target's models to time: as given (batch-1 latency) and its verified batch-capable copy."""

    target: BenchmarkTarget
    as_given: onnx.ModelProto
    batched: onnx.ModelProto


def _timed_models(target: BenchmarkTarget, images: np.ndarray) -> _Timed:
    """Latency runs the model as shipped; only a model that cannot take batch 1 is timed through its copy.
    Throughput runs the batch-capable copy, checked first to give the original's outputs (a model whose
    batch dimension is already symbolic, as every int8 model this pipeline emits, is its own copy)."""
    spec = describe(target.model, target.source)
    if spec.batch_dim is None:
        return _Timed(target, target.model, target.model)
    copy = batch_capable_copy(target.model, target.source)
    verify_batch_copy(target.model, copy, images, target.source)
    return _Timed(target, target.model if spec.batch_dim == 1 else copy, copy)


def _open(timed: _Timed, session: SessionSettings) -> tuple[Runner, Runner] | None:
    """Fresh onnxruntime sessions of a target's latency and throughput models for a whole session set (one
    session when they are the same model); None on OpenVINO, which compiles per batch size (:func:`_compiled`)."""
    target = timed.target
    if is_openvino(target.runtime):
        return None
    as_given = open_runner(timed.as_given, target.runtime, session, target.source)
    if timed.batched is timed.as_given:
        return as_given, as_given
    return as_given, open_runner(timed.batched, target.runtime, session, target.source)


def _compiled(timed: _Timed, which: int, batch_size: int, session: SessionSettings) -> Runner:
    """An OpenVINO compile of the step's model for ``batch_size`` alone (static shapes), as it is deployed."""
    target = timed.target
    model = timed.batched if which else timed.as_given
    return open_runner(model, target.runtime, session, target.source, batch_size=batch_size)


def _with_timed_shapes(conditions: dict[str, Any], shapes: dict[str, str]) -> dict[str, Any]:
    """A runner's conditions with the shape of each timed batch size in place of the one compile's shape."""
    if not shapes:
        return conditions
    kept = {key: value for key, value in conditions.items() if key not in ("input_shape", "static_batch")}
    return kept | {"timed_input_shapes": shapes}


def measure(
    targets: Sequence[BenchmarkTarget],
    images: np.ndarray,
    settings: BenchmarkSection,
    session: SessionSettings,
    label: str = "benchmark",
    latency: bool = True,
    throughput_batch_sizes: Sequence[int] | None = None,
) -> dict[str, Performance]:
    """Latency at batch 1 (unless ``latency`` is false) and throughput at every ``throughput_batch_sizes``
    (default: ``settings.batch_sizes``), all targets in turns, in ``settings.rounds`` session sets.

    The first target on each runtime is that runtime's reference: a second session of it runs beside the
    others (:attr:`Performance.second_session`), and ratios against it are widened by that A/A pair's
    spread. Each runtime's targets take turns among themselves, one runtime after the other in every
    session set and batch size: a user deploys one runtime, and OpenVINO's calls in the same turns moved
    onnxruntime's int8/fp32 ratio at batch 1 (0.93x against 1.00x without them, on an Intel Xeon, AMX
    class). A ratio across runtimes is the ratio of the session sets' medians. Sessions are opened anew for every set and closed after it; OpenVINO
    models are compiled anew for every batch size of the set, with that batch size as a static shape
    (their conditions list each timed shape as ``timed_input_shapes``).
    """
    sizes = batch_sizes(settings) if throughput_batch_sizes is None else tuple(sorted(set(throughput_batch_sizes)))
    timed = {target.name: _timed_models(target, images) for target in targets}
    references = {}
    for target in targets:
        references.setdefault(target.runtime, target.name)
    twins = {SECOND_SESSION.format(name=name): timed[name] for name in references.values()}
    every = timed | twins
    turn_groups: dict[Runtime, list[str]] = {}
    for name, models in every.items():
        turn_groups.setdefault(models.target.runtime, []).append(name)
    plan = ([(1, 0)] if latency else []) + [(b, 1) for b in sizes]  # (batch size, 0: as given / 1: batched copy)
    per_set: dict[tuple[str, int], list[np.ndarray]] = {}
    conditions: dict[str, dict[str, Any]] = {}
    shapes: dict[str, dict[str, str]] = {name: {} for name in every}  # OpenVINO's compiled shape per batch size
    bar = tqdm(total=settings.rounds * len(plan), desc=label, unit="step", disable=None, leave=False)
    with existing_objects_frozen(), bar:
        for set_index in range(settings.rounds):
            opened = {name: _open(models, session) for name, models in every.items()}
            for step, (batch_size, which) in enumerate(plan):
                bar.set_postfix_str(f"session set {set_index + 1}/{settings.rounds}, batch {batch_size}")
                warmup, min_runs = runs_at_batch(settings, batch_size)
                chosen = {
                    name: pair[which] if (pair := opened[name]) is not None else _compiled(every[name], which, batch_size, session)
                    for name in every
                }  # fmt: skip
                if set_index == 0:
                    for name, runner in chosen.items():
                        conditions.setdefault(name, runner.conditions)
                        if opened[name] is None:
                            shapes[name][str(batch_size)] = runner.conditions["input_shape"]
                for group in turn_groups.values():
                    durations = time_in_turns(
                        {name: chosen[name].infer for name in group},
                        {name: _feeds(chosen[name], images, batch_size) for name in group},
                        warmup,
                        min_runs,
                        settings.min_time_s,
                        calls_per_turn(batch_size),
                    )
                    for name, runs in durations.items():
                        per_set.setdefault((name, step), []).append(runs)
                bar.update()
                del chosen
            del opened
            gc.collect()  # close this set's sessions before the next set's land in memory
    conditions = {name: _with_timed_shapes(found, shapes[name]) for name, found in conditions.items()}

    def performance(name: str, second_session: Performance | None = None) -> Performance:
        timings = [
            Timing(batch_size, runs_at_batch(settings, batch_size)[0], tuple(per_set[name, step]), every[name].target.runtime.value)
            for step, (batch_size, _) in enumerate(plan)
        ]
        return Performance(
            name, timings[0] if latency else None, tuple(timings[int(latency):]), conditions[name], second_session
        )

    return {
        target.name: performance(
            target.name,
            performance(twin) if (twin := SECOND_SESSION.format(name=target.name)) in twins else None,
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


def timing_conditions(settings: BenchmarkSection) -> str:
    """The timing rule's settings in one phrase, for the lines printed beside the numbers."""
    return (
        f"{settings.rounds} session set{'s' if settings.rounds != 1 else ''} (fresh sessions each), models "
        f"taking turns of >= {TURN_IMAGES} images in consecutive warm calls, each >= {settings.min_time_s:g} s, >= {settings.iterations} images and "
        f">= {MIN_CALLS} calls per model and batch size after {settings.warmup} warm-up images"
    )


@dataclass(frozen=True)
class BenchmarkRun:
    """What ``python -m tuning benchmark`` prints, in the line format of INC's examples."""

    batch_size: int
    accuracy: float | None
    performance: Performance | None
    conditions: str
    runtime_conditions: dict[str, Any]  # how the runtime ran the model, read back (tuning.measure.runtimes)
    warnings: tuple[str, ...] = ()

    @property
    def timing(self) -> Timing | None:
        if self.performance is None:
            return None
        return self.performance.latency or self.performance.throughput_at(self.batch_size)

    def lines(self) -> list[str]:
        lines = [f"Batch size = {self.batch_size}"]
        if self.accuracy is not None:
            lines.append(f"Accuracy: {self.accuracy:.5f}")
        timing = self.timing
        if timing is not None and self.performance is not None:
            # INC's convention: latency per image, throughput its batch-scaled reciprocal.
            lines.append(f"Latency: {timing.latency_per_image_ms:.3f} ms")
            lines.append(f"Throughput: {timing.images_per_s:.1f} images/sec")
            spread = timing.images_per_s_spread
            lines.append(
                f"Spread: {spread.low:.1f}-{spread.high:.1f} images/sec over {len(timing.rounds_ms)} session sets"
            )
        floor = None if self.performance is None else self.performance.noise_floor(
            None if self.performance.latency else self.batch_size
        )  # fmt: skip
        if floor is not None:
            lines.append(
                f"Noise floor: a second session of the same model took {floor.value:.3f}x the first's time "
                f"[{floor.low:.3f}-{floor.high:.3f}] (A/A pair, {floor.coverage:.0%} interval): "
                "differences within this are noise"
            )
        lines.append(self.conditions)  # last: the CLI prints it as a note, which --quiet drops
        return lines


def run_benchmark(
    config: PipelineConfig, model_path: Path, mode: str, batch_size: int, runtime: Runtime = Runtime.ONNXRUNTIME
) -> BenchmarkRun:
    """Accuracy on the evaluation split, or latency and throughput, of one model at ``batch_size`` on ``runtime``."""
    model_path = Path(model_path)
    model = load_model(model_path)
    spec = describe(model, model_path)
    spec.require_batch_fits(batch_size, config.benchmark.max_batch_bytes, "--batch-size", model_path)
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
    if mode == "accuracy":
        accuracy = top1_accuracy(predict(runner, evaluation, batch_size), evaluation.labels)
        conditions = (
            f"Conditions: {len(evaluation):,} {config.dataset.name} {config.evaluation.split.value} images, "
            f"preprocessing {json.dumps(config.preprocessing, sort_keys=True)}, {conditions_phrase(runner.conditions)}; "
            f"{capture_environment().summary()}"
        )
        return BenchmarkRun(batch_size, accuracy, None, conditions, runner.conditions, warnings)
    del runner  # measure opens its own sessions, fresh for every session set
    at_batch_1 = batch_size == 1
    performance = measure(
        [target], evaluation.images, config.benchmark, session,
        latency=at_batch_1, throughput_batch_sizes=() if at_batch_1 else (batch_size,),
    )[target.name]  # fmt: skip
    timing = performance.latency or performance.throughput_at(batch_size)
    conditions = (  # the timed compiles' conditions: on OpenVINO, the static shape of the timed batch size
        f"Conditions: {conditions_phrase(performance.conditions)}; {timing.runs} timed batches in "
        f"{timing_conditions(config.benchmark)}, latency = median batch time / batch size; {capture_environment().summary()}"
    )
    return BenchmarkRun(batch_size, None, performance, conditions, performance.conditions, warnings)


def threads_phrase(count: int) -> str:
    """``1 intra-op thread`` / ``2 intra-op threads``: how every report states its threads."""
    return f"{count} intra-op thread{'s' if count != 1 else ''}"
