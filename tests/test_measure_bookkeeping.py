"""tuning.measure.benchmark.measure's bookkeeping: which runner each batch size is timed on, in which session set,
and where each set's durations end up. The timing loop is replaced by one that records what it was given and
returns durations that encode (model, session set, step), so every figure's origin is known exactly; the
runners are real onnxruntime sessions (and OpenVINO compiles, with the extra) of small models.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny_models import mlp

from tuning.config.enums import Runtime
from tuning.config.schema import BenchmarkSection
from tuning.errors import InputError
from tuning.measure import benchmark
from tuning.measure.benchmark import BenchmarkTarget, Performance
from tuning.measure.runtimes import SessionSettings, onnxruntime_conditions

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
ZOO_INT8 = ROOT / "models" / "zoo-mnist-12-int8.onnx"  # batch fixed at 1: timed above it through its copy


class Recorder:
    """Stands in for time_in_turns: records each call, runs every runner once on its first feed, and returns
    for model ``name`` at the ``k``-th step of session set ``s`` the durations [code, code, code], with a code
    unique to (name, s, k). ``steps`` is the number of steps per session set."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.codes: dict[tuple[str, int, int], float] = {}
        self.steps = 1

    def __call__(self, calls, feeds, warmup, min_calls, min_seconds, *later_arguments) -> dict[str, np.ndarray]:
        set_index, step = divmod(len(self.calls), self.steps)
        outputs = {name: np.asarray(calls[name](feeds[name][0])[0]) for name in calls}
        self.calls.append({"names": list(calls), "batch": {name: len(next(iter(feeds[name][0].values()))) for name in feeds},
                           "session_batch": {name: _session_batch(call) for name, call in calls.items()},
                           "feeds": {name: len(feeds[name]) for name in feeds}, "outputs": outputs,
                           "warmup": warmup, "min_calls": min_calls, "min_seconds": min_seconds})
        result = {}
        for name in calls:
            self.codes[name, set_index, step] = code = float(len(self.codes) + 1)
            result[name] = np.full(3, code)
        return result


def _session_batch(call) -> object:
    """The batch dimension of the model an onnxruntime runner's session loaded, read from the session itself."""
    return call.func.__self__.get_inputs()[0].shape[0] if isinstance(call, functools.partial) else None


class Bar:
    """Stands in for tqdm: records how each progress bar was made and moved."""

    made: list[Bar] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.postfixes: list[str] = []
        self.updates = 0
        Bar.made.append(self)

    def set_postfix_str(self, text: str) -> None:
        self.postfixes.append(text)

    def update(self) -> None:
        self.updates += 1

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        return None


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    fake = Recorder()
    monkeypatch.setattr(benchmark, "time_in_turns", fake)
    monkeypatch.setattr(benchmark, "tqdm", Bar)
    Bar.made.clear()
    return fake


def _targets(tmp_path: Path) -> list[BenchmarkTarget]:
    a, b = mlp(tmp_path / "a.onnx", seed=1), mlp(tmp_path / "b.onnx", seed=2)
    return [BenchmarkTarget("a", onnx.load(str(a)), a), BenchmarkTarget("zoo", onnx.load(str(ZOO_INT8)), ZOO_INT8),
            BenchmarkTarget("b", onnx.load(str(b)), b)]


def test_each_set_and_step_lands_in_its_own_models_timing(tmp_path: Path, recorder: Recorder) -> None:
    settings = BenchmarkSection(warmup=5, iterations=9, min_time_s=0.25, rounds=3, batch_sizes=(4, 2, 4))
    images = np.random.default_rng(0).random((40, 1, 28, 28), dtype=np.float32)
    plan = [1, 2, 4]
    recorder.steps = len(plan)
    session = SessionSettings(2)
    results = benchmark.measure(_targets(tmp_path), images, settings, session, label="label here")

    assert list(results) == ["a", "zoo", "b"]
    names = ["a", "zoo", "b", "a (second session)"]  # the first target on onnxruntime is the reference
    assert len(recorder.calls) == settings.rounds * len(plan)
    for position, call in enumerate(recorder.calls):
        batch = plan[position % len(plan)]
        assert call["names"] == names
        assert call["batch"] == dict.fromkeys(names, batch)
        assert call["feeds"] == dict.fromkeys(names, max(1, min(100, 2048 // batch)))
        assert (call["warmup"], call["min_calls"]) == (math.ceil(5 / batch), math.ceil(9 / batch))
        assert call["min_seconds"] == 0.25
        assert {name: out.shape for name, out in call["outputs"].items()} == dict.fromkeys(names, (batch, 10))
        # The zoo model's latency runs the model as shipped (batch 1 only), throughput its batch-capable copy.
        assert call["session_batch"] == {"a": "N", "zoo": 1 if position % len(plan) == 0 else "batch", "b": "N",
                                         "a (second session)": "N"}
    for name, performance in [*results.items(), ("a (second session)", results["a"].second_session)]:
        assert isinstance(performance, Performance) and performance.name == name
        timings = [performance.latency, *performance.throughput]
        assert [t.batch_size for t in timings] == plan
        for step, timing in enumerate(timings):
            assert timing.warmup_runs == math.ceil(5 / plan[step])
            assert [float(r[0]) for r in timing.rounds_ms] == [recorder.codes[name, s, step] for s in range(3)]
        assert performance.conditions == onnxruntime_conditions(session)
    assert results["zoo"].second_session is None and results["b"].second_session is None
    assert results["a"].second_session.second_session is None

    (bar,) = Bar.made
    assert bar.kwargs == {"total": 9, "desc": "label here", "unit": "step", "disable": None, "leave": False}
    assert bar.updates == 9
    assert bar.postfixes == [f"session set {s + 1}/3, batch {b}" for s in range(3) for b in plan]


def test_without_latency_only_the_asked_batch_sizes_are_timed(tmp_path: Path, recorder: Recorder) -> None:
    settings = BenchmarkSection(warmup=1, iterations=1, min_time_s=0, rounds=2, batch_sizes=(4,))
    images = np.random.default_rng(1).random((20, 1, 28, 28), dtype=np.float32)
    recorder.steps = 2
    results = benchmark.measure(_targets(tmp_path)[:1], images, settings, SessionSettings(), latency=False,
                                throughput_batch_sizes=(8, 2, 8))
    assert [call["batch"]["a"] for call in recorder.calls] == [2, 8, 2, 8]
    performance = results["a"]
    assert performance.latency is None and [t.batch_size for t in performance.throughput] == [2, 8]
    assert [len(t.rounds_ms) for t in performance.throughput] == [2, 2]
    assert Bar.made[0].kwargs["total"] == 4 and Bar.made[0].kwargs["desc"] == "benchmark"


def test_the_configured_batch_sizes_are_the_default(tmp_path: Path, recorder: Recorder) -> None:
    settings = BenchmarkSection(warmup=1, iterations=1, min_time_s=0, rounds=1, batch_sizes=(3, 1))
    images = np.random.default_rng(2).random((8, 1, 28, 28), dtype=np.float32)
    results = benchmark.measure(_targets(tmp_path)[:1], images, settings, SessionSettings())
    assert [call["batch"]["a"] for call in recorder.calls] == [1, 1, 3]
    assert results["a"].latency.batch_size == 1 and [t.batch_size for t in results["a"].throughput] == [1, 3]


def test_timed_shapes_replace_the_one_compiles_shape() -> None:
    conditions = {"runtime": "openvino", "input_shape": "[1,1,28,28]", "static_batch": 1, "num_streams": 1}
    assert benchmark._with_timed_shapes(conditions, {}) is conditions
    assert benchmark._with_timed_shapes(conditions, {"1": "[1,1,28,28]", "8": "[8,1,28,28]"}) == {
        "runtime": "openvino", "num_streams": 1, "timed_input_shapes": {"1": "[1,1,28,28]", "8": "[8,1,28,28]"}}


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed")
def test_openvino_targets_are_compiled_per_step_and_each_runtime_has_its_reference(tmp_path: Path,
                                                                                 recorder: Recorder) -> None:
    settings = BenchmarkSection(warmup=1, iterations=1, min_time_s=0, rounds=2, batch_sizes=(4,))
    recorder.steps = 2 * 2  # batch 1 and 4, each timed per runtime: onnxruntime's models, then OpenVINO's
    images = np.random.default_rng(3).random((16, 1, 28, 28), dtype=np.float32)
    fp32_path = ROOT / "models" / "mnist-12.onnx"  # OpenVINO cannot convert the zoo's QOperator int8 model
    fp32 = onnx.load(str(fp32_path))
    targets = [BenchmarkTarget("ort", fp32, fp32_path), BenchmarkTarget("ov", fp32, fp32_path, Runtime.OPENVINO_F32),
               BenchmarkTarget("ov2", fp32, fp32_path, Runtime.OPENVINO_F32)]
    timed = benchmark._timed_models(targets[1], images)
    assert benchmark._open(timed, SessionSettings()) is None  # OpenVINO compiles per batch size instead
    as_given = benchmark._compiled(timed, 0, 1, SessionSettings())
    batched = benchmark._compiled(timed, 1, 4, SessionSettings())
    assert (as_given.conditions["input_shape"], batched.conditions["input_shape"]) == ("[1,1,28,28]", "[4,1,28,28]")
    results = benchmark.measure(targets, images, settings, SessionSettings(2))
    assert [call["names"] for call in recorder.calls[:2]] == [["ort", "ort (second session)"], ["ov", "ov2", "ov (second session)"]]
    assert len(recorder.calls) == settings.rounds * recorder.steps
    assert results["ort"].second_session is not None and results["ov"].second_session is not None
    assert results["ov2"].second_session is None
    for name in ("ov", "ov2"):
        conditions = results[name].conditions
        assert conditions["timed_input_shapes"] == {"1": "[1,1,28,28]", "4": "[4,1,28,28]"}
        assert "input_shape" not in conditions and "static_batch" not in conditions
        assert conditions["inference_num_threads"] == 2
    assert results["ort"].conditions == onnxruntime_conditions(SessionSettings(2))


def test_a_batch_1_noise_floor_needs_both_sessions_timed_at_batch_1() -> None:
    timing = benchmark.Timing(1, 0, (np.ones(3),))
    throughput = (benchmark.Timing(8, 0, (np.ones(3),)),)
    twin_without_latency = Performance("a (second session)", None, throughput)
    with pytest.raises(AssertionError):
        Performance("a", timing, throughput, {}, twin_without_latency).noise_floor()
    with pytest.raises(AssertionError):
        Performance("a", None, throughput, {}, Performance("a (second session)", timing, throughput)).noise_floor()
    assert Performance("a", None, throughput, {}, twin_without_latency).noise_floor(8).value == pytest.approx(1.0)


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed")
def test_an_openvino_step_compiles_the_model_it_times_and_names_its_file() -> None:
    fp32_path = ROOT / "models" / "mnist-12.onnx"  # its Reshape fixes the batch at 1; its copy takes any batch
    target = BenchmarkTarget("ov", onnx.load(str(fp32_path)), fp32_path, Runtime.OPENVINO_F32)
    timed = benchmark._timed_models(target, np.random.default_rng(4).random((8, 1, 28, 28), dtype=np.float32))
    assert benchmark._compiled(timed, 1, 2, SessionSettings()).conditions["input_shape"] == "[2,1,28,28]"
    with pytest.raises(InputError, match=rf"^{fp32_path}: OpenVINO cannot load it \("):
        benchmark._compiled(timed, 0, 2, SessionSettings())  # the model as given cannot run at batch 2
