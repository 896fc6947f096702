"""OpenVINO models are compiled for the batch size they are timed at (static shapes, as benchmark_app's
``-shape`` does); onnxruntime's sessions are opened as before; what was compiled is stated beside the numbers.

Skipped, saying why, without the ``openvino`` extra (``bash scripts/setup_env.sh openvino``; .ci/run installs it).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from conftest import ROOT

from tuning.cli.main import main
from tuning.config.enums import Runtime
from tuning.config.schema import BenchmarkSection
from tuning.errors import InputError
from tuning.graph.rewrite import batch_capable_copy
from tuning.measure import benchmark
from tuning.measure.benchmark import BenchmarkTarget, measure
from tuning.measure.paired import time_in_turns
from tuning.measure.runtimes import SessionSettings, conditions_phrase, onnxruntime_conditions, open_runner
from tuning.measure.statistics import median_interval, set_ratios

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("openvino") is None,
        reason="the openvino extra is not installed: bash scripts/setup_env.sh openvino",
    ),
    pytest.mark.fast,  # in process, a few seconds: mutation runs reach the OpenVINO branches through these
]
MODEL = ROOT / "models" / "mnist-12.onnx"  # batch dimension fixed at 1, as the zoo ships it


def _sample_dims(model: onnx.ModelProto) -> list[int]:
    return [dim.dim_value for dim in model.graph.input[0].type.tensor_type.shape.dim][1:]


def _shape(batch: int | str, dims: list[int]) -> str:
    """A shape as OpenVINO prints a partial shape: ``[4,1,28,28]``, ``[?,1,28,28]``."""
    return "[" + ",".join(map(str, [batch, *dims])) + "]"


def test_a_runner_for_a_batch_size_is_compiled_for_that_batch_alone() -> None:
    model = onnx.load(str(MODEL))
    copy = batch_capable_copy(model, MODEL)
    dims = _sample_dims(model)
    images = np.random.default_rng(0).random((4, *dims), dtype=np.float32)
    dynamic = open_runner(copy, Runtime.OPENVINO_F32)
    static = open_runner(copy, Runtime.OPENVINO_F32, batch_size=4)
    assert dynamic.conditions["input_shape"] == _shape("?", dims) and dynamic.conditions["static_batch"] is None
    assert static.conditions["input_shape"] == _shape(4, dims) and static.conditions["static_batch"] == 4
    np.testing.assert_allclose(static.scores(images), dynamic.scores(images), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError):  # compiled for 4 images, it takes no other batch
        static.scores(images[:3])
    assert "input shape " + _shape(4, dims) + " (static)" in conditions_phrase(static.conditions)
    # onnxruntime runs the graph's own shapes whatever the batch size: its conditions and calls are as before.
    on_onnxruntime = open_runner(copy, Runtime.ONNXRUNTIME, batch_size=4)
    assert on_onnxruntime.conditions == onnxruntime_conditions(SessionSettings())
    assert on_onnxruntime.scores(images[:3]).shape[0] == 3


def test_a_batch_the_model_cannot_take_is_refused_in_one_line() -> None:
    model = onnx.load(str(MODEL))  # its Reshape to [1, 256] fixes the batch at 1: OpenVINO cannot compile it for 2
    with pytest.raises(InputError) as refused:
        open_runner(model, Runtime.OPENVINO_F32, batch_size=2, source="fixed")
    assert str(refused.value).startswith("fixed: OpenVINO cannot load it (") and "\n" not in str(refused.value)


def test_every_openvino_model_is_compiled_per_timed_batch_size_in_every_session_set(monkeypatch) -> None:
    model = onnx.load(str(MODEL))
    dims = _sample_dims(model)
    opened: list[tuple[Runtime, int | None]] = []

    def spy(*args, **kwargs):
        runner = open_runner(*args, **kwargs)
        opened.append((runner.runtime, kwargs.get("batch_size")))
        return runner

    monkeypatch.setattr(benchmark, "open_runner", spy)
    settings = BenchmarkSection(warmup=1, iterations=2, min_time_s=0, rounds=2, batch_sizes=(3, 5))
    images = np.random.default_rng(1).random((16, *dims), dtype=np.float32)
    targets = [BenchmarkTarget("ort", model, MODEL), BenchmarkTarget("ov", model, MODEL, Runtime.OPENVINO_F32)]
    performances = measure(targets, images, settings, SessionSettings())
    timed = performances["ov"].conditions["timed_input_shapes"]
    assert timed == {str(batch): _shape(batch, dims) for batch in (1, 3, 5)}
    assert "input_shape" not in performances["ov"].conditions
    assert performances["ov"].second_session.conditions["timed_input_shapes"] == timed
    assert "static shapes, compiled per timed batch size (batch 1: " in conditions_phrase(performances["ov"].conditions)
    assert performances["ort"].conditions == onnxruntime_conditions(SessionSettings())
    # Per session set: OpenVINO compiles the model and its A/A twin once per batch size, each with that size;
    # onnxruntime opens its sessions once per set (as given and batch-capable copy), with no batch size.
    on_openvino = sorted(batch for runtime, batch in opened if runtime is Runtime.OPENVINO_F32)
    assert on_openvino == sorted([1, 3, 5] * 2 * settings.rounds)
    assert [batch for runtime, batch in opened if runtime is Runtime.ONNXRUNTIME] == [None] * (2 * 2 * settings.rounds)


def test_each_runtimes_models_take_turns_among_themselves_and_ratios_across_runtimes_use_set_medians(monkeypatch) -> None:
    """A user deploys one runtime: OpenVINO's calls in onnxruntime's turns moved its int8/fp32 ratio. Every call of
    the timing loop holds the models of one runtime (A/A twins included), every model is timed in every session
    set, and a ratio across runtimes is the median of the sets' p50 ratios, not of unpaired calls."""
    model = onnx.load(str(MODEL))
    groups: list[list[str]] = []

    def spy(calls, *args, **kwargs):
        groups.append(sorted(calls))
        return time_in_turns(calls, *args, **kwargs)

    monkeypatch.setattr(benchmark, "time_in_turns", spy)
    settings = BenchmarkSection(warmup=1, iterations=2, min_time_s=0, rounds=2, batch_sizes=(4,))
    images = np.random.default_rng(2).random((16, *_sample_dims(model)), dtype=np.float32)
    targets = [
        BenchmarkTarget("ort a", model, MODEL),
        BenchmarkTarget("ov a", model, MODEL, Runtime.OPENVINO_F32),
        BenchmarkTarget("ort b", model, MODEL),
    ]
    performances = measure(targets, images, settings, SessionSettings())
    ort_group = ["ort a", "ort a (second session)", "ort b"]
    ov_group = ["ov a", "ov a (second session)"]
    assert groups == [ort_group, ov_group] * (2 * settings.rounds)  # batch 1 and 4, in both session sets
    ort_a, ov_a = performances["ort a"], performances["ov a"]
    assert ort_a.latency.turns == "onnxruntime" and ov_a.latency.turns == "openvino-f32"
    within = performances["ort b"].latency.time_ratio(ort_a.latency)
    assert within == median_interval(set_ratios(performances["ort b"].latency.rounds_ms, ort_a.latency.rounds_ms))
    across = ov_a.latency.time_ratio(ort_a.latency)
    per_set = [float(np.percentile(ov, 50) / np.percentile(ort, 50)) for ov, ort in zip(ov_a.latency.rounds_ms, ort_a.latency.rounds_ms)]
    assert across == median_interval(per_set)


def test_the_benchmark_command_states_the_shape_it_timed(capsys: pytest.CaptureFixture[str]) -> None:
    main(["benchmark", "--input_model", str(MODEL), "--batch_size", "8", "--runtime", "openvino-f32",
          "--set", "benchmark.warmup=8", "--set", "benchmark.iterations=16", "--set", "benchmark.min_time_s=0",
          "--set", "benchmark.rounds=2", "--set", f"dataset.root={ROOT / 'data'}"])  # fmt: skip
    conditions = capsys.readouterr().out.splitlines()[-1]
    dims = _sample_dims(onnx.load(str(MODEL)))
    assert f"static shapes, compiled per timed batch size (batch 8: {_shape(8, dims)})" in conditions
    assert "(the model's own)" not in conditions
