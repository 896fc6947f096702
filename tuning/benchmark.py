"""Latency and throughput of ONNX classifiers with onnxruntime, and the conditions they were measured under.

Counting rule: ``benchmark.warmup`` and ``benchmark.iterations`` count *images at batch 1*.
At batch size ``b`` a measurement runs ``ceil(warmup / b)`` warm-up batches and
``max(ceil(iterations / b), min(MIN_TIMED_BATCHES, iterations))`` timed batches, so every
batch size sees about the same number of images and a large batch does not take minutes
(batch 1 runs exactly ``warmup`` and ``iterations``).

Every statistic comes from per-run ``time.perf_counter_ns`` durations. Throughput is
``batch_size / median batch time``: the median, like the p50 latency, is what a few
slow runs caused by other processes on a shared machine do not move.

Models are measured interleaved: each model runs a chunk of about ``INTERLEAVE_IMAGES``
images in turn until all are done, so a drift in clock speed or load hits all of them
equally and the int8/float ratios of one run are fair.

Models with a fixed batch dimension (the zoo's) are measured above batch 1 through a
batch-capable copy (:func:`batch_capable_copy`) that is first checked to give the
original's outputs (:func:`verify_batch_copy`).
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from tqdm import tqdm

from tuning import data
from tuning.config import BenchmarkSection, PipelineConfig
from tuning.errors import InputError
from tuning.evaluate import SESSION_CONFIG_ENTRIES, make_session, predict, session_options, top1_accuracy
from tuning.onnx_io import declared_preprocessing, describe, load_model

BATCH_DIM_NAME = "batch"
INTERLEAVE_IMAGES = 100  # images each model runs before the next model's turn
MIN_TIMED_BATCHES = 10  # below this a percentile of batch times means little
VERIFY_IMAGES = 256
# The copy runs the same kernels on a different batch layout: float sums may be reordered, nothing more.
VERIFY_RTOL = 1e-5
VERIFY_ATOL = 1e-5
_CYCLED_IMAGES = 2048  # distinct input images cycled through per measurement, bounded for memory
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_int8")
_VERSIONED_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "onnx": "onnx",
    "neural_compressor": "neural-compressor",
    "numpy": "numpy",
}


@dataclass(frozen=True)
class BenchmarkTarget:
    """A model to measure, under the name the report gives it."""

    name: str
    model: onnx.ModelProto
    source: Path


@dataclass(frozen=True)
class Timing:
    """Per-run durations of one model at one batch size."""

    batch_size: int
    warmup_runs: int
    durations_ms: np.ndarray = field(repr=False, compare=False)

    @property
    def runs(self) -> int:
        return len(self.durations_ms)

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


@dataclass(frozen=True)
class Performance:
    """Batch-1 latency of the model as given and throughput of its batch-capable copy per batch size."""

    name: str
    latency: Timing
    throughput: tuple[Timing, ...]

    def throughput_at(self, batch_size: int) -> Timing:
        return next(timing for timing in self.throughput if timing.batch_size == batch_size)


@dataclass(frozen=True)
class Environment:
    cpu_model: str
    cpu_flags: dict[str, bool]
    cpu_count: int | None
    usable_cpus: int
    system: str
    machine: str
    python: str
    versions: dict[str, str | None]

    def summary(self) -> str:
        """One line: the CPU, its int8-relevant flags and the onnxruntime version."""
        present = " ".join(name for name, found in self.cpu_flags.items() if found) or "-"
        absent = " ".join(name for name, found in self.cpu_flags.items() if not found) or "-"
        return (
            f"CPU {self.cpu_model} (has {present}; lacks {absent}; {self.usable_cpus} usable of "
            f"{self.cpu_count} cores), "
            f"onnxruntime {self.versions.get('onnxruntime')}"
        )


def batch_sizes(settings: BenchmarkSection) -> tuple[int, ...]:
    """The configured throughput batch sizes, ascending and once each: tables, plots and ratios key on them."""
    return tuple(sorted(set(settings.batch_sizes)))


def runs_at_batch(settings: BenchmarkSection, batch_size: int, rounds: int = 1) -> tuple[int, int]:
    """Warm-up and timed runs at ``batch_size`` in each of ``rounds`` rounds: the module's counting rule.

    With several rounds (tuning's measurement, :func:`measure_rounds`) the floor of
    ``MIN_TIMED_BATCHES`` timed batches holds for all rounds together, not for each.
    """
    warmup = math.ceil(settings.warmup / batch_size)
    floor = math.ceil(min(MIN_TIMED_BATCHES, settings.iterations) / rounds)
    timed = max(math.ceil(settings.iterations / batch_size), floor)
    return warmup, timed


def batch_capable_copy(model: onnx.ModelProto, source: Path | str = "<model>") -> onnx.ModelProto:
    """A copy whose batch dimension is symbolic, so it runs at any batch size.

    The input's and outputs' dim 0 become ``batch``; a Reshape whose target shape is an
    initializer starting with the fixed batch size gets -1 there (on a private copy of the
    initializer when other nodes share it). Reshapes of initializers (weights) carry no batch
    and are left alone. Intermediate value_info shapes would be stale, so they are dropped
    and onnxruntime infers them again.
    """
    spec = describe(model, source)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    initializers = {init.name: init for init in graph.initializer}
    graph_input = next(value for value in graph.input if value.name not in initializers)
    for value in (graph_input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = BATCH_DIM_NAME
    if spec.batch_dim is not None:
        _rewrite_batch_reshapes(graph, initializers, spec.batch_dim, source)
    del graph.value_info[:]
    try:
        onnx.checker.check_model(copy)
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).splitlines()[0]
        raise InputError(f"{source}: the batch-capable copy is not a valid model ({first_line})") from None
    return copy


def _rewrite_batch_reshapes(
    graph: onnx.GraphProto, initializers: dict[str, onnx.TensorProto], batch: int, source: Path | str
) -> None:
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[0] in initializers:
            continue
        shape_tensor = initializers.get(node.input[1])
        if shape_tensor is None:
            continue
        shape = numpy_helper.to_array(shape_tensor)
        if shape.ndim != 1 or shape.size == 0 or shape[0] != batch:
            continue
        if -1 in shape[1:]:
            raise InputError(
                f"{source}: Reshape {node.name!r} has shape {shape.tolist()}; its fixed batch size cannot "
                "become -1 next to another -1"
            )
        rewritten = shape.copy()
        rewritten[0] = -1
        if uses[node.input[1]] > 1:
            private_name = _unused_name(f"{node.input[1]}_{BATCH_DIM_NAME}", initializers)
            private = numpy_helper.from_array(rewritten, private_name)
            graph.initializer.append(private)
            initializers[private_name] = graph.initializer[-1]
            uses[node.input[1]] -= 1
            node.input[1] = private_name
        else:
            shape_tensor.CopyFrom(numpy_helper.from_array(rewritten, shape_tensor.name))


def _unused_name(stem: str, taken: Mapping[str, object]) -> str:
    name, index = stem, 1
    while name in taken:
        name, index = f"{stem}_{index}", index + 1
    return name


def verify_batch_copy(
    original: onnx.ModelProto,
    copy: onnx.ModelProto,
    images: np.ndarray,
    source: Path | str = "<model>",
    count: int = VERIFY_IMAGES,
) -> float:
    """Check the copy on one batch of ``count`` images against the original at its own batch size.

    Returns the largest absolute difference of the outputs; raises InputError when the outputs
    are not allclose (VERIFY_RTOL/VERIFY_ATOL) or any argmax differs.
    """
    spec = describe(original, source)
    step = spec.batch_dim or 1
    count = min(count, len(images)) // step * step
    if count == 0:
        raise InputError(f"{source}: fewer test images than the model's batch size {step}")
    batch = np.ascontiguousarray(images[:count])
    reference_session = make_session(original)
    expected = np.concatenate(
        [
            reference_session.run([spec.output_name], {spec.input_name: batch[start : start + step]})[0]
            for start in range(0, count, step)
        ]
    )
    try:
        actual = make_session(copy).run([spec.output_name], {spec.input_name: batch})[0]
    except Exception as exc:  # onnxruntime's Fail/InvalidArgument/RuntimeException share no public base class
        raise InputError(
            f"{source}: the batch-capable copy fails at batch {count} ({str(exc).splitlines()[0]})"
        ) from None
    if actual.shape != expected.shape:
        raise InputError(
            f"{source}: the batch-capable copy returns shape {list(actual.shape)}, expected {list(expected.shape)}"
        )
    max_diff = float(np.max(np.abs(actual - expected)))
    if not np.allclose(actual, expected, rtol=VERIFY_RTOL, atol=VERIFY_ATOL) or not np.array_equal(
        actual.argmax(axis=1), expected.argmax(axis=1)
    ):
        raise InputError(
            f"{source}: the batch-capable copy's outputs differ from the original's on {count} test images "
            f"(max |difference| {max_diff:.3g}); refusing to measure throughput on it"
        )
    return max_diff


def time_models(
    sessions: Mapping[str, ort.InferenceSession],
    images: np.ndarray,
    batch_size: int,
    warmup_runs: int,
    timed_runs: int,
    progress: tqdm | None = None,
) -> dict[str, Timing]:
    """Time ``timed_runs`` runs of every session at ``batch_size``, interleaved in chunks.

    Inputs cycle through real images so no model is timed on one cached input.
    """
    feeds = {name: _feeds(session, images, batch_size) for name, session in sessions.items()}
    chunk = math.ceil(INTERLEAVE_IMAGES / batch_size)
    durations = {name: np.empty(timed_runs, dtype=np.int64) for name in sessions}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run would land on whichever model happens to be running
    try:
        for name, session in sessions.items():
            for run in range(warmup_runs):
                session.run(None, feeds[name][run % len(feeds[name])])
            if progress is not None:
                progress.update(warmup_runs * batch_size)
        for start in range(0, timed_runs, chunk):
            stop = min(start + chunk, timed_runs)
            for name, session in sessions.items():
                model_feeds, out = feeds[name], durations[name]
                for run in range(start, stop):
                    feed = model_feeds[run % len(model_feeds)]
                    began = time.perf_counter_ns()
                    session.run(None, feed)
                    out[run] = time.perf_counter_ns() - began
                if progress is not None:
                    progress.update((stop - start) * batch_size)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(batch_size, warmup_runs, durations[name] / 1e6) for name in sessions}


def _feeds(session: ort.InferenceSession, images: np.ndarray, batch_size: int) -> list[dict[str, np.ndarray]]:
    input_name = session.get_inputs()[0].name
    distinct = max(1, min(INTERLEAVE_IMAGES, _CYCLED_IMAGES // batch_size))
    batches = [np.take(images, (k * batch_size + np.arange(batch_size)) % len(images), axis=0) for k in range(distinct)]
    return [{input_name: np.ascontiguousarray(batch)} for batch in batches]


@dataclass(frozen=True)
class _Prepared:
    original: ort.InferenceSession
    batched: ort.InferenceSession
    accepts_batch_1: bool


def _prepare(target: BenchmarkTarget, images: np.ndarray, intra_op_threads: int) -> _Prepared:
    spec = describe(target.model, target.source)
    original = make_session(target.model, intra_op_threads)
    if spec.batch_dim is None:
        # Already batch-capable (every int8 model this pipeline emits): nothing to copy or verify.
        return _Prepared(original=original, batched=original, accepts_batch_1=True)
    copy = batch_capable_copy(target.model, target.source)
    verify_batch_copy(target.model, copy, images, target.source)
    return _Prepared(
        original=original,
        batched=make_session(copy, intra_op_threads),
        accepts_batch_1=spec.batch_dim == 1,
    )


def prepare_sessions(
    targets: Sequence[BenchmarkTarget], images: np.ndarray, intra_op_threads: int
) -> tuple[dict[str, ort.InferenceSession], dict[str, ort.InferenceSession]]:
    """Sessions for batch-1 latency and for throughput, per target name.

    Latency is the model as shipped; only a model that cannot take batch 1 is timed through its copy.
    Throughput runs the batch-capable copy, checked first to give the original's outputs.
    """
    prepared = {target.name: _prepare(target, images, intra_op_threads) for target in targets}
    latency = {name: p.original if p.accepts_batch_1 else p.batched for name, p in prepared.items()}
    batched = {name: p.batched for name, p in prepared.items()}
    return latency, batched


def measure_performance(
    targets: Sequence[BenchmarkTarget], images: np.ndarray, settings: BenchmarkSection
) -> dict[str, Performance]:
    """Latency at batch 1 and throughput at every configured batch size, all models interleaved."""
    return measure_rounds(targets, images, settings, rounds=1)[0]


def measure_rounds(
    targets: Sequence[BenchmarkTarget], images: np.ndarray, settings: BenchmarkSection, rounds: int
) -> list[dict[str, Performance]]:
    """``rounds`` repetitions of the interleaved measurement on the same sessions, one result per round.

    Each round warms up and times every model at batch 1, then at every batch size, so the spread
    of a ratio across rounds shows how far a single measurement of it can be trusted.
    """
    latency_sessions, batched_sessions = prepare_sessions(targets, images, settings.intra_op_threads)
    plan = [(b, *runs_at_batch(settings, b, rounds)) for b in (1, *batch_sizes(settings))]
    total_images = rounds * len(targets) * sum(b * (warmup + timed) for b, warmup, timed in plan)
    results = []
    with tqdm(total=total_images, desc="benchmark", unit="img", unit_scale=True, disable=None, leave=False) as bar:
        for round_index in range(rounds):
            where = f"round {round_index + 1}/{rounds}, " if rounds > 1 else ""
            bar.set_postfix_str(f"{where}latency, batch 1")
            latency = time_models(latency_sessions, images, *plan[0], bar)
            throughput: dict[str, list[Timing]] = {name: [] for name in latency_sessions}
            for batch_size, warmup, timed in plan[1:]:
                bar.set_postfix_str(f"{where}throughput, batch {batch_size}")
                for name, timing in time_models(batched_sessions, images, batch_size, warmup, timed, bar).items():
                    throughput[name].append(timing)
            results.append(
                {name: Performance(name, latency[name], tuple(throughput[name])) for name in latency_sessions}
            )
    return results


def pooled(rounds: Sequence[Performance]) -> Performance:
    """One model's rounds as one measurement: every timed run of every round, per batch size."""

    def merge(timings: Sequence[Timing]) -> Timing:
        return Timing(
            timings[0].batch_size,
            sum(timing.warmup_runs for timing in timings),
            np.concatenate([timing.durations_ms for timing in timings]),
        )

    return Performance(
        rounds[0].name,
        merge([performance.latency for performance in rounds]),
        tuple(merge(timings) for timings in zip(*(performance.throughput for performance in rounds))),
    )


def session_for_batch(
    target: BenchmarkTarget, images: np.ndarray, batch_size: int, intra_op_threads: int
) -> ort.InferenceSession:
    """A session running ``batch_size``: the model itself, or its verified batch-capable copy if it needs one."""
    spec = describe(target.model, target.source)
    if spec.batch_dim in (None, batch_size):
        return make_session(target.model, intra_op_threads)
    copy = batch_capable_copy(target.model, target.source)
    verify_batch_copy(target.model, copy, images, target.source)
    return make_session(copy, intra_op_threads)


def measure_at_batch(
    target: BenchmarkTarget, images: np.ndarray, settings: BenchmarkSection, batch_size: int
) -> Timing:
    """One model at one batch size, with the warm-up and timed runs of the counting rule."""
    session = session_for_batch(target, images, batch_size, settings.intra_op_threads)
    warmup, timed = runs_at_batch(settings, batch_size)
    total = batch_size * (warmup + timed)
    with tqdm(total=total, desc="benchmark", unit="img", unit_scale=True, disable=None, leave=False) as bar:
        return time_models({target.name: session}, images, batch_size, warmup, timed, bar)[target.name]


def describe_session_options(intra_op_threads: int) -> dict[str, object]:
    """The settings of :func:`tuning.evaluate.session_options`, as measured sessions use them."""
    options = session_options(intra_op_threads)
    return {
        "intra_op_num_threads": options.intra_op_num_threads,
        "inter_op_num_threads": options.inter_op_num_threads,
        "graph_optimization_level": options.graph_optimization_level.name,
        "execution_mode": options.execution_mode.name,
        "providers": ["CPUExecutionProvider"],
        # Read back from the options object, so what is recorded is what sessions get.
        "config_entries": {key: options.get_session_config_entry(key) for key in SESSION_CONFIG_ENTRIES},
    }


def capture_environment() -> Environment:
    cpuinfo = _read_cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    return Environment(
        cpu_model=cpuinfo.get("model name") or platform.processor() or "unknown",
        cpu_flags={flag: flag in flags for flag in CPU_FLAGS},
        cpu_count=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        system=platform.platform(),
        machine=platform.machine(),
        python=platform.python_version(),
        versions={key: _version(dist) for key, dist in _VERSIONED_PACKAGES.items()}
        | {"python": platform.python_version()},
    )


def _read_cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo; empty where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class BenchmarkRun:
    """What ``python -m tuning benchmark`` prints, in the line format of INC's examples."""

    batch_size: int
    accuracy: float | None
    timing: Timing | None
    conditions: str
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        lines = [f"Batch size = {self.batch_size}"]
        if self.accuracy is not None:
            lines.append(f"Accuracy: {self.accuracy:.5f}")
        if self.timing is not None:
            # INC's convention: latency per image, throughput its batch-scaled reciprocal.
            lines.append(f"Latency: {self.timing.latency_per_image_ms:.3f} ms")
            lines.append(f"Throughput: {self.timing.images_per_s:.1f} images/sec")
        lines.append(self.conditions)
        return lines


def run_benchmark(config: PipelineConfig, model_path: Path, mode: str, batch_size: int) -> BenchmarkRun:
    """Accuracy on the evaluation split, or latency and throughput, of one model at ``batch_size``."""
    model_path = Path(model_path)
    model = load_model(model_path)
    spec = describe(model, model_path)
    evaluation = data.evaluation_images(config.dataset, config.evaluation.split, spec.sample_shape)
    target = BenchmarkTarget(model_path.stem, model, model_path)
    settings = config.benchmark
    declared = declared_preprocessing(model)
    warnings = (
        (
            f"warning: {model_path} declares preprocessing {json.dumps(declared, sort_keys=True)}; "
            f"this run uses {json.dumps(config.preprocessing, sort_keys=True)}",
        )
        if declared is not None and declared != config.preprocessing
        else ()
    )
    threads = threads_phrase(settings.intra_op_threads)
    if mode == "accuracy":
        session = session_for_batch(target, evaluation.images, batch_size, settings.intra_op_threads)
        accuracy = top1_accuracy(predict(session, evaluation, batch_size), evaluation.labels)
        conditions = (
            f"Conditions: {len(evaluation):,} {config.dataset.name} {config.evaluation.split.value} images, "
            f"preprocessing {json.dumps(config.preprocessing, sort_keys=True)}, {threads}, "
            f"{capture_environment().summary()}"
        )
        return BenchmarkRun(batch_size, accuracy, None, conditions, warnings)
    timing = measure_at_batch(target, evaluation.images, settings, batch_size)
    conditions = (
        f"Conditions: {threads}, {timing.warmup_runs} warm-up + {timing.runs} timed batches "
        f"(benchmark.warmup {settings.warmup}, benchmark.iterations {settings.iterations} images), "
        f"latency = median batch time / batch size; {capture_environment().summary()}"
    )
    return BenchmarkRun(batch_size, None, timing, conditions, warnings)


def threads_phrase(count: int) -> str:
    """``1 intra-op thread`` / ``2 intra-op threads``: how every report states its threads."""
    return f"{count} intra-op thread{'s' if count != 1 else ''}"
