"""Top-1 accuracy of an ONNX classifier on the CPU (onnxruntime, or another runtime's :class:`Runner`), and the
checks that a model, or a batch-capable copy of it, computes what it should on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tuning.config.enums import Runtime
from tuning.data.datasets import BatchLoader, LabelledImages
from tuning.errors import InputError
from tuning.files.onnx_io import ModelSpec, describe
from tuning.measure.runtimes import (
    QUIET_RUN,
    Runner,
    SessionSettings,
    make_session,
    open_runner,
)

VERIFY_IMAGES = 256
# The copy runs the same kernels on a different batch layout: float sums may be reordered, nothing more.
VERIFY_RTOL = 1e-5
VERIFY_ATOL = 1e-5


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
