"""Loading a model on a runtime: onnxruntime, and OpenVINO when the optional extra ``openvino`` is installed.

Every model this project evaluates or times is loaded here, so what is measured is what a user deploys.

A :class:`Runner` is one model compiled on one runtime, called the way a user deploys it:
``InferenceSession.run(None, feed)`` under :class:`tuning.measure.evaluate.SessionSettings`, or, on OpenVINO,
``Core().compile_model(model, "CPU", config)`` called as ``compiled_model(feed)`` (OpenVINO's own
synchronous call: inputs shared, outputs copied), with OpenVINO's defaults except the thread count (``benchmark.intra_op_threads``) and, for
``openvino-f32``/``openvino-bf16``, the inference precision hint. What OpenVINO actually compiled with
(precision, threads, streams, performance hint, input shape) is read back from the compiled model and recorded
beside every number: bf16 is never silent.

Shapes: a runner opened for one batch size (``open_runner(..., batch_size=b)``) is, on OpenVINO, compiled for
that batch alone: the model's batch dimension is set to ``b`` with ``Model.reshape`` before ``compile_model``,
as benchmark_app's ``-shape`` does and as a deployment at a known batch compiles it. A dynamic batch compiles
to other kernels (mnist-12 measured ~0.5x at batch 1 against a static shape), so timing a dynamic compile
would time a model nobody deploys. onnxruntime runs the graph's own shapes whatever ``batch_size`` says.

Nothing imports OpenVINO until a runner for it is asked for, so without the extra the rest of the
project runs unchanged and reports the runtime as not measured (:func:`unavailable_reason`).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from tuning.config.enums import Runtime
from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError, InputError
from tuning.measure.environment import import_failure

INSTALL_HINT = "install the extra with `bash scripts/setup_env.sh openvino` (or pip install 'mnist-int8-tuning[openvino]')"

_PRECISION_HINTS = {Runtime.OPENVINO_F32: "f32", Runtime.OPENVINO_BF16: "bf16"}


@dataclass(frozen=True)
class SessionSettings:
    """The onnxruntime session options of a deployment: onnxruntime's defaults except for these.

    Every session this project makes (evaluation, tuning's timing, benchmarks, reports) is built from
    one of these, so what is measured is what a user gets from ``onnxruntime.InferenceSession(path)``
    with the same thread count and config entries (config ``deployment``). OpenVINO takes the thread count.
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
QUIET_RUN = ort.RunOptions()
QUIET_RUN.log_severity_level = 4


def make_session(
    model: onnx.ModelProto | Path, settings: SessionSettings = SessionSettings(), source: Path | str | None = None
) -> ort.InferenceSession:
    """An onnxruntime session; an InputError naming ``source`` (default: the model's path) when it cannot load."""
    payload = str(model) if isinstance(model, Path) else model.SerializeToString()
    try:
        return ort.InferenceSession(payload, settings.options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph exceptions
        raise InputError(f"{_name(model, source)}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


def _name(model: onnx.ModelProto | Path, source: Path | str | None) -> Path | str:
    """How an error names a model: ``source`` when given, else its path, else ``model``."""
    return source if source is not None else model if isinstance(model, Path) else "model"


@dataclass(frozen=True)
class Runner:
    """One model loaded on one runtime. ``infer(feed)`` is the runtime's own call, timed as is;
    ``scores`` runs it with onnxruntime's failing-node log off (the raised error says it in one line)."""

    runtime: Runtime
    input_name: str
    infer: Callable[[dict[str, np.ndarray]], Any] = field(repr=False)
    quiet_infer: Callable[[dict[str, np.ndarray]], Any] = field(repr=False)
    conditions: dict[str, Any]  # how the runtime compiled the model, as read back from it

    def feed(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {self.input_name: images}

    def scores(self, images: np.ndarray) -> np.ndarray:
        """The model's first output for ``images``."""
        return np.asarray(self.quiet_infer(self.feed(images))[0])


def onnxruntime_conditions(settings: SessionSettings) -> dict[str, Any]:
    """What an onnxruntime runner states beside its numbers: its session options, read back."""
    return {"runtime": "onnxruntime", "version": ort.__version__, **settings.describe()}


def is_openvino(runtime: Runtime) -> bool:
    return runtime is not Runtime.ONNXRUNTIME


def unavailable_reason(runtime: Runtime) -> str | None:
    """Why ``runtime`` cannot be used here (its package is not installed or does not import), or None.

    Only asked for runtimes a config or command names, so nothing imports OpenVINO otherwise.
    """
    if not is_openvino(runtime):
        return None
    return import_failure("openvino", "OpenVINO", INSTALL_HINT)


def open_runner(
    model: onnx.ModelProto | Path,
    runtime: Runtime = Runtime.ONNXRUNTIME,
    settings: SessionSettings = SessionSettings(),
    source: Path | str | None = None,
    batch_size: int | None = None,
) -> Runner:
    """``model`` loaded on ``runtime``; an InputError naming ``source`` and what the runtime refused, or a
    ConfigError when the runtime is not installed (the same exit code as a config naming it).

    ``batch_size``: OpenVINO compiles the model for that batch size only (static shapes); None keeps the
    model's own shapes (a symbolic batch stays dynamic: accuracy evaluation feeds a last, shorter batch).
    onnxruntime ignores it."""
    if not is_openvino(runtime):
        session = make_session(model, settings, source)
        return Runner(
            runtime,
            session.get_inputs()[0].name,
            functools.partial(session.run, None),
            functools.partial(session.run, None, run_options=QUIET_RUN),
            onnxruntime_conditions(settings),
        )
    reason = unavailable_reason(runtime)
    if reason is not None:
        raise ConfigError(f"runtime {runtime.value}: {reason}")
    import openvino

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": settings.intra_op_threads}
    if runtime in _PRECISION_HINTS:
        config["INFERENCE_PRECISION_HINT"] = _PRECISION_HINTS[runtime]
    payload = model.read_bytes() if isinstance(model, Path) else model.SerializeToString()
    try:
        read = _core().read_model(io.BytesIO(payload))
        if batch_size is not None:
            shape = read.inputs[0].get_partial_shape()
            shape[0] = batch_size  # the batch dimension only: the sample's dimensions stay the model's
            read.reshape({read.inputs[0]: shape})
        compiled = _core().compile_model(read, "CPU", config)
    except RuntimeError as exc:  # OpenVINO raises RuntimeError for every conversion or compilation failure
        raise InputError(f"{_name(model, source)}: OpenVINO cannot load it ({describe_openvino_failure(str(exc))})") from None
    conditions = {
        "runtime": "openvino",
        "version": openvino.get_version(),
        "device": "CPU",
        "requested": {key: str(value) for key, value in config.items()},
        "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
        "inference_num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "num_streams": int(compiled.get_property("NUM_STREAMS")),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "input_shape": str(compiled.inputs[0].get_partial_shape()),  # "[?,1,28,28]": dynamic batch
        "static_batch": batch_size,  # None: compiled with the model's own shapes
        "call": "compiled_model(inputs): CompiledModel.__call__ with its defaults (inputs shared, outputs copied)",
    }
    return Runner(runtime, compiled.inputs[0].get_any_name(), compiled, compiled, conditions)


@functools.lru_cache(maxsize=1)
def _core() -> Any:
    import openvino

    return openvino.Core()


def thread_warning(runner: Runner, settings: SessionSettings) -> str | None:
    """A line when OpenVINO runs another number of threads than asked: it caps them at the usable cores."""
    threads = runner.conditions.get("inference_num_threads")
    if threads is None or threads == settings.intra_op_threads:
        return None
    return (
        f"warning: OpenVINO runs {threads} inference threads, not the {settings.intra_op_threads} "
        "benchmark.intra_op_threads asks for (it uses at most the cores this process may run on); the numbers "
        f"are for {threads} thread{'s' if threads != 1 else ''}"
    )


def describe_openvino_failure(message: str) -> str:
    """OpenVINO's multi-line conversion report as one line: the ops and nodes it could not convert.

    Its report ends with a summary, ``Conversion is failed for: <op>, <op>`` for ops it knows but could not convert
    and ``No conversion rule found for operations: <op>, <op>`` for ops it does not know (either or both), and
    names each node it tried as ``<Node(<op type>): <name>>``; any other failure is its first line that says
    something.
    """
    ops = re.findall(r"(?:Conversion is failed for|No conversion rule found for operations): (.+)", message)
    nodes = sorted(set(re.findall(r"<Node\((\w+)\): ([^>]+)>", message)))
    if ops:
        named = f"; nodes: {', '.join(f'{name} ({op})' for op, name in nodes)}" if nodes else ""
        return f"unsupported ops: {', '.join(op.strip() for op in ops)}{named}"
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.startswith("Exception from")]
    return lines[0] if lines else "no message"


def conditions_phrase(conditions: dict[str, Any]) -> str:
    """How a runner's conditions are stated beside its numbers."""
    if conditions["runtime"] == "onnxruntime":
        entries = conditions["config_entries"]
        extra = f" plus {', '.join(f'{k}={v}' for k, v in entries.items())}" if entries else ""
        return (
            f"onnxruntime {conditions['version']}, default session options{extra}, "
            f"{_count(conditions['intra_op_num_threads'], 'intra-op thread')}"
        )
    requested = "INFERENCE_PRECISION_HINT" in conditions["requested"]
    precision = conditions["inference_precision"] + (" (set)" if requested else " (OpenVINO's default on this CPU)")
    return (
        f"OpenVINO {conditions['version'].split('-')[0]}, CPU, inference precision {precision}, "
        f"{_count(conditions['inference_num_threads'], 'thread')}, {_count(conditions['num_streams'], 'stream')}, "
        f"performance hint {conditions['performance_hint']}, {shapes_phrase(conditions)}"
    )


def shapes_phrase(conditions: dict[str, Any]) -> str:
    """Which input shapes OpenVINO compiled: per timed batch size (static), or the model's own (conditions read
    back before this key existed say nothing)."""
    timed = conditions.get("timed_input_shapes")
    if timed:
        return "static shapes, compiled per timed batch size (" + ", ".join(
            f"batch {batch}: {shape}" for batch, shape in timed.items()
        ) + ")"
    if "input_shape" not in conditions:
        return "input shapes not recorded"
    kind = "static" if conditions.get("static_batch") is not None else "the model's own"
    return f"input shape {conditions['input_shape']} ({kind})"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"

