"""Top-1 accuracy of an ONNX classifier with onnxruntime on the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from tuning.config import PipelineConfig
from tuning.data import BatchLoader, LabelledImages
from tuning.errors import InputError
from tuning.onnx_io import ModelSpec


@dataclass(frozen=True)
class SessionSettings:
    """The onnxruntime session options of a deployment: onnxruntime's defaults except for these.

    Every session this project makes (evaluation, tuning's timing, benchmarks, reports) is built from
    one of these, so what is measured is what a user gets from ``onnxruntime.InferenceSession(path)``
    with the same thread count and config entries (config ``deployment``).
    """

    intra_op_threads: int = 1
    config_entries: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, config: PipelineConfig) -> SessionSettings:
        return cls(config.benchmark.intra_op_threads, tuple(sorted(config.deployment.session_config_entries.items())))

    def options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's to act on
        for key, value in self.config_entries:
            options.add_session_config_entry(key, value)
        return options

    def describe(self) -> dict[str, Any]:
        """The options as sessions get them, read back from an options object; recorded beside every number."""
        options = self.options()
        return {
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "graph_optimization_level": options.graph_optimization_level.name,
            "execution_mode": options.execution_mode.name,
            "providers": ["CPUExecutionProvider"],
            "config_entries": {key: options.get_session_config_entry(key) for key, _ in self.config_entries},
        }


# onnxruntime logs a failing node on stderr before raising; the raised error says the same in one line.
_QUIET_RUN = ort.RunOptions()
_QUIET_RUN.log_severity_level = 4


def make_session(model: onnx.ModelProto | Path, settings: SessionSettings = SessionSettings()) -> ort.InferenceSession:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, settings.options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph exceptions
        where = model if isinstance(model, Path) else "model"
        raise InputError(f"{where}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


def predict(session: ort.InferenceSession, data: LabelledImages, batch_size: int) -> np.ndarray:
    """Class index (argmax of the first output) for every image."""
    input_name = session.get_inputs()[0].name
    predictions = []
    for images, _ in BatchLoader(data, batch_size):
        try:
            predictions.append(session.run(None, {input_name: images}, _QUIET_RUN)[0].argmax(axis=1))
        except Exception as exc:  # onnxruntime's untyped errors, e.g. a batch the model's fixed shape refuses
            raise InputError(
                f"onnxruntime cannot run the model on a batch of {len(images)} images ({str(exc).splitlines()[0]})"
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
        outputs = make_session(model).run(None, {spec.input_name: data.images[:batch]}, _QUIET_RUN)
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
        session = make_session(model, self.settings)
        accuracy = top1_accuracy(predict(session, self.data, self.batch_size), self.data.labels)
        self.history.append(accuracy)
        return accuracy
