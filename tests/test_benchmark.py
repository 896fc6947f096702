"""tuning.benchmark on the vendored models and real MNIST test images, with real onnxruntime sessions.

No assertion is about speed: the machine is shared, so only the structure and the
arithmetic of the measurements are checked.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from tuning import benchmark
from tuning.benchmark import BenchmarkTarget, batch_capable_copy, verify_batch_copy
from tuning.cli import main
from tuning.config import BenchmarkSection, DatasetSection, Split
from tuning.data import evaluation_images
from tuning.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
FP32 = ROOT / "models" / "mnist-12.onnx"
ZOO_INT8 = ROOT / "models" / "zoo-mnist-12-int8.onnx"
SMALL = ["--set", "benchmark.warmup=5", "--set", "benchmark.iterations=40"]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28)).images


def _plain_session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _reshape_shape(model: onnx.ModelProto, node_name: str) -> list[int]:
    node = next(n for n in model.graph.node if n.name == node_name)
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    return numpy_helper.to_array(init).tolist()


@pytest.mark.parametrize("path", [FP32, ZOO_INT8], ids=["fp32", "zoo-int8"])
def test_batch_copy_gives_the_originals_outputs(path: Path, images: np.ndarray) -> None:
    original = onnx.load(str(path))
    before = original.SerializeToString()
    copy = batch_capable_copy(original, path)

    assert original.SerializeToString() == before, "the original must not be modified"
    assert copy.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert copy.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert _reshape_shape(copy, "Times212_reshape0") == [-1, 256]
    assert len(copy.graph.value_info) == 0
    if path == FP32:  # a Reshape of a weight carries no batch dimension
        assert _reshape_shape(copy, "Times212_reshape1") == [256, 10]

    batch = images[:300]
    one_by_one = np.concatenate([_plain_session(original).run(None, {"Input3": batch[i : i + 1]})[0] for i in range(300)])
    at_once = _plain_session(copy).run(None, {"Input3": batch})[0]
    np.testing.assert_allclose(at_once, one_by_one, rtol=1e-5, atol=1e-5)
    assert np.array_equal(at_once.argmax(axis=1), one_by_one.argmax(axis=1))
    assert verify_batch_copy(original, copy, images, path) <= 1e-5


def test_batch_copy_keeps_a_shared_shape_initializer(images: np.ndarray) -> None:
    model = onnx.load(str(FP32))
    shape_name = next(n for n in model.graph.node if n.name == "Times212_reshape0").input[1]
    # A second consumer of the shape tensor must still see [1, 256].
    model.graph.node.append(helper.make_node("Identity", [shape_name], ["shape_copy"], name="shape_reader"))
    model.graph.output.append(helper.make_tensor_value_info("shape_copy", onnx.TensorProto.INT64, [2]))

    copy = batch_capable_copy(model, "shared.onnx")

    assert _reshape_shape(copy, "Times212_reshape0") == [-1, 256]
    shared = next(i for i in copy.graph.initializer if i.name == shape_name)
    assert numpy_helper.to_array(shared).tolist() == [1, 256]
    outputs = _plain_session(copy).run(None, {"Input3": images[:8]})
    assert outputs[0].shape == (8, 10) and outputs[1].tolist() == [1, 256]


def test_verify_refuses_a_copy_that_cannot_batch(images: np.ndarray) -> None:
    original = onnx.load(str(ZOO_INT8))
    half_done = onnx.ModelProto()
    half_done.CopyFrom(original)
    half_done.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"  # Reshape still says [1, 256]
    with pytest.raises(InputError, match=r"^zoo\.onnx: the batch-capable copy fails at batch 256"):
        verify_batch_copy(original, half_done, images, "zoo.onnx")


def test_verify_refuses_a_copy_with_different_outputs(images: np.ndarray) -> None:
    original = onnx.load(str(FP32))
    copy = batch_capable_copy(original, FP32)
    bias = next(i for i in copy.graph.initializer if i.name == "Parameter194")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(0.01), bias.name))
    with pytest.raises(InputError, match=r"outputs differ from the original's on 256 test images"):
        verify_batch_copy(original, copy, images, FP32)


def test_runs_at_batch_keeps_the_images_per_measurement_about_equal() -> None:
    settings = BenchmarkSection(warmup=200, iterations=2000)
    assert benchmark.runs_at_batch(settings, 1) == (200, 2000)
    assert benchmark.runs_at_batch(settings, 16) == (13, 125)
    assert benchmark.runs_at_batch(settings, 1024) == (1, benchmark.MIN_TIMED_BATCHES)
    assert benchmark.runs_at_batch(BenchmarkSection(warmup=0, iterations=3), 64) == (0, 3)
    assert benchmark.batch_sizes(BenchmarkSection(batch_sizes=(64, 1, 16, 64))) == (1, 16, 64)


def test_time_models_times_every_run_of_every_model(images: np.ndarray) -> None:
    sessions = {"fp32": _plain_session(onnx.load(str(FP32))), "zoo": _plain_session(onnx.load(str(ZOO_INT8)))}
    timings = benchmark.time_models(sessions, images, batch_size=1, warmup_runs=3, timed_runs=250)
    for name, timing in timings.items():
        assert timing.runs == 250 and timing.warmup_runs == 3, name
        assert np.all(timing.durations_ms > 0)
        assert timing.p50 <= timing.p90 <= timing.p99 <= timing.durations_ms.max()
        assert timing.p50 == pytest.approx(float(np.median(timing.durations_ms)))
        assert timing.images_per_s == pytest.approx(1000 / timing.p50)


def test_measure_performance_covers_every_batch_size(images: np.ndarray) -> None:
    settings = BenchmarkSection(warmup=4, iterations=40, batch_sizes=(8, 1, 32))
    targets = [BenchmarkTarget(name, onnx.load(str(path)), path) for name, path in (("fp32", FP32), ("zoo", ZOO_INT8))]
    results = benchmark.measure_performance(targets, images, settings)
    assert list(results) == ["fp32", "zoo"]
    for performance in results.values():
        assert performance.latency.batch_size == 1 and performance.latency.runs == 40
        assert [t.batch_size for t in performance.throughput] == [1, 8, 32]
        assert [t.runs for t in performance.throughput] == [40, 10, 10]
        batch_32 = performance.throughput_at(32)
        assert batch_32.images_per_s == pytest.approx(32 * 1000 / float(np.median(batch_32.durations_ms)))


def test_environment_names_the_cpu_and_the_versions() -> None:
    env = benchmark.capture_environment()
    assert set(env.cpu_flags) == {"avx2", "avx512f", "avx512_vnni", "amx_int8"}
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
    assert "1 intra-op thread" in lines[3] and f"onnxruntime {ort.__version__}" in lines[3]
    assert f"{math.ceil(5 / 16)} warm-up + {benchmark.MIN_TIMED_BATCHES} timed batches" in lines[3]


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
    assert lines[3].startswith("Conditions: ")
