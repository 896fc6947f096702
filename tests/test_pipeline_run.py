"""tuning/pipeline.py's run_tuning around its quantizer: what it hands the quantizer, and what it writes of what
the quantizer returns, checked against the files written (their bytes, hashes and metadata read back).

INC's loop (search/accuracy.py, search/latency.py) is the one step replaced: by onnxruntime's own
``quantize_dynamic`` on the model it is given, scored with the evaluator it is given. That keeps these tests in
the fast subset (an INC run takes seconds to minutes), so mutation runs reach every line of run_tuning; the real
INC runs are tests/test_tuning.py's and tests/test_outputs.py's. The model is a tiny MLP with a fixed batch of 1,
like the zoo's, so the quantizer must get its batch-capable copy.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import write_config
from neural_compressor.utils import logger as inc_logger
from onnx import helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from tests.tiny_models import mlp
from tuning import pipeline
from tuning.config.enums import Objective, Split
from tuning.config.loading import load_config
from tuning.config.schema import DatasetSection, PipelineConfig
from tuning.data.datasets import evaluation_images
from tuning.errors import ConfigError, InputError, TuningError
from tuning.files.onnx_io import read_metadata
from tuning.inc import distributed
from tuning.measure.evaluate import AccuracyEvaluator
from tuning.measure.runtimes import SessionSettings
from tuning.search.trials import Trial, TuningOutcome

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = 40


def _config(tmp_path: Path, **sections: Any) -> PipelineConfig:
    model = mlp(tmp_path / "mlp.onnx", batch=1)
    return load_config(write_config(tmp_path / "config.yaml", {
        "model": {"path": str(model), "url": None, "sha256": None},
        "dataset": {"name": "MNIST", "root": str(ROOT / "data")},
        "calibration": {"sampling_size": CALIBRATION},
        "evaluation": {"batch_size": 500},
        "output": {"model": str(tmp_path / "out" / "int8.onnx"), "dir": str(tmp_path / "out" / "run")},
        "benchmark": {"reference_models": []},
        **sections,
    }))


class _OnnxruntimeQuantizer:
    """Stands in for INC's loop: quantize_dynamic on the model it is given, both models scored by ``evaluate``.
    Records what it was given; ``unloadable`` returns a model onnxruntime cannot load instead."""

    def __init__(self, unloadable: bool = False) -> None:
        self.unloadable = unloadable
        self.given: dict[str, Any] = {}

    def outcome(self, model: onnx.ModelProto, evaluate: AccuracyEvaluator, workspace: Path) -> TuningOutcome:
        onnx.save(model, str(workspace / "fp32.onnx"))
        quantize_dynamic(str(workspace / "fp32.onnx"), str(workspace / "int8.onnx"), weight_type=QuantType.QInt8)
        int8 = onnx.load(str(workspace / "int8.onnx"))
        fp32_accuracy, int8_accuracy = evaluate(model), evaluate(int8)
        if self.unloadable:  # scored, then changed: as a model OpenVINO refuses after onnxruntime scored it
            int8.graph.node.append(helper.make_node("Unknown", ["logits"], ["unused"], domain="com.example"))
            int8.opset_import.append(helper.make_opsetid("com.example", 1))
        trials = [Trial(0, fp32_accuracy, True, (), ("fc1", "fc2")),
                  Trial(1, int8_accuracy, True, ("fc1", "fc2"), (), chosen=True, reason="the stand-in's only model")]
        return TuningOutcome(int8, fp32_accuracy, int8_accuracy, trials, Objective.ACCURACY, 1, "the stand-in's only model")

    def __call__(self, model, calibration, evaluate, config, workspace) -> TuningOutcome:  # noqa: ANN001
        self.given = {"model": model, "calibration": calibration, "evaluate": evaluate, "config": config,
                      "workspace": workspace}
        return self.outcome(model, evaluate, workspace)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_quantizer_gets_the_batch_copy_the_split_and_a_workspace_in_the_run_folder(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path, benchmark={"reference_models": [], "intra_op_threads": 2})  # not the default settings
    quantizer = _OnnxruntimeQuantizer()
    monkeypatch.setattr(pipeline, "quantize", quantizer)
    progress: list[str] = []
    pipeline.run_tuning(config, progress=progress.append)

    given, source = quantizer.given, tmp_path / "mlp.onnx"
    assert given["model"].graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert given["config"] is config
    workspace = tmp_path / "out" / "run" / "nc_workspace"
    assert given["workspace"] == workspace and (workspace / "inc.log").is_file()
    assert len(given["calibration"]) == CALIBRATION
    evaluate = given["evaluate"]
    split = evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28))
    assert np.array_equal(evaluate.data.images, split.images) and np.array_equal(evaluate.data.labels, split.labels)
    assert evaluate.batch_size == 500 and evaluate.settings == SessionSettings.of(config)
    assert len(evaluate.history) == 2  # the fp32 model and the int8 one, by the evaluator the run made
    assert progress == [
        f"tune: reading {source}",
        f"tune: loading MNIST from {ROOT / 'data'}",
        f"tune: quantizing with INC, objective accuracy: {CALIBRATION} calibration images, each candidate evaluated "
        f"on 10,000 images (INC's log: {workspace / 'inc.log'})",
    ]


def test_the_model_and_summary_written_describe_what_the_quantizer_returned(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    quantizer = _OnnxruntimeQuantizer()
    monkeypatch.setattr(pipeline, "quantize", quantizer)
    started = time.perf_counter()
    summary = pipeline.run_tuning(config)
    elapsed = time.perf_counter() - started

    source, output = tmp_path / "mlp.onnx", tmp_path / "out" / "int8.onnx"
    summary_path = tmp_path / "out" / "run" / "tuning_summary.json"
    written = onnx.load(str(output))
    fp32_accuracy, int8_accuracy = quantizer.given["evaluate"].history
    returned = onnx.load(str(tmp_path / "out" / "run" / "nc_workspace" / "int8.onnx"))
    assert written.graph == returned.graph
    metadata = read_metadata(written)
    session_options = SessionSettings.of(config).describe()
    assert {key: metadata[key] for key in (
        "source_sha256", "config_sha256", "fp32_top1_accuracy", "int8_top1_accuracy", "evaluation_split",
        "deployment_runtime", "session_options.intra_op_num_threads", "preprocessing.pixel_scale",
    )} == {
        "source_sha256": _sha256(source),
        "config_sha256": config.quantization_sha256(),
        "fp32_top1_accuracy": np.format_float_positional(fp32_accuracy, trim="-"),
        "int8_top1_accuracy": np.format_float_positional(int8_accuracy, trim="-"),
        "evaluation_split": "MNIST/test",
        "deployment_runtime": "onnxruntime",
        "session_options.intra_op_num_threads": str(session_options["intra_op_num_threads"]),
        "preprocessing.pixel_scale": config.dataset.pixel_scale.value,
    }

    text = summary_path.read_text()
    on_disk = json.loads(text)
    assert text == json.dumps(on_disk, indent=2) + "\n"  # indented for a reader, one line per key
    assert on_disk == json.loads(json.dumps(asdict(summary)))
    assert 0 < on_disk.pop("seconds") <= elapsed
    stages = on_disk.pop("stage_seconds")
    assert list(stages) == ["start_up", "read_model", "load_data", "import_inc", "inc_tuning", "write_model"]
    assert all(value >= 0 for value in stages.values()) and sum(stages.values()) <= elapsed + stages["start_up"]
    trials = on_disk.pop("trials")
    assert [(trial["index"], trial["accuracy"], trial["chosen"]) for trial in trials] == [
        (0, fp32_accuracy, False), (1, int8_accuracy, True)]
    assert on_disk == {
        "source_model": str(source),
        "source_sha256": _sha256(source),
        "output_model": str(output),
        "fp32_top1_accuracy": fp32_accuracy,
        "int8_top1_accuracy": int8_accuracy,
        "source_bytes": source.stat().st_size,
        "output_bytes": output.stat().st_size,
        "config_sha256": config.quantization_sha256(),
        "summary_path": str(summary_path),
        "objective": "accuracy",
        "chosen_trial": 1,
        "reason": "the stand-in's only model",
        "session_options": json.loads(json.dumps(session_options)),
        "latency_measurement": None,
        "output_sha256": _sha256(output),
        "warning": None,
        "deployment_runtime": "onnxruntime",
        "distributed": None,
        "search": None,
    }


def test_a_model_the_runtime_cannot_load_is_refused_and_nothing_is_written(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    monkeypatch.setattr(pipeline, "quantize", _OnnxruntimeQuantizer(unloadable=True))
    with pytest.raises(TuningError) as refused:
        pipeline.run_tuning(config)
    message = str(refused.value)
    assert message.startswith("the int8 model INC chose: ")
    assert message.endswith("; nothing written. deployment.runtime is onnxruntime: set quantization.format: QDQ, "
                            "or tuning.objective: latency, which keeps only candidates the runtime loads")
    assert not (tmp_path / "out" / "int8.onnx").exists()
    assert not (tmp_path / "out" / "run" / "tuning_summary.json").exists()


def test_a_rank_without_an_outcome_writes_nothing_and_returns_none(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    monkeypatch.setattr(pipeline, "quantize", lambda *args: None)
    assert pipeline.run_tuning(config) is None
    assert not (tmp_path / "out" / "int8.onnx").exists()
    assert not (tmp_path / "out" / "run" / "tuning_summary.json").exists()


def _latency_config(tmp_path: Path, batch_sizes: list[int], max_batch_bytes: int) -> PipelineConfig:
    return _config(tmp_path, tuning={"objective": "latency"},
                   benchmark={"reference_models": [], "batch_sizes": batch_sizes, "max_batch_bytes": max_batch_bytes})


def test_objective_latency_hands_its_search_the_split_and_writes_what_it_measured(tmp_path, monkeypatch) -> None:
    given: dict[str, Any] = {}
    measurement = {"rounds": 3, "verdict": {"line": "int8 pays"}, "seconds": {"candidates": 0.0}}
    search = {"name": "grid", "cut": None}

    def search_stand_in(model, calibration, evaluate, images, config, workspace, source, say):  # noqa: ANN001
        given.update(images=images, source=source, workspace=workspace, calibration=calibration, config=config)
        say("latency: the stand-in's line")
        outcome = _OnnxruntimeQuantizer().outcome(model, evaluate, workspace)
        outcome.objective, outcome.measurement, outcome.search, outcome.warning = (
            Objective.LATENCY, measurement, search, "int8 does not pay")
        return outcome

    monkeypatch.setattr(pipeline, "quantize_for_latency", search_stand_in)
    progress: list[str] = []
    config = _latency_config(tmp_path, [1, 64], 1 << 20)
    summary = pipeline.run_tuning(config, progress=progress.append)
    assert given["config"] is config and len(given["calibration"]) == CALIBRATION

    split = evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28))
    assert np.array_equal(given["images"], split.images)
    assert given["source"] == tmp_path / "mlp.onnx"
    assert given["workspace"] == tmp_path / "out" / "run" / "nc_workspace"
    assert progress[-1] == "latency: the stand-in's line"
    assert (summary.objective, summary.latency_measurement, summary.search, summary.warning) == (
        "latency", measurement, search, "int8 does not pay")


@pytest.mark.parametrize("objective", ["latency", "accuracy"])
def test_objective_latency_refuses_a_largest_batch_beyond_the_limit_before_tuning(tmp_path, monkeypatch, objective) -> None:
    """Batch 64 of a [1, 28, 28] -> 10 classifier needs 4 * 64 * (784 + 10) bytes; batch 1, 4 * 794."""
    needed = 4 * 64 * (784 + 10)
    config = _config(tmp_path, tuning={"objective": objective},
                     benchmark={"reference_models": [], "batch_sizes": [64, 1], "max_batch_bytes": needed - 1})
    monkeypatch.setattr(pipeline, "quantize", _OnnxruntimeQuantizer())
    monkeypatch.setattr(pipeline, "quantize_for_latency", lambda *args: pytest.fail("tuning started"))
    if objective == "accuracy":  # accuracy does not time candidates: the limit is the report's business
        assert pipeline.run_tuning(config) is not None
        return
    with pytest.raises(ConfigError, match=rf"^benchmark\.batch_sizes: batch 64 of .*mlp\.onnx needs {needed} bytes"):
        pipeline.run_tuning(config)
    assert not (tmp_path / "out").exists()


def test_an_unavailable_runtime_is_refused_naming_the_key(tmp_path) -> None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("OpenVINO is installed: the runtime is available")
    config = _config(tmp_path, deployment={"runtime": "openvino"})
    with pytest.raises(ConfigError, match=r"^deployment\.runtime: openvino: "):
        pipeline.run_tuning(config)


def _ranks(monkeypatch, rank: int, size: int) -> None:
    """This process as one rank of an MPI job: the world ``distributed.world()`` detects once, set instead."""
    monkeypatch.setattr(distributed, "_world", distributed.World(rank=rank, size=size))


def test_rank_0_of_three_tunes_in_its_own_workspace_and_records_the_ranks(tmp_path, monkeypatch) -> None:
    _ranks(monkeypatch, 0, 3)
    quantizer = _OnnxruntimeQuantizer()
    monkeypatch.setattr(pipeline, "quantize", quantizer)
    progress: list[str] = []
    summary = pipeline.run_tuning(_config(tmp_path, tuning={"strategy": "basic"}), progress=progress.append)
    assert quantizer.given["workspace"] == tmp_path / "out" / "run" / "nc_workspace" / "rank0"
    assert summary.distributed == {"ranks": 3, "trial_order": "evaluation finished"}
    assert progress[0] == f"tune: reading {tmp_path / 'mlp.onnx'}"


def test_a_worker_rank_says_nothing_and_writes_nothing(tmp_path, monkeypatch) -> None:
    _ranks(monkeypatch, 1, 3)
    given: list[Path] = []
    monkeypatch.setattr(pipeline, "quantize", lambda model, calibration, evaluate, config, workspace: given.append(workspace))
    progress: list[str] = []
    config = _config(tmp_path, tuning={"strategy": "basic"},
                     output={"model": str(tmp_path / "models" / "int8.onnx"), "dir": str(tmp_path / "out" / "run")})
    assert pipeline.run_tuning(config, progress=progress.append) is None
    assert given == [tmp_path / "out" / "run" / "nc_workspace" / "rank1"] and progress == []
    assert not (tmp_path / "models").exists()  # the output model's folder is rank 0's to make
    assert not (tmp_path / "out" / "run" / "tuning_summary.json").exists()


@pytest.mark.parametrize("verbose", [None, False, True], ids=["default", "quiet", "verbose"])
def test_incs_console_log_is_kept_only_when_verbose(tmp_path, monkeypatch, verbose) -> None:
    log = inc_logger.Logger().get_logger()
    console = logging.StreamHandler()
    log.addHandler(console)
    monkeypatch.setattr(pipeline, "quantize", _OnnxruntimeQuantizer())
    try:
        pipeline.run_tuning(_config(tmp_path), **({} if verbose is None else {"verbose": verbose}))
        assert (console in log.handlers) is bool(verbose)
    finally:
        log.removeHandler(console)


@contextlib.contextmanager
def _serving(folder: Path) -> Iterator[str]:
    """``folder`` over plain HTTP on loopback (which fetch accepts), in a thread; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_a_missing_model_is_downloaded_from_its_url_and_checked_against_its_sha256(tmp_path, monkeypatch) -> None:
    (tmp_path / "served").mkdir()
    served = mlp(tmp_path / "served" / "mlp.onnx", batch=1)
    monkeypatch.setattr(pipeline, "quantize", _OnnxruntimeQuantizer())
    with _serving(served.parent) as url:
        config = _config(tmp_path, model={"path": str(tmp_path / "fetched.onnx"), "url": f"{url}/mlp.onnx",
                                          "sha256": _sha256(served)})
        summary = pipeline.run_tuning(config)
    assert (tmp_path / "fetched.onnx").read_bytes() == served.read_bytes()
    assert summary.source_model == str(tmp_path / "fetched.onnx") and summary.source_sha256 == _sha256(served)


def test_a_model_file_is_checked_against_its_sha256_and_size_limit(tmp_path) -> None:
    model = mlp(tmp_path / "mlp.onnx", batch=1)
    wrong = _config(tmp_path, model={"path": str(model), "url": None, "sha256": "0" * 64})
    with pytest.raises(InputError, match="sha256"):
        pipeline.run_tuning(wrong)
    size = model.stat().st_size
    too_small = _config(tmp_path, model={"path": str(model), "url": None, "sha256": _sha256(model), "max_bytes": size - 1})
    with pytest.raises(InputError, match=rf"model is {size} bytes, more than model\.max_bytes \({size - 1}\)"):
        pipeline.run_tuning(too_small)


def test_model_max_bytes_bounds_the_hashed_file_and_the_loaded_model_with_its_external_data(tmp_path) -> None:
    model = mlp(tmp_path / "mlp.onnx", batch=1)
    size = model.stat().st_size
    unhashed = _config(tmp_path, model={"path": str(model), "url": None, "sha256": None, "max_bytes": size - 1})
    with pytest.raises(InputError, match=rf"^{re.escape(str(model))}: model file is larger than model\.max_bytes "
                                         rf"\({size - 1} bytes\)$"):
        pipeline.run_tuning(unhashed)
    external = tmp_path / "external" / "mlp.onnx"
    external.parent.mkdir()
    onnx.save_model(onnx.load(str(model)), str(external), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    total = external.stat().st_size + (external.parent / "weights.bin").stat().st_size
    with_data = _config(tmp_path, model={"path": str(external), "url": None, "sha256": None, "max_bytes": total - 1})
    with pytest.raises(InputError, match=rf"^{re.escape(str(external))}: model with its external data is {total} bytes"):
        pipeline.run_tuning(with_data)


def test_a_model_that_is_no_classifier_is_refused_naming_its_file(tmp_path) -> None:
    model = onnx.load(str(mlp(tmp_path / "mlp.onnx", batch=1)))
    model.graph.output[0].type.tensor_type.shape.dim.add().dim_value = 1  # [1, 10, 1]: not [batch, classes]
    onnx.save(model, str(tmp_path / "mlp.onnx"))
    config = load_config(write_config(tmp_path / "config.yaml", {
        "model": {"path": str(tmp_path / "mlp.onnx"), "url": None, "sha256": None},
        "dataset": {"name": "MNIST", "root": str(ROOT / "data")},
        "output": {"model": str(tmp_path / "out" / "int8.onnx"), "dir": str(tmp_path / "out" / "run")},
        "benchmark": {"reference_models": []},
    }))
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'mlp.onnx'))}: output 'logits' must be \[batch, classes\]"):
        pipeline.run_tuning(config)


def test_the_evaluator_scores_the_configured_split(tmp_path, monkeypatch) -> None:
    given: list[AccuracyEvaluator] = []
    monkeypatch.setattr(pipeline, "quantize", lambda model, calibration, evaluate, config, workspace: given.append(evaluate))
    progress: list[str] = []
    pipeline.run_tuning(_config(tmp_path, evaluation={"split": "train"}), progress=progress.append)
    train = evaluation_images(DatasetSection(root=ROOT / "data"), Split.TRAIN, (1, 28, 28))
    assert np.array_equal(given[0].data.labels, train.labels)
    assert progress[-1].startswith(f"tune: quantizing with INC, objective accuracy: {CALIBRATION} calibration images, "
                                   "each candidate evaluated on 60,000 images")


def test_a_model_with_another_number_of_classes_is_refused_naming_its_file(tmp_path) -> None:
    model = mlp(tmp_path / "five.onnx", classes=5, batch=1)
    config = _config(tmp_path, model={"path": str(model), "url": None, "sha256": None})
    with pytest.raises(InputError, match=rf"^{re.escape(str(model))}: output 'logits' declares 5 classes, but the "
                                         "dataset has 10"):
        pipeline.run_tuning(config)


def test_a_batch_copy_that_cannot_be_made_is_refused_naming_the_file(tmp_path) -> None:
    """The MLP flattening with ``Reshape(pixels, [1, -1])``: its fixed batch cannot become -1 beside another -1."""
    path = tmp_path / "reshaped.onnx"
    model = onnx.load(str(mlp(path, batch=1)))
    model.graph.node[0].CopyFrom(helper.make_node("Reshape", ["pixels", "flat_shape"], ["flat"], name="flatten"))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    onnx.save(model, str(path))
    config = _config(tmp_path, model={"path": str(path), "url": None, "sha256": None})
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: Reshape 'flatten' has shape \[1, -1\]"):
        pipeline.run_tuning(config)
