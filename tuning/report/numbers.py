"""The report's numbers: which models, their accuracy, speed, size and ops, and report.json.

:mod:`tuning.report.builder` measures and scores them; :meth:`Report.to_json` is report.json (schema:
docs/report-schema.md). Nothing here writes a file or formats prose: :mod:`tuning.report.run` does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from tuning.config.enums import PixelScale, Runtime
from tuning.config.schema import BenchmarkSection, PipelineConfig
from tuning.errors import InputError
from tuning.measure import benchmark
from tuning.measure.benchmark import Performance
from tuning.measure.environment import Environment, distribution_version
from tuning.measure.runtimes import SessionSettings
from tuning.report.accuracy import Accuracy, Flip

SCHEMA_VERSION = 2  # 2: performance per runtime (docs/report-schema.md, "Migrating from 1")
FLOAT_NAME = "fp32"
INT8_NAME = "int8"


class Role(str, Enum):
    FLOAT = "float"  # the baseline every ratio and agreement is taken against; exactly one
    INT8 = "int8"  # the model under test; exactly one
    REFERENCE = "reference"  # any number of others to compare with, e.g. the zoo's int8 model


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: Role
    path: Path


@dataclass(frozen=True)
class RuntimeResult:
    """One model on one runtime: its predictions on the whole evaluation split (configured pixel scale)
    against the same model's on onnxruntime, and its speed when measured; or why it could not run."""

    runtime: Runtime
    error: str | None = None  # the runtime cannot load the model (e.g. OpenVINO and per-channel QLinearConv)
    top1_accuracy: float | None = None
    images: int = 0
    differing_from_onnxruntime: int = 0  # images whose predicted class differs from onnxruntime's
    conditions: dict[str, Any] = field(default_factory=dict)  # how the runtime compiled the model, read back
    performance: Performance | None = None

    def to_json(self) -> dict[str, Any]:
        performance = self.performance
        return {
            "status": "cannot load" if self.error else "ok",
            "error": self.error,
            "accuracy": None
            if self.top1_accuracy is None
            else {
                "top1_accuracy": self.top1_accuracy,
                "top1_error": 1.0 - self.top1_accuracy,
                "images": self.images,
                "differing_from_onnxruntime": self.differing_from_onnxruntime,
                "agreement_with_onnxruntime": 1.0 - self.differing_from_onnxruntime / self.images,
            },
            "conditions": None if self.error else self.conditions,
            "latency_ms": None
            if performance is None
            else {
                "batch_size": performance.latency.batch_size,
                "p50": performance.latency.p50,
                "p90": performance.latency.p90,
                "p99": performance.latency.p99,
                "mean": performance.latency.mean,
                "p50_rounds": performance.latency.p50_spread.to_json(),
                "samples": performance.latency.runs,
                "warmup": performance.latency.warmup_runs,
            },
            "throughput": None
            if performance is None
            else [
                {
                    "batch_size": timing.batch_size,
                    "images_per_s": timing.images_per_s,
                    "images_per_s_rounds": timing.images_per_s_spread.to_json(),
                    "batch_p50_ms": timing.p50,
                    "batches": timing.runs,
                    "warmup_batches": timing.warmup_runs,
                }
                for timing in performance.throughput
            ],
        }


@dataclass(frozen=True)
class ModelResult:
    entry: ModelEntry
    sha256: str
    size_bytes: int
    op_types: dict[str, int]
    precisions: dict[str, list[str]]
    declared_preprocessing: dict[str, Any] | None  # what the model's own metadata says it expects
    accuracy: Accuracy  # onnxruntime's, the reference every runtime's predictions are compared with
    accuracy_other_scale: Accuracy
    runtimes: dict[Runtime, RuntimeResult]  # every configured runtime that is installed

    def performance(self, runtime: Runtime) -> Performance | None:
        result = self.runtimes.get(runtime)
        return None if result is None else result.performance

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.entry.name,
            "role": self.entry.role.value,
            "path": str(self.entry.path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "op_types": self.op_types,
            "precisions": self.precisions,
            "declared_preprocessing": self.declared_preprocessing,
            "accuracy": self.accuracy.to_json(),
            "accuracy_other_scale": self.accuracy_other_scale.to_json(),
            "runtimes": {runtime.value: result.to_json() for runtime, result in self.runtimes.items()},
        }


@dataclass(frozen=True)
class Series:
    """One timed (model, runtime) pair as tables and plots show it: plots colour it by model and draw
    it in a line style per runtime."""

    label: str
    model_index: int
    runtime_index: int
    performance: Performance


@dataclass(frozen=True)
class Report:
    config: PipelineConfig
    evaluation_images: int
    environment: Environment
    models: list[ModelResult]
    created_utc: str
    # The tuning run that made the int8 model (<output.dir>/tuning_summary.json), when it describes that model.
    tuning: dict[str, Any] | None = None
    tuning_note: str | None = None  # why a summary that exists was left out
    # Images the int8 model classifies differently from the float one at the configured scale, and the
    # raw pixels (N, H, W) of the first builder.FLIP_PICTURES of them, for the picture of what quantization cost.
    flips: tuple[Flip, ...] = ()
    flip_pixels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()  # the dataset's, in label order (torchvision's ``classes``)
    # Configured runtimes (benchmark.runtimes) that are not installed here, and why: not measured.
    unavailable_runtimes: dict[Runtime, str] = field(default_factory=dict)

    def class_label(self, label: int) -> str:
        """``label`` with its name when the dataset has one: ``9 Ankle boot``; MNIST's names are the digits."""
        name = self.class_names[label] if label < len(self.class_names) else ""
        return f"{label} {name}".rstrip() if name and name.split(" ")[0] != str(label) else str(label)

    @property
    def float_result(self) -> ModelResult:
        return next(result for result in self.models if result.entry.role is Role.FLOAT)

    @property
    def int8_result(self) -> ModelResult:
        return next(result for result in self.models if result.entry.role is Role.INT8)

    @property
    def measured_runtimes(self) -> list[Runtime]:
        """The configured runtimes some model was timed on, in the configured order (the float model may be
        one the runtime cannot load)."""
        return [
            runtime
            for runtime in self.config.benchmark.runtimes
            if any(result.performance(runtime) for result in self.models)
        ]

    @property
    def onnxruntime_only(self) -> bool:
        """Whether onnxruntime is the one configured runtime: then no figure needs its runtime named."""
        return self.config.benchmark.runtimes == (Runtime.ONNXRUNTIME,)

    @property
    def performance_measured(self) -> bool:
        return bool(self.measured_runtimes)

    def measured_series(self) -> list[Series]:
        """Every timed (model, runtime) pair, runtime by runtime, labelled ``int8`` when onnxruntime is the one
        configured runtime and ``int8 · openvino`` otherwise."""
        several = not self.onnxruntime_only
        return [
            Series(
                f"{result.entry.name} · {runtime.value}" if several else result.entry.name,
                model_index,
                runtime_index,
                performance,
            )
            for runtime_index, runtime in enumerate(self.measured_runtimes)
            for model_index, result in enumerate(self.models)
            if (performance := result.performance(runtime)) is not None
        ]

    def ratios_vs_float(self, runtime: Runtime, base_runtime: Runtime | None = None) -> dict[str, dict[str, Any]]:
        """p50 latency ratio and throughput ratio per batch size of every model on ``runtime`` against the
        float model on ``base_runtime`` (default: the same runtime); the float model itself is left out
        when both runtimes are the same.

        Each ratio is the median of its per-round values (both ran interleaved in every round);
        ``*_rounds`` give that median with the range of the per-round values.
        """
        base_runtime = runtime if base_runtime is None else base_runtime
        base = self.float_result.performance(base_runtime)
        ratios: dict[str, dict[str, Any]] = {}
        for result in self.models:
            if result.entry.role is Role.FLOAT and runtime is base_runtime:
                continue
            perf = result.performance(runtime)
            if base is None or perf is None:
                sizes = benchmark.batch_sizes(self.config.benchmark)
                ratios[result.entry.name] = {
                    "latency_p50": None,
                    "latency_p50_rounds": None,
                    "throughput": {str(b): None for b in sizes},
                    "throughput_rounds": {str(b): None for b in sizes},
                }
                continue
            latency = perf.latency_ratio(base)
            throughput = {str(t.batch_size): perf.throughput_ratio(base, t.batch_size) for t in perf.throughput}
            ratios[result.entry.name] = {
                "latency_p50": latency.value,
                "latency_p50_rounds": latency.to_json(),
                "throughput": {b: spread.value for b, spread in throughput.items()},
                "throughput_rounds": {b: spread.to_json() for b, spread in throughput.items()},
            }
        return ratios

    def to_json(self) -> dict[str, Any]:
        settings = self.config.benchmark
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_by": f"tuning {package_version()}",
            "created_utc": self.created_utc,
            "preprocessing": self.config.preprocessing,
            "other_pixel_scale": other_scale(self.config.dataset.pixel_scale).value,
            "evaluation": {
                "dataset": self.config.dataset.name,
                "split": self.config.evaluation.split.value,
                "images": self.evaluation_images,
                "class_names": list(self.class_names),
            },
            "benchmark": {
                "performance_measured": self.performance_measured,
                "runtimes": [
                    {"runtime": runtime.value, "installed": runtime not in self.unavailable_runtimes,
                     "note": self.unavailable_runtimes.get(runtime)}
                    for runtime in self.config.benchmark.runtimes
                ],  # fmt: skip
                "warmup": settings.warmup,
                "iterations": settings.iterations,
                "min_time_s": settings.min_time_s,
                "rounds": settings.rounds,
                "batch_sizes": list(benchmark.batch_sizes(settings)),
                "intra_op_threads": settings.intra_op_threads,
                "runs_at_batch": {
                    str(b): dict(zip(("warmup", "timed"), benchmark.runs_at_batch(settings, b)))
                    for b in timed_batch_sizes(settings)
                },
                "interleave_images": benchmark.INTERLEAVE_IMAGES,
                "throughput_statistic": "batch_size / median batch time",
                "ratio_statistic": "median of the per-round ratios; *_rounds: that median with the per-round min and max",
                "session_options": SessionSettings.of(self.config).describe(),
            },
            "environment": {
                "cpu_model": self.environment.cpu_model,
                "cpu_flags": self.environment.cpu_flags,
                "cpu_count": self.environment.cpu_count,
                "usable_cpus": self.environment.usable_cpus,
                "system": self.environment.system,
                "machine": self.environment.machine,
                "versions": self.environment.versions,
            },
            "models": [result.to_json() for result in self.models],
            "ratios_vs_float": {runtime.value: self.ratios_vs_float(runtime) for runtime in self.measured_runtimes},
            "ratios_vs_onnxruntime_float": {
                runtime.value: self.ratios_vs_float(runtime, Runtime.ONNXRUNTIME) for runtime in self.measured_runtimes
            }
            if Runtime.ONNXRUNTIME in self.measured_runtimes
            else {},
            "flipped_images": {
                "model": self.int8_result.entry.name,
                "pixel_scale": self.config.dataset.pixel_scale.value,
                "images": [flip.to_json() for flip in self.flips],
            },
        } | ({"tuning": self.tuning} if self.tuning is not None else {})


def model_entries(float_model: Path, int8_model: Path, references: Sequence[str | Path]) -> list[ModelEntry]:
    """Name every model. A reference is ``PATH`` or ``NAME=PATH``; an unnamed one is called by its
    file stem without the float model's stem (``zoo-mnist-12-int8`` next to ``mnist-12`` is ``zoo-int8``)."""
    entries = [
        ModelEntry(FLOAT_NAME, Role.FLOAT, Path(float_model)),
        ModelEntry(INT8_NAME, Role.INT8, Path(int8_model)),
    ]
    taken = {FLOAT_NAME, INT8_NAME}
    for reference in references:
        name, sep, path_text = str(reference).partition("=")
        if not sep or Path(reference).exists():  # an existing file whose name holds "=" is a plain PATH
            name, path_text = _short_name(Path(reference).stem, Path(float_model).stem), str(reference)
        if not name or not path_text:
            raise InputError(f"--reference {reference!r}: expected PATH or NAME=PATH")
        unique, index = name, 2
        while unique in taken:
            unique, index = f"{name}-{index}", index + 1
        taken.add(unique)
        entries.append(ModelEntry(unique, Role.REFERENCE, Path(path_text)))
    return entries


def _short_name(stem: str, float_stem: str) -> str:
    shortened = re.sub(r"[-_.]{2,}", "-", stem.replace(float_stem, "")).strip("-_.") if float_stem else stem
    return shortened or stem


def timed_batch_sizes(settings: BenchmarkSection) -> list[int]:
    """Batch 1 for latency and the throughput batch sizes."""
    return sorted({1, *benchmark.batch_sizes(settings)})


def other_scale(scale: PixelScale) -> PixelScale:
    return PixelScale.RAW if scale is PixelScale.UNIT else PixelScale.UNIT


def package_version() -> str:
    return distribution_version("mnist-int8-tuning") or "unknown"
