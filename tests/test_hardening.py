"""Hostile or broken inputs and failing runs: each gives one error line and its documented exit code."""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, project_config
from onnx import TensorProto, helper
from test_cli import assert_one_line_error, run_tuning_sh

from tuning.config.enums import Split
from tuning.config.loading import load_config
from tuning.config.schema import DatasetSection, ModelSection
from tuning.data.datasets import evaluation_images, load_pixels
from tuning.data.idx import CONTENT_SHA256
from tuning.errors import ConfigError, InputError, OutputError
from tuning.files.onnx_io import describe, load_model, save_model
from tuning.pipeline import run_tuning

MODEL = ROOT / "models" / "mnist-12.onnx"
RAW = ROOT / "data" / "MNIST" / "raw"


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def tiny_model(input_shape: list[int], elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A valid classifier-shaped graph: Flatten of the input is the [batch, classes] output."""
    classes = int(np.prod(input_shape[1:]))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", elem_type, input_shape)],
        [helper.make_tensor_value_info("y", elem_type, [input_shape[0], classes])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def external_data_model(location: str) -> onnx.ModelProto:
    """Add(x, w) whose initializer w lives in external data at ``location``."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


# --- model -------------------------------------------------------------------------------------------


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model file not found") as exc:
        load_model(tmp_path / "absent.onnx")
    assert exc.value.exit_code == 3 and "absent.onnx" in one_line(exc)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(np.random.default_rng(0).bytes(4096), id="random-bytes"),
        pytest.param(MODEL.read_bytes()[: len(MODEL.read_bytes()) // 2], id="truncated"),
        pytest.param(b"model:\n  path: models/mnist-12.onnx\nthis is a text file\n", id="text-file"),
        pytest.param(b"", id="empty"),
    ],
)
def test_not_an_onnx_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a valid ONNX model") as exc:
        load_model(path)
    assert str(path) in one_line(exc)


def test_integer_input_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "int64.onnx"
    onnx.save(tiny_model([1, 1, 28, 28], TensorProto.INT64), str(path))
    with pytest.raises(InputError, match="input 'x' must be FLOAT, got INT64") as exc:
        describe(load_model(path), path)
    assert str(path) in one_line(exc)


@pytest.mark.fast
def test_input_shape_that_does_not_fit_the_dataset(tmp_path: Path) -> None:
    path = tmp_path / "cifar-shaped.onnx"
    onnx.save(tiny_model([1, 3, 32, 32]), str(path))
    spec = describe(load_model(path), path)
    with pytest.raises(InputError, match=r"\[3, 32, 32\].*MNIST images \[28, 28\]") as exc:
        evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, spec.sample_shape)
    one_line(exc)


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_external_data_outside_the_model_folder_is_never_read(tmp_path, monkeypatch, location) -> None:
    (tmp_path / "secret.bin").write_bytes(bytes(16))
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    path.write_bytes(external_data_model(location).SerializeToString())

    def must_not_load(*_args: object) -> None:
        raise AssertionError("external data was read before its location was checked")

    monkeypatch.setattr(onnx.external_data_helper, "load_external_data_for_model", must_not_load)
    with pytest.raises(InputError, match="outside the model's folder") as exc:
        load_model(path)
    assert "'w'" in one_line(exc) and location in one_line(exc)


def test_external_data_inside_the_model_folder_loads(tmp_path: Path) -> None:
    np.arange(4, dtype=np.float32).tofile(tmp_path / "weights.bin")
    path = tmp_path / "model.onnx"
    path.write_bytes(external_data_model("weights.bin").SerializeToString())
    model = load_model(path)
    assert list(onnx.numpy_helper.to_array(model.graph.initializer[0]).ravel()) == [0.0, 1.0, 2.0, 3.0]


def test_missing_external_data_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(external_data_model("gone.bin").SerializeToString())
    with pytest.raises(InputError, match="external data file 'gone.bin'"):
        load_model(path)


def test_model_larger_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch) -> None:
    def must_not_parse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model was read although it is over the limit")

    monkeypatch.setattr(onnx, "load_model", must_not_parse)
    with pytest.raises(InputError, match=r"more than model.max_bytes \(1000\)") as exc:
        load_model(MODEL, max_bytes=1000)
    assert str(MODEL) in one_line(exc)


def test_external_data_counts_towards_the_limit(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(bytes(100_000))
    path = tmp_path / "model.onnx"
    path.write_bytes(external_data_model("weights.bin").SerializeToString())
    with pytest.raises(InputError, match="with its external data"):
        load_model(path, max_bytes=50_000)


@pytest.mark.fast
def test_max_bytes_default_and_validation() -> None:
    assert ModelSection().max_bytes == 256 * 1024 * 1024
    assert load_config(None, {"model.max_bytes": 1000}).model.max_bytes == 1000
    with pytest.raises(ConfigError, match="model.max_bytes"):
        load_config(None, {"model.max_bytes": 0})


def test_cli_random_bytes_model_is_exit_code_3(tmp_path: Path) -> None:
    # The shipped config's mnist-12 checksum does not apply to the user's own file: it is read, and refused
    # for what it is, not for its checksum; it is never advised to be deleted, and it is still there.
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(1).bytes(2048))
    result = run_tuning_sh(f"--input_model={junk}", "--set", f"output.dir={tmp_path}")
    assert_one_line_error(result, 3, str(junk), "not a valid ONNX model")
    assert "sha256" not in result.stderr and "delete" not in result.stderr


def test_cli_input_sha256_checks_the_users_file_without_advising_to_delete_it(tmp_path: Path) -> None:
    own = tmp_path / "own.onnx"
    own.write_bytes(MODEL.read_bytes() + b"")  # a copy: not the configured path, so no configured checksum
    result = run_tuning_sh(f"--input_model={own}", f"--input_sha256={'0' * 64}", "--set", f"output.dir={tmp_path}")
    assert_one_line_error(result, 3, str(own), "sha256 mismatch", "--input_sha256")
    assert "delete" not in result.stderr and own.read_bytes() == MODEL.read_bytes()


# --- data --------------------------------------------------------------------------------------------


@pytest.fixture
def raw_copy(tmp_path: Path) -> Path:
    """The MNIST .gz files (not their extracted copies) in a tmp dataset.root."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in RAW.glob("*.gz"):
        (raw / archive.name).write_bytes(archive.read_bytes())
    return raw


def replace_raw_file(monkeypatch, raw: Path, name: str, content: bytes) -> None:
    """Write ``content`` gzipped as ``name``.gz and make the known content checksum accept it, as if genuine."""
    (raw / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
    monkeypatch.setitem(CONTENT_SHA256["MNIST"], name, hashlib.sha256(content).hexdigest())


@pytest.mark.fast
@pytest.mark.parametrize(
    "archive",
    [b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + b"\x00garbage" * 50, b"plain text, not gzip\n"],
    ids=["corrupt-gzip", "not-gzip"],
)
def test_an_archive_that_does_not_decompress_is_input_error(raw_copy, archive) -> None:
    (raw_copy / "t10k-labels-idx1-ubyte.gz").write_bytes(archive)
    with pytest.raises(InputError, match="t10k-labels-idx1-ubyte.gz: cannot decompress") as exc:
        load_pixels(DatasetSection(root=raw_copy.parent.parent), Split.TEST)
    one_line(exc)
    assert sorted(path.name for path in raw_copy.iterdir()) == sorted(path.name for path in RAW.glob("*.gz"))


@pytest.mark.fast
def test_image_and_label_counts_that_disagree(raw_copy, monkeypatch) -> None:
    labels = np.zeros(9999, dtype=np.uint8)
    content = (0x0801).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.tobytes()
    replace_raw_file(monkeypatch, raw_copy, "t10k-labels-idx1-ubyte", content)
    with pytest.raises(InputError, match="10000 images, but t10k-labels-idx1-ubyte.gz has 9999 labels") as exc:
        load_pixels(DatasetSection(root=raw_copy.parent.parent), Split.TEST)
    one_line(exc)


@pytest.mark.fast
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00" * 16, "IDX magic number 0x00000000, expected 0x00000801"),
        ((0x0801).to_bytes(4, "big") + (10000).to_bytes(4, "big") + b"\x01" * 9999, "the file holds 10007"),
        ((0x0801).to_bytes(4, "big") + (10000).to_bytes(4, "big") + b"\x0a" * 10000, "label 10 is out of range"),
        (b"\x00\x00", "too short for an IDX labels header"),
    ],
    ids=["magic", "size", "label-range", "short"],
)
def test_malformed_idx_content_is_input_error(raw_copy, monkeypatch, content, problem) -> None:
    replace_raw_file(monkeypatch, raw_copy, "t10k-labels-idx1-ubyte", content)
    with pytest.raises(InputError, match=problem) as exc:
        load_pixels(DatasetSection(root=raw_copy.parent.parent), Split.TEST)
    assert one_line(exc).startswith(str(raw_copy / "t10k-labels-idx1-ubyte.gz"))


@pytest.mark.fast
def test_missing_dataset_root_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset.root: folder .*absent not found") as exc:
        load_pixels(DatasetSection(root=tmp_path / "absent"), Split.TEST)
    one_line(exc)


# --- config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"calibration.sampling_size": 500}, "calibration.sampling_size"),
        ({"calibration.seed": 3}, "calibration.seed"),
        ({"calibration.batch_size": 8}, "calibration.batch_size"),
        ({"quantization.calibration_algorithm": "kl"}, "quantization.calibration_algorithm"),
    ],
)
@pytest.mark.fast
def test_dynamic_with_calibration_settings_is_a_contradiction(overrides, key) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, {"quantization.approach": "dynamic", **overrides})
    assert "quantization.approach: dynamic" in one_line(exc) and key in one_line(exc)


@pytest.mark.fast
def test_dynamic_with_default_calibration_is_fine(tmp_path: Path) -> None:
    config = tmp_path / "dynamic.yaml"
    config.write_text("quantization:\n  approach: dynamic\ncalibration:\n  seed: 0\n")
    assert load_config(config).quantization.approach.value == "dynamic"


# --- runs --------------------------------------------------------------------------------------------


def tune_command(output: Path, run_dir: Path) -> list[str]:
    # Objective accuracy: what these tests check (signals, concurrent writers) does not depend on the
    # objective, and INC's accuracy loop is several times shorter than the latency grid.
    return [
        sys.executable, "-m", "tuning", "tune", "--config", str(ROOT / "configs" / "mnist.yaml"),
        f"--output_model={output}", "--set", f"output.dir={run_dir}", "--set", "tuning.objective=accuracy",
    ]  # fmt: skip


def test_sigterm_during_tuning_exits_130_and_keeps_the_old_output(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    output.write_bytes(b"previous model")
    log = tmp_path / "run" / "nc_workspace" / "inc.log"
    process = subprocess.Popen(
        tune_command(output, tmp_path / "run"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.stat().st_size > 0) and process.poll() is None:
        assert time.monotonic() < deadline, "INC never started logging"
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    assert_one_line_error(result, 130, "interrupted")
    assert output.read_bytes() == b"previous model"
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.glob(".model.onnx.*"))


def test_unwritable_output_is_exit_code_5(tmp_path: Path) -> None:
    # Tests run as root, where chmod 0o555 does not stop writes; a path under a regular file always fails.
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    result = run_tuning_sh(f"--output_model={blocker / 'model.onnx'}", "--set", f"output.dir={tmp_path / 'run'}")
    assert_one_line_error(result, 5, str(blocker), "cannot create output folder")
    assert blocker.read_text() == "not a folder"


_FULL_DISK_CHILD = """
import sys
import onnx
from tuning.errors import PipelineError
from tuning.files.onnx_io import save_model
try:
    save_model(onnx.load(sys.argv[1]), sys.argv[2], {"note": "x"})
except PipelineError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def test_full_disk_while_writing_the_model_is_exit_code_5(tmp_path: Path) -> None:
    import resource

    def small_file_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    output = tmp_path / "model.onnx"
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(MODEL), str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=small_file_limit,
    )  # fmt: skip
    assert_one_line_error(result, 5, str(output), "cannot write output", "too large")
    assert os.listdir(tmp_path) == []


@pytest.mark.fast
def test_save_into_a_path_under_a_file_is_output_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError) as exc:
        save_model(onnx.load(str(MODEL)), tmp_path / "afile" / "model.onnx", {})
    assert exc.value.exit_code == 5 and "afile" in one_line(exc)


def test_two_concurrent_runs_writing_one_output(tmp_path: Path) -> None:
    # Issue 22: the last writer no longer wins silently; the second run stops at once, naming the first.
    output = tmp_path / "shared.onnx"
    processes = [
        subprocess.Popen(tune_command(output, tmp_path / f"run{i}"), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    results = {process.pid: (process.communicate(timeout=600)[1], process.returncode) for process in processes}
    assert sorted(code for _, code in results.values()) == [0, 5], results
    (winner,) = [pid for pid, (_, code) in results.items() if code == 0]
    (refused,) = [stderr for stderr, code in results.values() if code == 5]
    assert refused.strip().splitlines()[-1] == (
        f"error: {output}: another run (pid {winner}) is writing this output; wait for it to end, or choose "
        "another output"
    )
    onnx.checker.check_model(onnx.load(str(output)))
    single = project_config(tmp_path / "single", **{"tuning.objective": "accuracy"})
    run_tuning(single)
    assert output.read_bytes() == single.output.model.read_bytes()
    assert not list(tmp_path.glob(".shared.onnx.*"))


def test_foreign_metadata_is_read_as_text() -> None:
    from tuning.files.onnx_io import declared_preprocessing, read_metadata

    model = onnx.load(str(MODEL))
    model.metadata_props.add(key="tuning.note", value="written by another tool")
    model.metadata_props.add(key="tuning.preprocessing.pixel_scale", value="unit")
    model.metadata_props.add(key="tuning.preprocessing.mean", value="not a number")
    assert read_metadata(model)["note"] == "written by another tool"
    assert declared_preprocessing(model) == {"pixel_scale": "unit", "mean": "not a number", "std": None}


def test_batch_the_model_refuses_is_input_error() -> None:
    # mnist-12's batch dimension is fixed at 1: a batch of 4 must be a one-line error, not onnxruntime's traceback.
    from tuning.measure.evaluate import predict
    from tuning.measure.runtimes import open_runner

    dataset = DatasetSection(root=ROOT / "data")
    test_set = evaluation_images(dataset, Split.TEST, (1, 28, 28))
    with pytest.raises(InputError, match="cannot run the model on a batch of 4 images") as caught:
        predict(open_runner(MODEL), test_set, batch_size=4)
    assert "\n" not in str(caught.value)
