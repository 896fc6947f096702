"""Measuring and scoring the models of a report: every number of :class:`~tuning.report.numbers.Report`.

:func:`build_report` evaluates every model on the whole evaluation split under the configured
preprocessing and under the other pixel scale ([0, 1] against 0..255, same mean/std), so a model
calibrated for the other scale shows at once, runs it on every configured runtime, and measures
performance with :mod:`tuning.measure.benchmark` (all models interleaved in one run).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

import numpy as np
import onnx
from tqdm import tqdm

from tuning.config.enums import PixelScale, Runtime
from tuning.config.schema import PipelineConfig
from tuning.data import datasets
from tuning.errors import InputError
from tuning.external.nncf_int8 import NncfReference
from tuning.files import onnx_io
from tuning.files.fetch import sha256_of
from tuning.graph.nodes import Precision, node_precisions, op_type_counts
from tuning.measure import benchmark
from tuning.measure.benchmark import BenchmarkTarget
from tuning.measure.environment import capture_environment
from tuning.measure.evaluate import check_classifier, predict
from tuning.measure.runtimes import (
    SessionSettings,
    is_openvino,
    onnxruntime_conditions,
    open_runner,
    unavailable_reason,
)
from tuning.report.accuracy import find_flips, score
from tuning.report.candidates import TUNING_SUMMARY, tuning_candidates
from tuning.report.numbers import ModelEntry, ModelResult, Report, Role, RuntimeResult, other_scale


FLIP_PICTURES = 48  # flipped images drawn in the report; report.json lists all of them


def build_report(
    config: PipelineConfig, entries: Sequence[ModelEntry], performance: bool, nncf: NncfReference | None = None
) -> Report:
    """Every number of the report; nothing is written. ``nncf``: how the NNCF reference among ``entries`` was made."""
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
    if performance:
        for batch_size in config.benchmark.batch_sizes:
            spec.require_batch_fits(batch_size, config.benchmark.max_batch_bytes, "benchmark.batch_sizes", float_entry.path)

    pixels, labels = datasets.load_pixels(config.dataset, config.evaluation.split)
    scales = (config.dataset.pixel_scale, other_scale(config.dataset.pixel_scale))
    images = {
        scale: datasets.preprocess(pixels, config.dataset.model_copy(update={"pixel_scale": scale}), spec.sample_shape)
        for scale in scales
    }
    classes = len(datasets.class_names(config.dataset))
    for entry in entries:
        check_classifier(models[entry.name], onnx_io.describe(models[entry.name], entry.path),
                         datasets.LabelledImages(images[scales[0]], labels), classes, entry.path)  # fmt: skip
    predictions = _predict_all(entries, models, images, labels, config)
    float_predictions = predictions[float_entry.name]
    int8_entry = next(entry for entry in entries if entry.role is Role.INT8)
    flips = find_flips(predictions[int8_entry.name][scales[0]], float_predictions[scales[0]], labels)
    accuracies = {
        entry.name: [
            score(predictions[entry.name][scale], labels, float_predictions[scale], spec.num_classes, scale)
            for scale in scales
        ]
        for entry in entries
    }

    unavailable = {
        runtime: reason for runtime in config.benchmark.runtimes if (reason := unavailable_reason(runtime)) is not None
    }
    installed = [runtime for runtime in config.benchmark.runtimes if runtime not in unavailable]
    on_runtimes = _run_on_runtimes(entries, models, installed, images[scales[0]], labels, predictions, config)
    if performance:
        targets = [
            BenchmarkTarget(_target_name(entry.name, runtime), models[entry.name], entry.path, runtime)
            for entry in entries
            for runtime in installed
            if on_runtimes[entry.name][runtime].error is None
        ]
        performances = benchmark.measure(targets, images[scales[0]], config.benchmark, SessionSettings.of(config))
        on_runtimes = {
            name: {
                runtime: _with_performance(result, performances.get(_target_name(name, runtime)))
                for runtime, result in by_runtime.items()
            }
            for name, by_runtime in on_runtimes.items()
        }

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
                declared_preprocessing=onnx_io.declared_preprocessing(model),
                accuracy=accuracies[entry.name][0],
                accuracy_other_scale=accuracies[entry.name][1],
                runtimes=on_runtimes[entry.name],
            )
        )
    int8_result = next(result for result in results if result.entry.role is Role.INT8)
    tuning, tuning_note = (
        tuning_candidates(config.output.dir / TUNING_SUMMARY, int8_result.sha256) if config.output.dir else (None, None)
    )
    return Report(
        config=config,
        evaluation_images=len(labels),
        class_names=tuple(datasets.class_names(config.dataset)),
        environment=capture_environment(),
        models=results,
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tuning=tuning,
        tuning_note=tuning_note,
        flips=tuple(flips),
        flip_pixels=pixels[[flip.index for flip in flips[:FLIP_PICTURES]]],
        unavailable_runtimes=unavailable,
        nncf_reference=nncf,
    )


def _with_performance(result: RuntimeResult, performance: benchmark.Performance | None) -> RuntimeResult:
    """``result`` with its timings; on OpenVINO its conditions also name the shape compiled per timed batch
    size (``input_shape`` stays the accuracy run's: it predicts in its own batches, on the model's shapes)."""
    if performance is None:
        return result
    timed = performance.conditions.get("timed_input_shapes")
    conditions = result.conditions | ({"timed_input_shapes": timed} if timed else {})
    return dataclasses.replace(result, performance=performance, conditions=conditions)


def _target_name(model: str, runtime: Runtime) -> str:
    return f"{model} on {runtime.value}"


def _run_on_runtimes(
    entries: Sequence[ModelEntry],
    models: dict[str, onnx.ModelProto],
    runtimes: Sequence[Runtime],
    images: np.ndarray,
    labels: np.ndarray,
    predictions: dict[str, dict[PixelScale, np.ndarray]],
    config: PipelineConfig,
) -> dict[str, dict[Runtime, RuntimeResult]]:
    """Every model on every runtime: loaded, or why not, and its predictions against onnxruntime's.

    onnxruntime's predictions are the ones already made; another runtime predicts the whole split
    again, so a runtime that changes predictions (bf16 arithmetic, another kernel) shows it.
    """
    scale = config.dataset.pixel_scale
    session = SessionSettings.of(config)
    results: dict[str, dict[Runtime, RuntimeResult]] = {}
    for entry in tqdm(entries, desc="runtimes", unit="model", disable=None, leave=False):
        reference = predictions[entry.name][scale]
        batch_size = _prediction_batch_size(models[entry.name], entry, config)
        results[entry.name] = {}
        for runtime in runtimes:
            if not is_openvino(runtime):
                predicted, conditions = reference, onnxruntime_conditions(session)
            else:
                try:
                    runner = open_runner(models[entry.name], runtime, session, entry.path)
                except InputError as exc:
                    results[entry.name][runtime] = RuntimeResult(runtime, error=str(exc))
                    continue
                predicted = predict(runner, datasets.LabelledImages(images, labels), batch_size)
                conditions = runner.conditions
            results[entry.name][runtime] = RuntimeResult(
                runtime,
                top1_accuracy=float(np.mean(predicted == labels)),
                images=len(labels),
                differing_from_onnxruntime=int(np.sum(predicted != reference)),
                conditions=conditions,
            )
    return results


def _load(entry: ModelEntry) -> onnx.ModelProto:
    if entry.role is Role.INT8 and not entry.path.is_file():
        raise InputError(
            f"{entry.path}: int8 model not found; produce it with run_tuning.sh (python -m tuning tune) "
            "or pass -o/--output-model"
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
            batch_size = _prediction_batch_size(model, entry, config)
            runner = open_runner(model, Runtime.ONNXRUNTIME, SessionSettings.of(config), entry.path)
            predictions[entry.name] = {}
            for scale, scaled in images.items():
                bar.set_postfix_str(f"{entry.name}, {scale.value} pixels")
                predictions[entry.name][scale] = predict(runner, datasets.LabelledImages(scaled, labels), batch_size)
                bar.update()
    return predictions


def _prediction_batch_size(model: onnx.ModelProto, entry: ModelEntry, config: PipelineConfig) -> int:
    """A fixed batch dimension decides the batch size predictions run at; otherwise the configured one."""
    return onnx_io.describe(model, entry.path).batch_dim or config.evaluation.batch_size
