"""Top-1 accuracy of an ONNX classifier with onnxruntime on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from tuning.data import BatchLoader, LabelledImages
from tuning.errors import InputError


# Session config entries (``SessionOptions.add_session_config_entry``) of every session this project makes.
# They are part of what was measured: the report (benchmark.session_options) and the int8 model's metadata
# (tuning.session_options) record them, and a deployment must set them to get the measured speed.
SESSION_CONFIG_ENTRIES: dict[str, str] = {
    # Where INC keeps a conv in fp32, it puts the QuantizeLinear after the fp32 MaxPool that follows;
    # onnxruntime's QDQ propagation moves it above the MaxPool, leaving a uint8 MaxPool in NCHW layout, which
    # is several times slower than the fp32 one (mnist-12: int8 ends up slower than fp32). Outputs do not
    # change (quantization commutes with max pooling); tests/test_latency_tuning.py checks that the entry
    # changes the optimized graph and not the outputs.
    "optimization.disable_specified_optimizers": "QDQPropagationTransformer",
}


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    """The session options used everywhere a model is run, so evaluation, tuning, benchmarks and reports agree."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    for key, value in SESSION_CONFIG_ENTRIES.items():
        options.add_session_config_entry(key, value)
    return options


def make_session(model: onnx.ModelProto | Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, session_options(intra_op_threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph exceptions
        where = model if isinstance(model, Path) else "model"
        raise InputError(f"{where}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


def predict(session: ort.InferenceSession, data: LabelledImages, batch_size: int) -> np.ndarray:
    """Class index (argmax of the first output) for every image."""
    input_name = session.get_inputs()[0].name
    predictions = []
    for images, _ in BatchLoader(data, batch_size):
        try:
            predictions.append(session.run(None, {input_name: images})[0].argmax(axis=1))
        except Exception as exc:  # onnxruntime's untyped errors, e.g. a batch the model's fixed shape refuses
            raise InputError(
                f"onnxruntime cannot run the model on a batch of {len(images)} images ({str(exc).splitlines()[0]})"
            ) from None
    return np.concatenate(predictions)


def top1_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


class AccuracyEvaluator:
    """Callable INC uses as ``eval_func``: model in, top-1 accuracy on the evaluation split out.

    It also keeps every accuracy it measured, in call order, so the run can report its trials.
    INC scans the source of ``eval_func`` for shell-like calls and refuses it: keep this class plain.
    """

    def __init__(self, data: LabelledImages, batch_size: int) -> None:
        self.data = data
        self.batch_size = batch_size
        self.history: list[float] = []

    def __call__(self, model: onnx.ModelProto) -> float:
        accuracy = top1_accuracy(predict(make_session(model), self.data, self.batch_size), self.data.labels)
        self.history.append(accuracy)
        return accuracy
