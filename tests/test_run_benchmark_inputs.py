"""tuning.measure.benchmark.run_benchmark's refusals, each naming the model file and what was expected, and the
settings it passes on (the split, the session entries, the batch size, the model's name) and the conditions and
warnings it states, on small models built here and the real MNIST files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import project_config
from onnx import TensorProto, helper, numpy_helper
from tiny_models import batch_centred, mlp

from tuning.data import datasets
from tuning.errors import ConfigError, InputError
from tuning.files.onnx_io import METADATA_PREFIX
from tuning.measure import benchmark
from tuning.measure.environment import capture_environment
from tuning.measure.runtimes import SessionSettings, conditions_phrase, onnxruntime_conditions

pytestmark = pytest.mark.fast

SMALL = {"benchmark.warmup": 1, "benchmark.iterations": 1, "benchmark.min_time_s": 0, "benchmark.rounds": 1}


def test_a_batch_too_large_for_the_limit_is_refused_naming_the_flag_and_the_file(tmp_path: Path) -> None:
    path = mlp(tmp_path / "m.onnx")
    config = project_config(tmp_path, **{"benchmark.max_batch_bytes": 6351})
    needed = 2 * (1 * 28 * 28 + 10) * 4  # two float32 images in, two rows of 10 scores out
    with pytest.raises(ConfigError) as refused:
        benchmark.run_benchmark(config, path, "accuracy", 2)
    assert str(refused.value) == (
        f"--batch-size: batch 2 of {path} needs {needed} bytes for its input and output tensors, more than "
        "benchmark.max_batch_bytes (6351); use a smaller batch or raise the limit")
    assert needed == 6352  # one byte more than the limit: the limit itself is allowed
    benchmark.run_benchmark(project_config(tmp_path, **{"benchmark.max_batch_bytes": 6352}), path, "accuracy", 2)


def test_a_model_that_is_no_classifier_is_refused_naming_its_file(tmp_path: Path) -> None:
    path = mlp(tmp_path / "two.onnx")
    model = onnx.load(str(path))
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    onnx.save(model, str(path))
    with pytest.raises(InputError, match=rf"^{path}: expected one graph input, got 2$"):
        benchmark.run_benchmark(project_config(tmp_path), path, "accuracy", 1)
    five = mlp(tmp_path / "five.onnx", classes=5)
    with pytest.raises(InputError, match=rf"^{five}: output 'logits' declares 5 classes, but the dataset has 10$"):
        benchmark.run_benchmark(project_config(tmp_path), five, "accuracy", 1)


def test_the_configured_split_is_scored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[object] = []
    real = datasets.evaluation_images

    def recording(dataset, split, sample_shape):
        asked.append(split)
        return real(dataset, split, sample_shape)

    monkeypatch.setattr(datasets, "evaluation_images", recording)
    config = project_config(tmp_path)
    run = benchmark.run_benchmark(config, mlp(tmp_path / "m.onnx"), "accuracy", 1000)
    assert asked == [config.evaluation.split]
    assert run.conditions.startswith(f"Conditions: 10,000 MNIST {config.evaluation.split.value} images")


def test_the_session_entries_reach_the_runner_which_names_the_file(tmp_path: Path) -> None:
    path = mlp(tmp_path / "m.onnx")
    refusing = project_config(tmp_path, **{"deployment.session_config_entries": {"session.load_model_format": "ORT"}})
    for mode in ("accuracy", "performance"):
        with pytest.raises(InputError, match=rf"^{path}: onnxruntime cannot load it \("):
            benchmark.run_benchmark(refusing, path, mode, 1)


def test_the_runner_is_asked_for_the_batch_size_and_the_performance_is_named_after_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    real = benchmark.runner_for_batch

    def recording(target, images, batch_size, session):
        asked.append(batch_size)
        return real(target, images, batch_size, session)

    monkeypatch.setattr(benchmark, "runner_for_batch", recording)
    benchmark.run_benchmark(project_config(tmp_path), mlp(tmp_path / "m.onnx"), "accuracy", 500)
    run = benchmark.run_benchmark(project_config(tmp_path, **SMALL), mlp(tmp_path / "small.onnx"), "performance", 4)
    assert asked == [500, 4]
    assert run.performance.name == "small"


def _declaring(path: Path, pixel_scale: str) -> Path:
    model = onnx.load(str(path))
    for key, value in {"preprocessing.pixel_scale": pixel_scale, "preprocessing.mean": "0.5", "preprocessing.std": "0.25"}.items():
        model.metadata_props.add(key=METADATA_PREFIX + key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("mode", ["accuracy", "performance"])
def test_the_run_states_its_conditions_and_warns_of_other_preprocessing(tmp_path: Path, mode: str) -> None:
    config = project_config(tmp_path, **SMALL)
    path = _declaring(mlp(tmp_path / "m.onnx"), "other-scale")
    run = benchmark.run_benchmark(config, path, mode, 1)
    declared = {"pixel_scale": "other-scale", "mean": 0.5, "std": 0.25}
    # Keys sorted: the config spells them pixel_scale, mean, std.
    assert run.warnings == (
        f"warning: {path} declares preprocessing {json.dumps(declared, sort_keys=True)}; "
        f"this run uses {json.dumps(config.preprocessing, sort_keys=True)}",)
    assert list(config.preprocessing) != sorted(config.preprocessing)
    assert run.runtime_conditions == onnxruntime_conditions(SessionSettings.of(config))
    environment = capture_environment().summary()
    if mode == "accuracy":
        assert run.conditions == (
            f"Conditions: 10,000 MNIST test images, preprocessing {json.dumps(config.preprocessing, sort_keys=True)}, "
            f"{conditions_phrase(run.runtime_conditions)}; {environment}")
    else:
        assert run.conditions == (
            f"Conditions: {conditions_phrase(run.runtime_conditions)}; {run.timing.runs} timed batches in "
            f"{benchmark.timing_conditions(config.benchmark)}, latency = median batch time / batch size; {environment}")


def test_a_runner_for_a_model_that_is_no_classifier_is_refused_naming_its_file(tmp_path: Path) -> None:
    path = mlp(tmp_path / "two.onnx")
    model = onnx.load(str(path))
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    target = benchmark.BenchmarkTarget("two", model, path)
    with pytest.raises(InputError, match=rf"^{path}: expected one graph input, got 2$"):
        benchmark.runner_for_batch(target, np.zeros((4, 1, 28, 28), np.float32), 4, SessionSettings())


def _reshaping_batch_2(shape: list[int]) -> onnx.ModelProto:
    """x [2, 2, 2] -> Reshape(x, shape) -> y [2, 4]: a classifier-shaped model whose batch is fixed at 2."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_y")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.array(shape, np.int64), "shape")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_each_step_to_a_batch_capable_copy_names_the_file(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((8, 2, 2), dtype=np.float32)
    source = tmp_path / "fixed.onnx"
    # The copy cannot be made: a fixed batch next to another -1.
    refused = benchmark.BenchmarkTarget("r", _reshaping_batch_2([2, -1]), source)
    with pytest.raises(InputError, match=rf"^{source}: Reshape 'reshape_y' has shape \[2, -1\]"):
        benchmark.runner_for_batch(refused, images, 4, SessionSettings())
    # The copy computes something else than the model: scores centred over the batch.
    centred = onnx.load(str(batch_centred(tmp_path / "centred.onnx")))
    pixels = np.random.default_rng(1).random((8, 1, 28, 28), dtype=np.float32)
    with pytest.raises(InputError, match=rf"^{source}: the batch-capable copy's outputs differ from the original's"):
        benchmark.runner_for_batch(benchmark.BenchmarkTarget("c", centred, source), pixels, 4, SessionSettings())
    # The copy is made and verified, then the configured session refuses it.
    works = benchmark.BenchmarkTarget("w", _reshaping_batch_2([2, 4]), source)
    assert benchmark.runner_for_batch(works, images, 4, SessionSettings()).scores(images[:4]).shape == (4, 4)
    refusing = SessionSettings(1, (("session.load_model_format", "ORT"),))
    with pytest.raises(InputError, match=rf"^{source}: onnxruntime cannot load it \("):
        benchmark.runner_for_batch(works, images, 4, refusing)


def test_measure_names_the_file_at_each_step_to_a_batch_capable_copy(tmp_path: Path) -> None:
    source = tmp_path / "fixed.onnx"
    two = onnx.load(str(mlp(tmp_path / "two.onnx")))
    two.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    with pytest.raises(InputError, match=rf"^{source}: expected one graph input, got 2$"):
        benchmark._timed_models(benchmark.BenchmarkTarget("t", two, source), np.zeros((4, 1, 28, 28), np.float32))
    refused = benchmark.BenchmarkTarget("r", _reshaping_batch_2([2, -1]), source)
    with pytest.raises(InputError, match=rf"^{source}: Reshape 'reshape_y' has shape \[2, -1\]"):
        benchmark._timed_models(refused, np.zeros((8, 2, 2), np.float32))
    centred = onnx.load(str(batch_centred(tmp_path / "centred.onnx")))
    pixels = np.random.default_rng(1).random((8, 1, 28, 28), dtype=np.float32)
    with pytest.raises(InputError, match=rf"^{source}: the batch-capable copy's outputs differ from the original's"):
        benchmark._timed_models(benchmark.BenchmarkTarget("c", centred, source), pixels)


def test_a_model_fixed_at_another_batch_than_1_is_timed_at_batch_1_through_its_copy(tmp_path: Path) -> None:
    source = tmp_path / "two.onnx"
    target = benchmark.BenchmarkTarget("t", _reshaping_batch_2([2, 4]), source)
    timed = benchmark._timed_models(target, np.random.default_rng(2).random((8, 2, 2), dtype=np.float32))
    assert timed.as_given is timed.batched and timed.as_given is not target.model
    assert timed.as_given.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    refusing = SessionSettings(1, (("session.load_model_format", "ORT"),))
    with pytest.raises(InputError, match=rf"^{source}: onnxruntime cannot load it \("):
        benchmark._open(timed, refusing)
