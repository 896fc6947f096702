"""The report's numbers: which models, and each one's accuracy, speed, size and ops on every runtime.

:mod:`tuning.report.builder` measures and scores them, :mod:`tuning.report.speed` derives the speed views
tables and plots share, :mod:`tuning.report.document` makes report.json of them. Nothing here writes a file or
formats prose: :mod:`tuning.report.run` does.
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
from tuning.config.schema import PipelineConfig
from tuning.errors import InputError
from tuning.external.nncf_int8 import NncfReference
from tuning.measure.benchmark import Performance
from tuning.measure.environment import Environment, distribution_version
from tuning.report.accuracy import Accuracy, Flip

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
    nncf_reference: NncfReference | None = None  # how NNCF's int8 model among the references was made

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


def other_scale(scale: PixelScale) -> PixelScale:
    return PixelScale.RAW if scale is PixelScale.UNIT else PixelScale.UNIT


def package_version() -> str:
    return distribution_version("mnist-int8-tuning") or "unknown"
