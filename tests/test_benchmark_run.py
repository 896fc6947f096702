"""``benchmark``'s pieces in process: which model a batch size is timed on, what run_benchmark measures at batch 1
and above it, and the lines printed from chosen timings (every number known: rounds are constant arrays).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import project_config
from tiny_models import mlp

from tuning.data.datasets import evaluation_images
from tuning.measure import benchmark
from tuning.measure.evaluate import predict, top1_accuracy
from tuning.measure.benchmark import BenchmarkRun, BenchmarkTarget, Performance, Timing, runner_for_batch
from tuning.measure.runtimes import SessionSettings, open_runner
from tuning.measure.statistics import Interval

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
ZOO_INT8 = ROOT / "models" / "zoo-mnist-12-int8.onnx"
SMALL = {"benchmark.warmup": 2, "benchmark.iterations": 4, "benchmark.min_time_s": 0, "benchmark.rounds": 2}


def _input_batch(runner) -> object:
    """The batch dimension of the model the runner's session loaded, read from the session itself."""
    return runner.infer.func.__self__.get_inputs()[0].shape[0]


@pytest.mark.parametrize("batch_size, expected", [(1, 1), (16, "batch")])
def test_a_fixed_batch_model_runs_as_shipped_at_its_batch_and_as_its_copy_above(batch_size, expected) -> None:
    target = BenchmarkTarget("zoo", onnx.load(str(ZOO_INT8)), ZOO_INT8)
    images = np.random.default_rng(0).random((300, 1, 28, 28), dtype=np.float32)
    runner = runner_for_batch(target, images, batch_size, SessionSettings())
    assert _input_batch(runner) == expected
    timed = benchmark._timed_models(target, images)
    assert timed.as_given is target.model  # batch-1 latency is the shipped model's
    assert timed.batched.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    as_given, batched = benchmark._open(timed, SessionSettings())
    assert (_input_batch(as_given), _input_batch(batched)) == (1, "batch")


def test_a_symbolic_batch_model_is_its_own_copy(tmp_path) -> None:
    path = mlp(tmp_path / "m.onnx")
    target = BenchmarkTarget("m", onnx.load(str(path)), path)
    timed = benchmark._timed_models(target, np.zeros((4, 1, 28, 28), np.float32))
    assert timed.as_given is target.model and timed.batched is target.model
    as_given, batched = benchmark._open(timed, SessionSettings())
    assert as_given is batched
    assert _input_batch(runner_for_batch(target, np.zeros((4, 1, 28, 28), np.float32), 8, SessionSettings())) == "N"


def test_run_benchmark_scores_accuracy_on_the_evaluation_split(tmp_path) -> None:
    path = mlp(tmp_path / "m.onnx", seed=7)
    config = project_config(tmp_path)
    run = benchmark.run_benchmark(config, path, "accuracy", 500)

    data = evaluation_images(config.dataset, config.evaluation.split, (1, 28, 28))
    assert run.accuracy == top1_accuracy(predict(open_runner(onnx.load(str(path))), data, 1000), data.labels)
    assert run.performance is None and run.timing is None and run.batch_size == 500
    lines = run.lines()
    assert lines[:2] == ["Batch size = 500", f"Accuracy: {run.accuracy:.5f}"]
    assert lines[2].startswith("Conditions: 10,000 MNIST test images") and len(lines) == 3


@pytest.mark.parametrize("batch_size", [1, 16])
def test_run_benchmark_times_batch_1_as_latency_and_a_larger_batch_as_throughput(tmp_path, batch_size) -> None:
    path = mlp(tmp_path / "m.onnx")
    run = benchmark.run_benchmark(project_config(tmp_path, **SMALL), path, "performance", batch_size)
    performance = run.performance
    assert run.accuracy is None
    if batch_size == 1:
        assert performance.latency is not None and performance.throughput == ()
        assert run.timing is performance.latency
    else:
        assert performance.latency is None and [t.batch_size for t in performance.throughput] == [16]
        assert run.timing is performance.throughput_at(16)
    assert len(run.timing.rounds_ms) == 2 and run.timing.warmup_runs == -(-2 // batch_size)
    assert performance.second_session is not None  # the A/A twin, for the noise floor line
    assert run.lines()[-1] == run.conditions and run.conditions.startswith("Conditions: onnxruntime ")
    assert f"{run.timing.runs} timed batches in 2 session sets" in run.conditions


def _timing(batch: int, *rounds: float) -> Timing:
    return Timing(batch, 1, tuple(np.full(20, value) for value in rounds))


def test_the_printed_lines_follow_incs_convention_from_chosen_timings() -> None:
    twin = Performance("m (second session)", None, (_timing(16, 8.8, 8.8),))
    performance = Performance("m", None, (_timing(16, 8.0, 10.0),), {}, twin)
    run = BenchmarkRun(16, None, performance, "Conditions: test", {})
    lines = run.lines()
    # Pooled p50 9 ms for 16 images: 0.5625 ms an image, 1777.8 images/s; per set 2000 and 1600. The A/A
    # pair's set ratios are 8.8 / 8 = 1.1 and 8.8 / 10 = 0.88; their median is the geometric mean, 0.984.
    assert lines == [
        "Batch size = 16",
        "Latency: 0.562 ms",
        "Throughput: 1777.8 images/sec",
        "Spread: 1600.0-2000.0 images/sec over 2 session sets",
        "Noise floor: a second session of the same model took 0.984x the first's time [0.880-1.100] "
        "(A/A pair, 50% interval): differences within this are noise",
        "Conditions: test",
    ]
    assert BenchmarkRun(1, None, None, "Conditions: x", {}).lines() == ["Batch size = 1", "Conditions: x"]


def test_an_interval_reads_back_from_json() -> None:
    interval = Interval(0.9, 0.8, 1.1, 0.9375)
    assert Interval.from_json(interval.to_json()) == interval
    assert Interval.from_json({"value": 1.0, "min": 0.5, "max": 2.0}) == Interval(1.0, 0.5, 2.0, 0.95)
    assert benchmark.threads_phrase(1) == "1 intra-op thread" and benchmark.threads_phrase(2) == "2 intra-op threads"
    assert benchmark.timing_conditions(project_config(Path("x"), **SMALL).benchmark) == (
        "2 session sets (fresh sessions each), models taking turns of >= 64 images in consecutive warm calls, each >= 0 s, >= 4 images and "
        ">= 20 calls per model and batch size after 2 warm-up images")
    assert benchmark.timing_conditions(project_config(Path("x"), **{**SMALL, "benchmark.rounds": 1}).benchmark).startswith(
        "1 session set (fresh sessions each)")


@pytest.mark.parametrize("batch_size, distinct", [(1, 100), (64, 32), (2048, 1), (4096, 1)])
def test_each_batch_size_cycles_through_distinct_batches_of_the_images_in_order(tmp_path, batch_size, distinct) -> None:
    """Up to 100 batches, at most 2048 images in all, and never none: batch k holds images k*b ... k*b + b - 1,
    wrapping around the images."""
    runner = open_runner(mlp(tmp_path / "m.onnx"))
    images = np.arange(300, dtype=np.float32).reshape(300, 1, 1, 1) * np.ones((1, 1, 28, 28), np.float32)
    feeds = benchmark._feeds(runner, images, batch_size)
    assert len(feeds) == distinct
    for k in (0, distinct - 1):
        firsts = feeds[k]["pixels"][:, 0, 0, 0]
        assert np.array_equal(firsts, (k * batch_size + np.arange(batch_size)) % 300)
        assert feeds[k]["pixels"].flags.c_contiguous
