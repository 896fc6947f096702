"""tuning.measure.benchmark on the vendored models and real MNIST test images, with real onnxruntime sessions.

No assertion is about speed: the machine is shared, so only the structure and the
arithmetic of the measurements are checked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tuning.cli.main import main
from tuning.config.enums import Split
from tuning.config.schema import BenchmarkSection, DatasetSection
from tuning.data.datasets import evaluation_images
from tuning.errors import InputError
from tuning.measure import benchmark
from tuning.measure.benchmark import BenchmarkTarget
from tuning.measure.environment import capture_environment
from tuning.measure.paired import MIN_CALLS, TURN_IMAGES, time_in_turns
from tuning.measure.runtimes import SessionSettings, open_runner

ROOT = Path(__file__).resolve().parent.parent
FP32 = ROOT / "models" / "mnist-12.onnx"
ZOO_INT8 = ROOT / "models" / "zoo-mnist-12-int8.onnx"
SMALL = ["--set", "benchmark.warmup=5", "--set", "benchmark.iterations=40", "--set", "benchmark.min_time_s=0"]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28)).images


def _plain_session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.fast
def test_runs_at_batch_keeps_the_images_per_measurement_about_equal() -> None:
    settings = BenchmarkSection(warmup=200, iterations=2000)
    assert benchmark.runs_at_batch(settings, 1) == (200, 2000)
    assert benchmark.runs_at_batch(settings, 16) == (13, 125)
    assert benchmark.runs_at_batch(settings, 3000) == (1, 1)
    assert benchmark.runs_at_batch(BenchmarkSection(warmup=0, iterations=3), 64) == (0, 1)
    assert benchmark.batch_sizes(BenchmarkSection(batch_sizes=(64, 1, 16, 64))) == (1, 16, 64)


@pytest.mark.fast
@pytest.mark.parametrize("rounds", [1, 3])
def test_a_figure_lies_within_its_own_range_of_rounds_to_the_last_bit(rounds: int) -> None:
    # Two calls of 7.2 µs and 0.7 µs: np.median and np.percentile(50) differ in their last bit here, which
    # once put the pooled throughput outside its per-round range and crashed the throughput plot.
    calls = np.array([0.0072, 0.0007])
    assert np.median(calls) != np.percentile(calls, 50)
    timing = benchmark.Timing(256, 0, tuple(calls.copy() for _ in range(rounds)))
    for spread in (timing.p50_spread, timing.images_per_s_spread):
        assert spread.low <= spread.value <= spread.high
    assert timing.images_per_s_spread.value == timing.images_per_s_spread.low == 256 * 1000.0 / timing.p50


def test_models_take_turns_until_the_count_and_the_time_are_reached(images: np.ndarray) -> None:
    runners = {"fp32": open_runner(FP32), "zoo": open_runner(ZOO_INT8)}
    calls = {name: runner.infer for name, runner in runners.items()}
    feeds = {name: [runner.feed(images[k : k + 1]) for k in range(4)] for name, runner in runners.items()}
    by_count = time_in_turns(calls, feeds, warmup_calls=3, min_calls=250, min_seconds=0)
    assert {len(runs) for runs in by_count.values()} == {250}
    floor = time_in_turns(calls, feeds, warmup_calls=0, min_calls=1, min_seconds=0)
    assert {len(runs) for runs in floor.values()} == {MIN_CALLS}, "never fewer than MIN_CALLS calls"
    by_time = time_in_turns(calls, feeds, warmup_calls=3, min_calls=1, min_seconds=0.05)
    counts = {len(runs) for runs in by_time.values()}
    assert len(counts) == 1, "every model runs the same number of calls: call t of each is a pair"
    for runs in by_time.values():
        assert np.all(runs > 0)
        assert runs.sum() >= 50.0, "each model ran at least min_seconds of timed work"
    # One turn fewer would not have reached the time for the model that needed the most.
    assert min(runs[:-1].sum() for runs in by_time.values()) < 50.0


@pytest.mark.fast
def test_measure_opens_fresh_sessions_per_set_runs_an_a_a_pair_and_pairs_the_ratios(images: np.ndarray) -> None:
    settings = BenchmarkSection(warmup=4, iterations=40, min_time_s=0, rounds=3, batch_sizes=(8, 1, 32))
    targets = [BenchmarkTarget(name, onnx.load(str(path)), path) for name, path in (("fp32", FP32), ("zoo", ZOO_INT8))]
    results = benchmark.measure(targets, images, settings, SessionSettings())
    assert list(results) == ["fp32", "zoo"]
    for performance in results.values():
        assert performance.latency.batch_size == 1 and len(performance.latency.rounds_ms) == 3
        assert [t.batch_size for t in performance.throughput] == [1, 8, 32]
        batch_32 = performance.throughput_at(32)
        assert all(len(runs) == MIN_CALLS for runs in batch_32.rounds_ms)  # 40 images are 2 calls: the floor
        # Whole turns of TURN_IMAGES images: one turn of 64 calls at batch 1, 3 turns of 8 calls at batch 8.
        assert all(len(runs) == TURN_IMAGES for runs in performance.latency.rounds_ms)
        assert all(len(runs) == 24 for runs in performance.throughput_at(8).rounds_ms)
        pooled = np.concatenate(batch_32.rounds_ms)
        assert batch_32.images_per_s == pytest.approx(32 * 1000 / float(np.median(pooled)))
    zoo, fp32 = results["zoo"], results["fp32"]
    # The first model is the reference: its second session ran beside it, the others have none.
    assert fp32.second_session is not None and zoo.second_session is None
    floor = fp32.noise_floor()
    assert floor == fp32.second_session.latency.time_ratio(fp32.latency)
    # Direction: latency is time zoo / time fp32 (paired call by call within turns), throughput its inverse.
    per_set = [float(np.median(z / f)) for z, f in zip(zoo.latency.rounds_ms, fp32.latency.rounds_ms)]
    ratio = zoo.latency_ratio(fp32)
    assert ratio.value == pytest.approx(float(np.median(per_set)))
    factor = max(floor.high, 1 / floor.low, 1.0)
    assert (ratio.low, ratio.high) == pytest.approx((min(per_set) / factor, max(per_set) * factor))
    time_8 = zoo.throughput_at(8).time_ratio(fp32.throughput_at(8), fp32.noise_floor(8))
    assert zoo.throughput_ratio(fp32, 8).value == pytest.approx(1 / time_8.value)


@pytest.mark.fast
def test_environment_names_the_cpu_and_the_versions() -> None:
    env = capture_environment()
    assert set(env.cpu_flags) == {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"}
    assert env.cpu_class in env.features() and f"AVX2 {'yes' if env.cpu_flags['avx2'] else 'no'}" in env.features()
    assert env.versions["onnxruntime"] == ort.__version__
    assert env.versions["onnx"] == onnx.__version__
    assert env.versions["numpy"] == np.__version__
    assert env.usable_cpus >= 1 and env.cpu_model
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].splitlines()[0].split()
    assert env.cpu_flags["avx2"] == ("avx2" in flags)


def _labels() -> np.ndarray:
    import gzip

    with gzip.open(ROOT / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=8).astype(np.int64)


def test_benchmark_accuracy_prints_the_inc_lines(images: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    main(["benchmark", "--input_model", str(ZOO_INT8), "--mode", "accuracy", "--set", f"dataset.root={ROOT / 'data'}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Batch size = 1"
    match = re.fullmatch(r"Accuracy: (\d\.\d{5})", lines[1])
    assert match
    session = _plain_session(onnx.load(str(ZOO_INT8)))
    predictions = np.array([session.run(None, {"Input3": images[i : i + 1]})[0].argmax() for i in range(len(images))])
    assert float(match.group(1)) == pytest.approx(np.mean(predictions == _labels()), abs=5e-6)
    assert lines[2].startswith("Conditions: 10,000 MNIST test images")


def test_benchmark_performance_above_the_fixed_batch_size(capsys: pytest.CaptureFixture[str]) -> None:
    main(["benchmark", "--input_model", str(ZOO_INT8), "--batch_size", "16", *SMALL,
          "--set", f"dataset.root={ROOT / 'data'}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Batch size = 16"
    latency = re.fullmatch(r"Latency: (\d+\.\d{3}) ms", lines[1])
    throughput = re.fullmatch(r"Throughput: (\d+\.\d) images/sec", lines[2])
    assert latency and throughput
    # INC's convention: latency per image and throughput are reciprocal.
    assert float(throughput.group(1)) == pytest.approx(1000 / float(latency.group(1)), rel=0.02)
    assert re.fullmatch(r"Spread: \d+\.\d-\d+\.\d images/sec over 10 session sets", lines[3])
    assert re.fullmatch(r"Noise floor: a second session of the same model took \d\.\d{3}x .*", lines[4])
    assert lines[-1].startswith("Conditions: ")
    assert f"onnxruntime {ort.__version__}, default session options, 1 intra-op thread" in lines[-1]


def test_benchmark_missing_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--input_model", str(missing), "--mode", "accuracy"])
    assert exit_info.value.code == InputError.exit_code
    assert capsys.readouterr().err == f"error: {missing}: model file not found\n"


def test_run_benchmark_sh_wraps_the_command() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "run_benchmark.sh"), f"--input_model={FP32}", "--config=configs/mnist.yaml",
         "--mode=performance", *SMALL],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Batch size = 1"
    assert re.fullmatch(r"Latency: \d+\.\d{3} ms", lines[1])
    assert re.fullmatch(r"Throughput: \d+\.\d images/sec", lines[2])
    assert lines[-1].startswith("Conditions: ")
