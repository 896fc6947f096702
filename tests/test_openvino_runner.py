"""tuning.measure.runtimes.open_runner on OpenVINO: what it asks OpenVINO for, and what it states it got, checked
against the same model compiled here with OpenVINO's own API and read back from it.

Skipped, saying why, without the ``openvino`` extra (``bash scripts/setup_env.sh openvino``; .ci/run installs it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT

from tuning.config.enums import Runtime
from tuning.errors import InputError
from tuning.measure.runtimes import SessionSettings, open_runner, thread_warning

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("openvino") is None,
        reason="the openvino extra is not installed: bash scripts/setup_env.sh openvino",
    ),
    pytest.mark.fast,
]
MODEL = ROOT / "models" / "mnist-12.onnx"  # batch dimension fixed at 1


def _compiled_here(config: dict[str, object], batch: int | None) -> object:
    """mnist-12 compiled with OpenVINO's API directly, the second way to the properties open_runner reads back."""
    import openvino

    core = openvino.Core()
    model = core.read_model(str(MODEL))
    if batch is not None:
        model.reshape({model.inputs[0]: [batch, 1, 28, 28]})
    return core.compile_model(model, "CPU", config)


@pytest.mark.parametrize(
    "runtime, hint", [(Runtime.OPENVINO, None), (Runtime.OPENVINO_F32, "f32"), (Runtime.OPENVINO_BF16, "bf16")]
)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_conditions_are_what_openvino_compiled(runtime: Runtime, hint: str | None, threads: int) -> None:
    import openvino

    config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads}
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    here = _compiled_here(config, 1)
    runner = open_runner(MODEL, runtime, SessionSettings(threads), batch_size=1)
    assert runner.runtime is runtime and runner.input_name == "Input3"
    assert runner.conditions == {
        "runtime": "openvino",
        "version": openvino.get_version(),
        "device": "CPU",
        "requested": {key: str(value) for key, value in config.items()},
        "inference_precision": here.get_property("INFERENCE_PRECISION_HINT").to_string(),
        "inference_num_threads": int(here.get_property("INFERENCE_NUM_THREADS")),
        "num_streams": int(here.get_property("NUM_STREAMS")),
        "performance_hint": str(here.get_property("PERFORMANCE_HINT")),
        "input_shape": "[1,1,28,28]",
        "static_batch": 1,
        "call": "compiled_model(inputs): CompiledModel.__call__ with its defaults (inputs shared, outputs copied)",
    }
    assert runner.conditions["inference_num_threads"] == threads  # this machine has the cores for 2
    assert thread_warning(runner, SessionSettings(threads)) is None


def test_without_a_batch_size_the_models_own_shapes_are_compiled() -> None:
    runner = open_runner(onnx.load(str(MODEL)), Runtime.OPENVINO_F32)
    assert runner.conditions["input_shape"] == "[1,1,28,28]" and runner.conditions["static_batch"] is None


def test_the_runner_computes_what_onnxruntime_computes() -> None:
    images = np.random.default_rng(3).random((1, 1, 28, 28), dtype=np.float32)
    expected = open_runner(MODEL).scores(images)
    for model in (MODEL, onnx.load(str(MODEL))):  # a path and a loaded model
        runner = open_runner(model, Runtime.OPENVINO_F32, batch_size=1)
        np.testing.assert_allclose(runner.scores(images), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(runner.infer(runner.feed(images))[0]), expected, rtol=1e-4, atol=1e-4)


def test_a_model_openvino_refuses_is_named_by_its_path_or_source(tmp_path: Path) -> None:
    broken = onnx.load(str(MODEL))
    broken.graph.node[0].op_type = "NoSuchOp"
    path = tmp_path / "broken.onnx"
    onnx.save(broken, str(path))
    with pytest.raises(InputError) as by_path:
        open_runner(path, Runtime.OPENVINO_F32)
    # OpenVINO names an op it has no rule for with the model's opset version (mnist-12's: 12).
    opset = next(entry.version for entry in broken.opset_import if entry.domain in ("", "ai.onnx"))
    assert str(by_path.value) == f"{path}: OpenVINO cannot load it (unsupported ops: NoSuchOp-{opset})"
    with pytest.raises(InputError) as by_source:
        open_runner(broken, Runtime.OPENVINO, source="candidate 2")
    assert str(by_source.value).startswith("candidate 2: OpenVINO cannot load it (")
    with pytest.raises(InputError) as unnamed:
        open_runner(broken, Runtime.OPENVINO)
    assert str(unnamed.value).startswith("model: OpenVINO cannot load it (")
