"""Top-1 accuracy of an ONNX classifier on the CPU (onnxruntime, or another runtime's :class:`Runner`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tuning.config.schema import Runtime
from tuning.data.datasets import BatchLoader, LabelledImages
from tuning.errors import InputError
from tuning.files.onnx_io import ModelSpec
from tuning.measure.runtimes import (
    QUIET_RUN,
    Runner,
    SessionSettings,
    make_session,
    open_runner,
)


def predict(runner: Runner, data: LabelledImages, batch_size: int) -> np.ndarray:
    """Class index (argmax of the first output) for every image."""
    predictions = []
    for images, _ in BatchLoader(data, batch_size):
        try:
            predictions.append(runner.scores(images).argmax(axis=1))
        except Exception as exc:  # the runtimes' untyped errors, e.g. a batch the model's fixed shape refuses
            raise InputError(
                f"{runner.runtime.value} cannot run the model on a batch of {len(images)} images "
                f"({str(exc).splitlines()[0]})"
            ) from None
    return np.concatenate(predictions)


def check_classifier(model: onnx.ModelProto, spec: ModelSpec, data: LabelledImages, classes: int, source: Path | str) -> None:
    """Run ``model`` on one real batch: it must return ``[batch, classes]``, the width it declares.

    A model with fewer outputs than the dataset has classes (5 against labels 0-9), or one declaring
    10 outputs but computing 20, would otherwise be tuned and reported against a meaningless accuracy;
    a model that loads but cannot run fails here, before any tuning.
    """
    if spec.num_classes != classes:
        raise InputError(
            f"{source}: output {spec.output_name!r} declares {spec.num_classes} classes, but the dataset has {classes}"
        )
    batch = spec.batch_dim or min(len(data), 2)  # two images also show whether the batch dimension is honoured
    try:
        outputs = make_session(model).run(None, {spec.input_name: data.images[:batch]}, QUIET_RUN)
    except InputError:
        raise
    except Exception as exc:  # onnxruntime's untyped errors: the graph cannot run on a real input
        raise InputError(f"{source}: onnxruntime cannot run the model on a test image ({_first_line(exc)})") from None
    shape = tuple(getattr(outputs[0], "shape", ()))
    if shape != (batch, classes):
        raise InputError(
            f"{source}: output {spec.output_name!r} declares [{spec.batch_dim or 'batch'}, {classes}] but returns "
            f"{list(shape)} for {batch} image{'s' if batch != 1 else ''}"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def top1_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


class AccuracyEvaluator:
    """Callable INC uses as ``eval_func``: model in, top-1 accuracy on the evaluation split out.

    It also keeps every accuracy it measured, in call order, so the run can report its trials.
    INC scans the source of ``eval_func`` for shell-like calls and refuses it: keep this class plain.
    """

    def __init__(self, data: LabelledImages, batch_size: int, settings: SessionSettings = SessionSettings()) -> None:
        self.data = data
        self.batch_size = batch_size
        self.settings = settings
        self.history: list[float] = []

    def __call__(self, model: onnx.ModelProto) -> float:
        runner = open_runner(model, Runtime.ONNXRUNTIME, self.settings, "candidate")
        accuracy = top1_accuracy(predict(runner, self.data, self.batch_size), self.data.labels)
        self.history.append(accuracy)
        return accuracy
