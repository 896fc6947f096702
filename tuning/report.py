"""The comparison report: accuracy, speed, size and ops of the float, int8 and reference models.

:func:`run_report` evaluates every model on the whole evaluation split under the configured
preprocessing and under the other pixel scale ([0, 1] against 0..255, same mean/std), so a model
calibrated for the other scale shows at once. It measures performance with
:mod:`tuning.benchmark` (all models interleaved in one run), then writes ``report.json``
(schema: docs/report-schema.md), ``report.md`` and PNG plots into one folder, each file atomically.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tqdm import tqdm

from tuning import benchmark, data, onnx_io
from tuning.atomic import atomic_output, write_text_atomic
from tuning.benchmark import BenchmarkTarget, Environment, Performance, threads_phrase
from tuning.config import BenchmarkSection, PipelineConfig, PixelScale
from tuning.errors import InputError
from tuning.evaluate import make_session, predict
from tuning.fetch import sha256_of
from tuning.graph import Precision, node_precisions, op_type_counts

SCHEMA_VERSION = 1
TUNING_SUMMARY = "tuning_summary.json"  # written by the tune command into output.dir
FLOAT_NAME = "fp32"
INT8_NAME = "int8"
LATENCY_PLOT = "latency.png"
THROUGHPUT_PLOT = "throughput.png"
CONFUSION_PLOT = "confusion-int8.png"
_PLOT_TITLES = {
    LATENCY_PLOT: "latency distribution per model",
    THROUGHPUT_PLOT: "throughput against batch size",
    CONFUSION_PLOT: "confusion matrix of the int8 model",
}
# A model whose error drops by more than this at the other pixel scale was calibrated for that scale.
_SCALE_MISMATCH_PP = 1.0


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
class Accuracy:
    """Top-1 results of one model at one pixel scale; rows of ``confusion`` are true labels."""

    pixel_scale: PixelScale
    confusion: np.ndarray
    agreement_with_float: float
    flips: int
    flips_to_correct: int  # float wrong, this model right
    flips_to_wrong: int  # float right, this model wrong

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1_accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.images)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1_accuracy

    @property
    def per_class_accuracy(self) -> list[float | None]:
        """Recall of each class; None for a class with no images in the split."""
        totals = self.confusion.sum(axis=1)
        return [float(self.confusion[k, k] / totals[k]) if totals[k] else None for k in range(len(totals))]

    def to_json(self) -> dict[str, Any]:
        return {
            "pixel_scale": self.pixel_scale.value,
            "top1_accuracy": self.top1_accuracy,
            "top1_error": self.top1_error,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion_matrix": self.confusion.tolist(),
            "agreement_with_float": self.agreement_with_float,
            "flips": self.flips,
            "flips_to_correct": self.flips_to_correct,
            "flips_to_wrong": self.flips_to_wrong,
            "images": self.images,
        }


def score(
    predictions: np.ndarray,
    labels: np.ndarray,
    float_predictions: np.ndarray,
    num_classes: int,
    pixel_scale: PixelScale,
) -> Accuracy:
    """Confusion matrix and agreement of one model's predictions; ``float_predictions`` at the same scale."""
    confusion = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    same = predictions == float_predictions
    float_right = float_predictions == labels
    return Accuracy(
        pixel_scale=pixel_scale,
        confusion=confusion.reshape(num_classes, num_classes).astype(np.int64),
        agreement_with_float=float(np.mean(same)),
        flips=int(np.sum(~same)),
        flips_to_correct=int(np.sum(~same & ~float_right & (predictions == labels))),
        flips_to_wrong=int(np.sum(~same & float_right)),
    )


@dataclass(frozen=True)
class ModelResult:
    entry: ModelEntry
    sha256: str
    size_bytes: int
    op_types: dict[str, int]
    precisions: dict[str, list[str]]
    declared_preprocessing: dict[str, Any] | None  # what the model's own metadata says it expects
    accuracy: Accuracy
    accuracy_other_scale: Accuracy
    performance: Performance | None

    def to_json(self) -> dict[str, Any]:
        performance = self.performance
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
            "latency_ms": None
            if performance is None
            else {
                "batch_size": performance.latency.batch_size,
                "p50": performance.latency.p50,
                "p90": performance.latency.p90,
                "p99": performance.latency.p99,
                "mean": performance.latency.mean,
                "samples": performance.latency.runs,
                "warmup": performance.latency.warmup_runs,
            },
            "throughput": None
            if performance is None
            else [
                {
                    "batch_size": timing.batch_size,
                    "images_per_s": timing.images_per_s,
                    "batch_p50_ms": timing.p50,
                    "batches": timing.runs,
                    "warmup_batches": timing.warmup_runs,
                }
                for timing in performance.throughput
            ],
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

    @property
    def float_result(self) -> ModelResult:
        return next(result for result in self.models if result.entry.role is Role.FLOAT)

    @property
    def int8_result(self) -> ModelResult:
        return next(result for result in self.models if result.entry.role is Role.INT8)

    @property
    def performance_measured(self) -> bool:
        return self.float_result.performance is not None

    def ratios_vs_float(self) -> dict[str, dict[str, Any]]:
        """int8/float p50 latency ratio and throughput ratio per batch size, for every non-float model."""
        base = self.float_result.performance
        ratios: dict[str, dict[str, Any]] = {}
        for result in self.models:
            if result.entry.role is Role.FLOAT:
                continue
            perf = result.performance
            if base is None or perf is None:
                ratios[result.entry.name] = {
                    "latency_p50": None,
                    "throughput": {str(b): None for b in benchmark.batch_sizes(self.config.benchmark)},
                }
                continue
            base_throughput = {t.batch_size: t.images_per_s for t in base.throughput}
            ratios[result.entry.name] = {
                "latency_p50": perf.latency.p50 / base.latency.p50,
                "throughput": {
                    str(t.batch_size): t.images_per_s / base_throughput[t.batch_size] for t in perf.throughput
                },
            }
        return ratios

    def to_json(self) -> dict[str, Any]:
        settings = self.config.benchmark
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_by": f"tuning {_package_version()}",
            "created_utc": self.created_utc,
            "preprocessing": self.config.preprocessing,
            "other_pixel_scale": _other_scale(self.config.dataset.pixel_scale).value,
            "evaluation": {
                "dataset": self.config.dataset.name,
                "split": self.config.evaluation.split.value,
                "images": self.evaluation_images,
            },
            "benchmark": {
                "performance_measured": self.performance_measured,
                "warmup": settings.warmup,
                "iterations": settings.iterations,
                "batch_sizes": list(benchmark.batch_sizes(settings)),
                "intra_op_threads": settings.intra_op_threads,
                "runs_at_batch": {
                    str(b): dict(zip(("warmup", "timed"), benchmark.runs_at_batch(settings, b)))
                    for b in _timed_batch_sizes(settings)
                },
                "interleave_images": benchmark.INTERLEAVE_IMAGES,
                "throughput_statistic": "batch_size / median batch time",
                "session_options": benchmark.describe_session_options(settings.intra_op_threads),
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
            "ratios_vs_float": self.ratios_vs_float(),
        } | ({"tuning": self.tuning} if self.tuning is not None else {})


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    plots: list[Path]
    summary_table: str


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


def run_report(config: PipelineConfig, entries: Sequence[ModelEntry], out_dir: Path, performance: bool) -> ReportFiles:
    """Evaluate and (unless ``performance`` is False) benchmark every model, then write the report files."""
    report = build_report(config, entries, performance)
    return write_report(report, Path(out_dir))


def build_report(config: PipelineConfig, entries: Sequence[ModelEntry], performance: bool) -> Report:
    """Every number of the report; nothing is written."""
    roles = [entry.role for entry in entries]
    if roles.count(Role.FLOAT) != 1 or roles.count(Role.INT8) != 1:
        raise InputError("a report needs exactly one float and one int8 model")
    models = {entry.name: _load(entry) for entry in entries}
    float_entry = next(entry for entry in entries if entry.role is Role.FLOAT)
    spec = onnx_io.describe(models[float_entry.name], float_entry.path)
    for entry in entries:
        other = onnx_io.describe(models[entry.name], entry.path)
        if (other.sample_shape, other.num_classes) != (spec.sample_shape, spec.num_classes):
            raise InputError(
                f"{entry.path}: input {list(other.sample_shape)} with {other.num_classes} classes does not match "
                f"the float model's {list(spec.sample_shape)} with {spec.num_classes} classes"
            )

    pixels, labels = data.load_pixels(config.dataset, config.evaluation.split)
    if labels.max() >= spec.num_classes:
        raise InputError(f"{float_entry.path}: {spec.num_classes} classes, but the labels go up to {labels.max()}")
    scales = (config.dataset.pixel_scale, _other_scale(config.dataset.pixel_scale))
    images = {
        scale: data.preprocess(pixels, config.dataset.model_copy(update={"pixel_scale": scale}), spec.sample_shape)
        for scale in scales
    }
    predictions = _predict_all(entries, models, images, labels, config)
    float_predictions = predictions[float_entry.name]
    accuracies = {
        entry.name: [
            score(predictions[entry.name][scale], labels, float_predictions[scale], spec.num_classes, scale)
            for scale in scales
        ]
        for entry in entries
    }

    performances: dict[str, Performance] = {}
    if performance:
        targets = [BenchmarkTarget(entry.name, models[entry.name], entry.path) for entry in entries]
        performances = benchmark.measure_performance(targets, images[scales[0]], config.benchmark)

    results = []
    for entry in entries:
        model = models[entry.name]
        precisions = node_precisions(model)
        results.append(
            ModelResult(
                entry=entry,
                sha256=sha256_of(entry.path),
                size_bytes=entry.path.stat().st_size,
                op_types=op_type_counts(model),
                precisions={
                    kind.value: [name for name, precision in precisions.items() if precision is kind]
                    for kind in Precision
                },
                declared_preprocessing=onnx_io.read_metadata(model).get("preprocessing"),
                accuracy=accuracies[entry.name][0],
                accuracy_other_scale=accuracies[entry.name][1],
                performance=performances.get(entry.name),
            )
        )
    int8_result = next(result for result in results if result.entry.role is Role.INT8)
    tuning, tuning_note = tuning_candidates(config.output.dir / TUNING_SUMMARY, int8_result.sha256)
    return Report(
        config=config,
        evaluation_images=len(labels),
        environment=benchmark.capture_environment(),
        models=results,
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tuning=tuning,
        tuning_note=tuning_note,
    )


# Keys of each trial in tuning_summary.json copied into report.json's tuning.candidates (tuning.quantize.Trial).
_CANDIDATE_KEYS = (
    "index", "accuracy", "meets_criterion", "int8_nodes", "fp32_nodes", "quant_format", "calibration_algorithm",
    "fp32_fallback", "same_model_as", "latency_p50_ms", "latency_ratio", "latency_ratio_rounds",
    "throughput_images_per_s", "throughput_ratio", "chosen", "reason",
)


def tuning_candidates(summary_path: Path, int8_sha256: str) -> tuple[dict[str, Any] | None, str | None]:
    """The candidates of the tuning run that made the int8 model, or None and why they are left out.

    They are taken only from a summary whose ``output_sha256`` is the int8 model's: a summary of
    another run (or another model) would describe a different model.
    """
    if not summary_path.is_file():
        return None, None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary.get("output_sha256") != int8_sha256:
            return None, (
                f"`{summary_path}` describes another model (sha256 {str(summary.get('output_sha256'))[:16]}…), "
                "not this int8 model; its candidates are not listed."
            )
        candidates = [{key: trial.get(key) for key in _CANDIDATE_KEYS} for trial in summary["trials"]]
        section = {
            "summary_path": str(summary_path),
            "objective": summary["objective"],
            "chosen_trial": summary["chosen_trial"],
            "reason": summary["reason"],
            "latency_measurement": summary["latency_measurement"],
            "candidates": candidates,
        }
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        return None, f"`{summary_path}` could not be read ({exc.__class__.__name__}); no tuning candidates listed."
    return section, None


def _load(entry: ModelEntry) -> onnx.ModelProto:
    if entry.role is Role.INT8 and not entry.path.is_file():
        raise InputError(
            f"{entry.path}: int8 model not found; produce it with run_tuning.sh (python -m tuning tune) "
            "or pass --int8-model"
        )
    return onnx_io.load_model(entry.path)


def _predict_all(
    entries: Sequence[ModelEntry],
    models: dict[str, onnx.ModelProto],
    images: dict[PixelScale, np.ndarray],
    labels: np.ndarray,
    config: PipelineConfig,
) -> dict[str, dict[PixelScale, np.ndarray]]:
    predictions: dict[str, dict[PixelScale, np.ndarray]] = {}
    with tqdm(total=len(entries) * len(images), desc="accuracy", unit="eval", disable=None, leave=False) as bar:
        for entry in entries:
            model = models[entry.name]
            # A fixed batch dimension decides the batch size; otherwise the configured one.
            batch_size = onnx_io.describe(model, entry.path).batch_dim or config.evaluation.batch_size
            session = make_session(model, config.benchmark.intra_op_threads)
            predictions[entry.name] = {}
            for scale, scaled in images.items():
                bar.set_postfix_str(f"{entry.name}, {scale.value} pixels")
                predictions[entry.name][scale] = predict(session, data.LabelledImages(scaled, labels), batch_size)
                bar.update()
    return predictions


def _timed_batch_sizes(settings: BenchmarkSection) -> list[int]:
    """Batch 1 for latency and the throughput batch sizes."""
    return sorted({1, *benchmark.batch_sizes(settings)})


def _other_scale(scale: PixelScale) -> PixelScale:
    return PixelScale.RAW if scale is PixelScale.UNIT else PixelScale.UNIT


def _package_version() -> str:
    try:
        return importlib.metadata.version("mnist-int8-tuning")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --- files -------------------------------------------------------------------------------------


def write_report(report: Report, out_dir: Path) -> ReportFiles:
    """report.json, report.md and the plots it links, each written atomically into ``out_dir``."""
    plots = [_plot_confusion(report, out_dir / CONFUSION_PLOT)]
    if report.performance_measured:
        plots = [
            _plot_latency(report, out_dir / LATENCY_PLOT),
            _plot_throughput(report, out_dir / THROUGHPUT_PLOT),
            *plots,
        ]
    json_path = out_dir / "report.json"
    write_text_atomic(json_path, json.dumps(report.to_json(), indent=2) + "\n")
    summary = summary_table(report)
    markdown_path = out_dir / "report.md"
    write_text_atomic(markdown_path, _markdown(report, summary, [plot.name for plot in plots]))
    return ReportFiles(json_path, markdown_path, plots, summary)


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def _us(ms: float) -> str:
    return f"{1000 * ms:.1f} µs"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "l") -> str:
    # The first column is a label; the others are numbers and read best right-aligned.
    marks = [":---"] + ["---:" if align == "r" else ":---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(report: Report) -> str:
    """The table people read first: one row per model."""
    largest = max(benchmark.batch_sizes(report.config.benchmark))
    other = _other_scale(report.config.dataset.pixel_scale).value
    rows = []
    for result in report.models:
        perf, accuracy = result.performance, result.accuracy
        agreement = f"{_pct(accuracy.agreement_with_float)} / {accuracy.flips}"
        rows.append(
            [
                f"{result.entry.name} ({result.entry.role.value})",
                _pct(accuracy.top1_error),
                _pct(result.accuracy_other_scale.top1_error),
                "—" if result.entry.role is Role.FLOAT else agreement,
                _us(perf.latency.p50) if perf is not None else "not measured",
                f"{perf.throughput_at(largest).images_per_s:,.0f} img/s" if perf is not None else "not measured",
                f"{result.size_bytes:,} B",
            ]
        )
    header = [
        "model",
        f"top-1 error ({report.config.dataset.pixel_scale.value} pixels)",
        f"error at {other} pixels",
        "agreement with fp32 / flips",
        "p50 latency (batch 1)",
        f"throughput @ batch {largest}",
        "size",
    ]
    return _table(header, rows, align="r")


def _mismatch_notes(report: Report) -> list[str]:
    configured = report.config.preprocessing
    notes = []
    for result in report.models:
        this, other = result.accuracy, result.accuracy_other_scale
        if 100 * (this.top1_error - other.top1_error) > _SCALE_MISMATCH_PP:
            notes.append(
                f"**{result.entry.name}** has {_pct(this.top1_error)} error with {this.pixel_scale.value} pixels but "
                f"{_pct(other.top1_error)} with {other.pixel_scale.value} pixels: it expects "
                f"{other.pixel_scale.value} input, not this pipeline's preprocessing."
            )
        declared = result.declared_preprocessing
        if declared is not None and declared != configured:
            notes.append(
                f"**{result.entry.name}** declares preprocessing {json.dumps(declared, sort_keys=True)} in its "
                f"metadata; this report uses {json.dumps(configured, sort_keys=True)}."
            )
    return notes


def _markdown(report: Report, summary: str, plots: list[str]) -> str:
    sections = [
        _intro_section(report),
        _summary_section(report, summary),
        _performance_section(report, plots),
        _conditions_section(report),
        _tuning_section(report),
        _accuracy_section(report),
        _operators_section(report),
        _models_section(report),
    ]
    return "\n\n".join(sections) + "\n"


def _intro_section(report: Report) -> str:
    config = report.config
    return (
        "# Quantization report\n\n"
        f"Generated {report.created_utc} by tuning {_package_version()}; {report.evaluation_images:,} "
        f"{config.dataset.name} {config.evaluation.split.value} images, preprocessing "
        f"`{json.dumps(config.preprocessing, sort_keys=True)}`. Machine-readable: `report.json` "
        "(schema: docs/report-schema.md)."
    )


def _summary_section(report: Report, summary: str) -> str:
    lines = [
        "## Summary",
        "",
        summary,
        "",
        "Agreement: share of test images on which the model predicts the same class as fp32; flips: images on "
        "which it does not. Error at the other pixel scale feeds the same images scaled the other way "
        "([0, 1] against 0..255, same mean and std), to expose a model calibrated for the other preprocessing.",
    ]
    notes = _mismatch_notes(report)
    if notes:
        lines += ["", *(f"- ⚠ {note}" for note in notes)]
    return "\n".join(lines)


def _performance_section(report: Report, plots: list[str]) -> str:
    if not report.performance_measured:
        return "## Ratios against fp32\n\nPerformance was not measured (`--skip-performance`)."
    sizes = benchmark.batch_sizes(report.config.benchmark)
    ratios = _table(
        ["model", "p50 latency ratio", *(f"throughput ratio @ {b}" for b in sizes)],
        [
            [name, f"{r['latency_p50']:.2f}×", *(f"{r['throughput'][str(b)]:.2f}×" for b in sizes)]
            for name, r in report.ratios_vs_float().items()
        ],
        align="r",
    )
    measured = [(result.entry.name, result.performance) for result in report.models if result.performance]
    latency = _table(
        ["model (batch 1)", "p50", "p90", "p99", "mean", "timed runs"],
        [
            [name, *(_us(p.latency.percentile(q)) for q in (50, 90, 99)), _us(p.latency.mean), f"{p.latency.runs:,}"]
            for name, p in measured
        ],
        align="r",
    )
    throughput = _table(
        ["batch size", *(f"{name} img/s" for name, _ in measured)],
        [[str(b), *(f"{p.throughput_at(b).images_per_s:,.0f}" for _, p in measured)] for b in sizes],
        align="r",
    )
    images = "\n".join(f"![{_PLOT_TITLES[name]}]({name})" for name in plots if name != CONFUSION_PLOT)
    return "\n\n".join(
        [
            "## Ratios against fp32 (same run, interleaved)",
            ratios,
            "Latency ratio below 1 and throughput ratio above 1 mean faster than fp32.",
            "## Performance",
            latency,
            throughput,
            images,
        ]
    )


def _conditions_section(report: Report) -> str:
    settings, env = report.config.benchmark, report.environment
    session = benchmark.describe_session_options(settings.intra_op_threads)
    runs = ", ".join(
        f"batch {b}: {warmup} + {timed}"
        for b in _timed_batch_sizes(settings)
        for warmup, timed in [benchmark.runs_at_batch(settings, b)]
    )
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in env.cpu_flags.items())
    sizes = ", ".join(map(str, benchmark.batch_sizes(settings)))
    return "\n".join(
        [
            "## Conditions",
            "",
            f"- Threads: {session['intra_op_num_threads']} intra-op, {session['inter_op_num_threads']} inter-op; "
            f"graph optimization {session['graph_optimization_level']}, {session['execution_mode']}, "
            f"{', '.join(session['providers'])}; session config entries "
            f"`{json.dumps(session['config_entries'], sort_keys=True)}` (a deployment needs them for this speed; "
            "int8 models made by this pipeline record them in their metadata, `tuning.session_options`)",
            f"- Latency: batch 1, {settings.warmup} warm-up + {settings.iterations} timed runs per model, on the "
            f"model as given; throughput at batch sizes {sizes} on batch-capable copies (checked to give the "
            f"original's outputs); warm-up + timed runs: {runs}",
            f"- Models interleaved in chunks of about {benchmark.INTERLEAVE_IMAGES} images; throughput is "
            "batch size / median batch time",
            f"- CPU: {env.cpu_model}; {flags}; {env.usable_cpus} usable of {env.cpu_count} cores; "
            f"{env.machine}, {env.system}",
            "- Versions: " + ", ".join(f"{name} {version}" for name, version in env.versions.items()),
        ]
    )


def _tuning_section(report: Report) -> str:
    tuning = report.tuning
    if tuning is None:
        note = report.tuning_note or "No tuning summary (`<output.dir>/" + TUNING_SUMMARY + "`) found."
        return f"## Tuning candidates\n\n{note}"
    measurement = tuning["latency_measurement"]
    timed = measurement is not None
    largest = measurement["throughput_batch_size"] if timed else None
    header = ["trial", "candidate", "int8 / fp32 nodes", "top-1", "criterion"]
    if timed:
        header += ["p50 (batch 1)", "p50 ratio (per round)", f"img/s @ {largest}", "throughput ratio"]
    header.append("chosen")
    rows = []
    for trial in tuning["candidates"]:
        row = [
            str(trial["index"]),
            _candidate_description(trial),
            "—" if trial["index"] == 0 else f"{len(trial['int8_nodes'])} / {len(trial['fp32_nodes'])}",
            _pct(trial["accuracy"]),
            "baseline" if trial["index"] == 0 else ("meets" if trial["meets_criterion"] else "misses"),
        ]
        if timed:
            rounds = trial["latency_ratio_rounds"] or []
            row += [
                _us(trial["latency_p50_ms"]),
                f"{trial['latency_ratio']:.2f}× ({min(rounds):.2f}–{max(rounds):.2f})" if rounds else "—",
                f"{trial['throughput_images_per_s']:,.0f}",
                f"{trial['throughput_ratio']:.2f}×",
            ]
        row.append("**yes**" if trial["chosen"] else "")
        rows.append(row)
    lines = [
        "## Tuning candidates",
        "",
        f"Every candidate the tuning run tried (objective `{tuning['objective']}`, from `{tuning['summary_path']}`). "
        f"Chosen: trial {tuning['chosen_trial']}: {tuning['reason']}.",
        "",
        _table(header, rows),
    ]
    if timed:
        entries = measurement["session_options"].get("config_entries", {})
        lines += [
            "",
            f"Timed at tuning time, not in this report's run: fp32 and every distinct candidate interleaved, "
            f"{measurement['rounds']} rounds of {measurement['iterations']} images per model at batch 1 and at "
            f"batch {largest}, {threads_phrase(measurement['intra_op_threads'])}, session config entries "
            f"`{json.dumps(entries, sort_keys=True)}`. A candidate counts as slower than the fastest only when it is "
            f"more than {measurement['tie_margin']:.0%} slower in every round; of those tied with the fastest, the "
            "earliest in the candidate order is chosen.",
        ]
    return "\n".join(lines)


def _candidate_description(trial: dict[str, Any]) -> str:
    if trial["index"] == 0:
        return "fp32 baseline"
    if trial["quant_format"] is None:
        return "INC trial"
    fallback = ", ".join(trial["fp32_fallback"] or []) or "none"
    text = f"{trial['quant_format']}, {trial['calibration_algorithm'] or 'no calibration'}, fp32: {fallback}"
    return text + (f" (same model as trial {trial['same_model_as']})" if trial["same_model_as"] is not None else "")


def _accuracy_section(report: Report) -> str:
    classes = report.float_result.accuracy.confusion.shape[0]
    table = _table(
        ["class", *(result.entry.name for result in report.models)],
        [
            [str(k), *(_optional_pct(result.accuracy.per_class_accuracy[k]) for result in report.models)]
            for k in range(classes)
        ],
        align="r",
    )
    return (
        f"## Per-class accuracy ({report.config.dataset.pixel_scale.value} pixels)\n\n{table}\n\n"
        f"![{_PLOT_TITLES[CONFUSION_PLOT]}]({CONFUSION_PLOT})"
    )


def _operators_section(report: Report) -> str:
    op_types = sorted({op for result in report.models for op in result.op_types})
    counts = _table(
        ["op type", *(result.entry.name for result in report.models)],
        [[op, *(str(result.op_types.get(op, 0)) for result in report.models)] for op in op_types],
        align="r",
    )
    nodes = _table(
        ["model", "int8 nodes", "fp32 nodes", "Quantize/Dequantize nodes"],
        [
            [
                result.entry.name,
                *(
                    f"{len(result.precisions[kind.value])}: {', '.join(result.precisions[kind.value]) or '—'}"
                    for kind in Precision
                ),
            ]
            for result in report.models
        ],
    )
    return f"## Operators\n\n{counts}\n\n{nodes}"


def _models_section(report: Report) -> str:
    table = _table(
        ["model", "role", "path", "sha256", "declared preprocessing"],
        [
            [
                result.entry.name,
                result.entry.role.value,
                f"`{result.entry.path}`",
                f"`{result.sha256[:16]}…`",
                f"`{json.dumps(result.declared_preprocessing, sort_keys=True)}`"
                if result.declared_preprocessing
                else "none",
            ]
            for result in report.models
        ],
    )
    return f"## Models\n\n{table}"


def _optional_pct(value: float | None) -> str:
    return "—" if value is None else _pct(value)


# --- plots --------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    plt = _pyplot()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def _plot_latency(report: Report, path: Path) -> Path:
    plt = _pyplot()
    measured = [result for result in report.models if result.performance is not None]
    samples = [1000 * result.performance.latency.durations_ms for result in measured]
    # Latencies on a shared machine have a long tail (stalls of milliseconds next to a 40 us body):
    # log-spaced bins on a log axis show the body and the tail in one picture.
    low = min(float(s.min()) for s in samples)
    high = max(float(s.max()) for s in samples)
    bins = np.geomspace(low * 0.95, high * 1.05, 80)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for index, (result, s) in enumerate(zip(measured, samples)):
        p50, p99 = (1000 * result.performance.latency.percentile(q) for q in (50, 99))
        colour = f"C{index}"
        label = f"{result.entry.name}: p50 {p50:.1f} µs, p99 {p99:.1f} µs"
        axes.hist(s, bins=bins, histtype="step", linewidth=1.5, color=colour, label=label)
        axes.axvline(p50, color=colour, linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("latency per run, µs (log scale; dashed: p50)")
    axes.set_ylabel("runs")
    settings = report.config.benchmark
    axes.set_title(f"Batch-1 latency: {settings.iterations} runs per model, {threads_phrase(settings.intra_op_threads)}")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _plot_throughput(report: Report, path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in report.models:
        if result.performance is None:
            continue
        points = result.performance.throughput
        axes.plot([t.batch_size for t in points], [t.images_per_s for t in points], marker="o", label=result.entry.name)
    batch_sizes = benchmark.batch_sizes(report.config.benchmark)
    axes.set_xscale("log", base=2)
    axes.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    axes.set_xlabel("batch size")
    axes.set_ylabel("images / s")
    axes.set_title(f"Throughput of batch-capable copies ({threads_phrase(report.config.benchmark.intra_op_threads)})")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _plot_confusion(report: Report, path: Path) -> Path:
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    result = report.int8_result
    confusion = result.accuracy.confusion
    classes = confusion.shape[0]
    figure, axes = plt.subplots(figsize=(7.5, 6.5))
    # Log colours: the diagonal holds ~1000 per cell, the mistakes a handful; linear colours would hide them.
    shown = np.ma.masked_equal(confusion, 0)
    image = axes.imshow(shown, cmap="Blues", norm=LogNorm(vmin=0.5, vmax=max(int(confusion.max()), 2)))
    threshold = np.sqrt(max(int(confusion.max()), 1))
    for row in range(classes):
        for col in range(classes):
            count = int(confusion[row, col])
            if count:
                colour = "white" if count > threshold else "black"
                axes.text(col, row, str(count), ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(
        f"{result.entry.name}: confusion matrix, {result.accuracy.pixel_scale.value} pixels, "
        f"top-1 error {_pct(result.accuracy.top1_error)}"
    )
    figure.colorbar(image, ax=axes, label="images (log scale)")
    return _save(figure, path)
