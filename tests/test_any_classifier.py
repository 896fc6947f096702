"""Any float ONNX classifier on a 28x28 IDX dataset, with a YAML only: tune, report and gate end to end.

Three classifiers this project has never seen (tests/torch_models.py: a LeNet-style CNN with two convs and
two Gemms, a one-hidden-layer MLP, a CNN with its BatchNorms folded), trained here, named ``pixels`` ->
``class_scores`` with a dynamic batch, on MNIST and on FashionMNIST from re-gzipped files. Each runs through
the commands a user runs, from a folder that is not the project's, and what the README promises is checked
on the files they produce, read independently of the pipeline (numpy, onnx, onnxruntime). The commands run in
this process (``run_cli_in_process``), except the LeNet's tuning (``run_tuning.sh``) and the console-script test,
which start every command as a user does.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import ROOT, run_cli_in_process, write_config

TOLERANCE = 0.02  # relative accuracy loss the configs allow
# Objective latency with a small grid and a short measurement: the pipeline's promises, not its speed, are tested.
TUNING = {
    "objective": "latency",
    "max_trials": 3,
    "accuracy_criterion": {"kind": "relative", "tolerance": TOLERANCE},
    "latency": {"warmup": 5, "iterations": 50, "rounds": 2},
}
# architecture, dataset, what the config keeps in fp32, the compute nodes that must then compute in fp32
CASES = [
    ("lenet", "MNIST", {"fp32_op_types": ["Gemm"]}, {"/fc1/Gemm", "/fc2/Gemm"}),
    ("mlp", "MNIST", {"fp32_op_names": ["/3/Gemm"]}, {"/3/Gemm"}),
    ("bn-cnn", "FashionMNIST", {"fp32_op_names": ["/conv1/Conv"]}, {"/conv1/Conv"}),
]


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=600)


def tuning_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m tuning ARGS`` in this process: the console-script test below runs each command in its own."""
    return run_cli_in_process(*args, cwd=cwd)


def idx_test_split(root: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The test split straight from the IDX files (unit pixels, NCHW), independent of tuning/data/datasets.py."""
    raw = root / dataset / "raw"
    images = np.frombuffer(gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8)
    return images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0, labels.astype(np.int64)


def top1(model: Path, images: np.ndarray, labels: np.ndarray) -> float:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predictions = np.concatenate([session.run(None, {name: images[i : i + 1000]})[0] for i in range(0, len(images), 1000)])
    return float(np.mean(predictions.argmax(axis=1) == labels))


def fp32_compute_nodes(source: Path, quantized: Path) -> set[str]:
    """Conv/Gemm nodes of ``source`` whose product reads a float32 weight in ``quantized`` (a Gemm is
    ``<name>_MatMul`` there): the ones that compute in fp32, read from the graph alone."""
    graph = onnx.load(str(quantized)).graph
    floats = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    in_fp32 = {
        node.name.removesuffix("_MatMul")
        for node in graph.node
        if node.op_type in ("Conv", "MatMul", "Gemm") and node.input[1] in floats
    }
    compute = {node.name for node in onnx.load(str(source)).graph.node if node.op_type in ("Conv", "Gemm")}
    return compute & in_fp32


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder (models/, data/, configs/) and an empty folder the commands run from."""
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "project"


@pytest.mark.parametrize(("architecture", "dataset", "kept", "expected_fp32"), CASES, ids=[c[0] for c in CASES])
def test_a_yaml_is_all_a_new_classifier_needs(
    architecture, dataset, kept, expected_fp32, project, torch_model, dataset_roots
):
    model = project / "models" / f"{architecture}.onnx"
    model.parent.mkdir(parents=True)
    shutil.copy(torch_model(architecture, dataset), model)
    (project / "data").symlink_to(dataset_roots[dataset], target_is_directory=True)
    # Paths relative to the config's folder; no output paths: they go beside the model.
    config = write_config(
        project / "configs" / f"{architecture}.yaml",
        {
            "model": {"path": f"../models/{architecture}.onnx"},
            "dataset": {"name": dataset, "root": "../data"},
            "calibration": {"batch_size": 10},
            "evaluation": {"batch_size": 1000},
            "quantization": kept,
            "tuning": TUNING,
            "benchmark": {"batch_sizes": [64]},
        },
    )
    elsewhere = project.parent / "elsewhere"

    if architecture == "lenet":  # once through the README's command in its own process; in this one otherwise
        tuned = run("bash", ROOT / "run_tuning.sh", f"--config={config}", cwd=elsewhere)
    else:
        tuned = tuning_cli("tune", f"--config={config}", cwd=elsewhere)
    assert tuned.returncode == 0, tuned.stderr
    int8 = project / "models" / f"{architecture}-int8.onnx"
    run_dir = project / "models" / f"{architecture}-int8-run"
    summary = json.loads((run_dir / "tuning_summary.json").read_text())

    # The accuracy criterion, measured here on the test split.
    images, labels = idx_test_split(dataset_roots[dataset], dataset)
    fp32_accuracy, int8_accuracy = top1(model, images, labels), top1(int8, images, labels)
    assert fp32_accuracy > 0.7, "the trained model must be far above chance for the test to mean anything"
    assert (fp32_accuracy - int8_accuracy) / fp32_accuracy <= TOLERANCE
    assert summary["int8_top1_accuracy"] == pytest.approx(int8_accuracy, abs=1e-4)
    assert summary["fp32_top1_accuracy"] == pytest.approx(fp32_accuracy, abs=1e-4)

    # The fp32 nodes the config asked for compute in fp32 in the emitted graph; the labels say what it holds.
    in_fp32 = fp32_compute_nodes(model, int8)
    assert expected_fp32 <= in_fp32
    assert len(in_fp32) < len(fp32_compute_nodes(model, model))  # something is int8
    chosen = summary["trials"][summary["chosen_trial"]]
    assert set(chosen["fp32_compute_nodes"]) == in_fp32
    label = re.search(r"^Chosen: trial \d+ \((.*?)\): ", tuned.stdout, re.M).group(1)
    assert label.endswith("fp32: " + ", ".join(sorted(in_fp32, key=chosen["fp32_compute_nodes"].index)))
    for trial in summary["trials"][1:]:
        assert set(trial["fp32_fallback"]) | expected_fp32 <= set(trial["fp32_compute_nodes"])

    reported = tuning_cli("report", f"--config={config}", "--skip-performance", cwd=elsewhere)
    assert reported.returncode == 0, reported.stderr
    report = json.loads((run_dir / "report" / "report.json").read_text())
    names = report["evaluation"]["class_names"]
    assert len(names) == 10 and (dataset != "FashionMNIST" or names[9] == "Ankle boot")
    if dataset == "FashionMNIST":
        assert "9 Ankle boot" in (run_dir / "report" / "report.md").read_text()

    gated = tuning_cli("gate", f"--config={config}", cwd=elsewhere)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "PASS accuracy drop vs float" in gated.stdout and "int8 top-1 error" not in gated.stdout

    if architecture == "lenet":  # once is enough: a model made for other preprocessing says so, on one line
        assert_benchmark_warns_of_other_preprocessing(config, int8, elsewhere)
    assert list(elsewhere.iterdir()) == []


def assert_benchmark_warns_of_other_preprocessing(config: Path, int8: Path, elsewhere: Path) -> None:
    other = tuning_cli(
        "benchmark", f"--config={config}", f"--input_model={int8}", "--mode=accuracy",
        "--set", "dataset.pixel_scale=raw", cwd=elsewhere,
    )
    assert other.returncode == 0, other.stderr
    warnings = [line for line in other.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "declares preprocessing" in warnings[0] and '"pixel_scale": "unit"' in warnings[0]


def test_the_installed_console_script_creates_nothing_in_the_current_folder(tmp_path, torch_model, dataset_roots):
    console_script = Path(sys.executable).parent / "mnist-tuning"
    assert console_script.is_file(), "the package's console script is installed with it"
    empty = tmp_path / "empty"
    empty.mkdir()
    model = torch_model("bn-cnn", "FashionMNIST")
    config = write_config(
        tmp_path / "fashion.yaml",
        {
            "dataset": {"name": "FashionMNIST"},
            "evaluation": {"batch_size": 1000},
            "tuning": {"objective": "accuracy", "max_trials": 3, "accuracy_criterion": TUNING["accuracy_criterion"]},
        },
    )
    output = tmp_path / "out" / "fashion-int8.onnx"
    common = [f"--config={config}", f"--dataset_location={dataset_roots['FashionMNIST']}"]
    tuned = run(console_script, "tune", *common, f"--input_model={model}", f"--output_model={output}", cwd=empty)
    assert tuned.returncode == 0, tuned.stderr
    assert output.is_file() and (tmp_path / "out" / "fashion-int8-run" / "tuning_summary.json").is_file()
    paths = [f"--float-model={model}", f"--int8-model={output}", f"--set=output.model={output}"]
    reported = run(console_script, "report", *common, *paths, "--skip-performance", cwd=empty)
    assert reported.returncode == 0, reported.stderr
    gated = run(console_script, "gate", f"--config={config}", f"--set=output.model={output}", cwd=empty)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert list(empty.iterdir()) == []
