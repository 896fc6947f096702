"""The CLI's conventions as a user's tools meet them (docs/cli.md): program name, --version,
--quiet/--verbose, environment variables, INC-example flags, --json validated against the
documented JSON Schema, GitHub annotations, and the first progress line of tune.

Every run is a real subprocess of the installed console script or of ``python -m tuning``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import onnx
import pytest
from conftest import ROOT
from onnx import TensorProto, helper, numpy_helper

CONSOLE_SCRIPT = Path(sys.executable).parent / "mnist-tuning"
PROGRAMS = {"mnist-tuning": [str(CONSOLE_SCRIPT)], "python -m tuning": [sys.executable, "-m", "tuning"]}
COMMANDS = ("tune", "fetch", "benchmark", "report", "gate")
CONFIG = ROOT / "configs" / "mnist.yaml"
DATA = ROOT / "data"


def run(
    *args: str, program: str = "mnist-tuning", env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: int = 300
) -> subprocess.CompletedProcess:
    # The caller's own MNIST_TUNING_* or GITHUB_ACTIONS must not leak into the run under test.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_TUNING_") and k != "GITHUB_ACTIONS"}
    return subprocess.run(
        [*PROGRAMS[program], *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def documented_schema() -> dict[str, Any]:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    block = re.search(r"## JSON Schema.*?```json\n(.*?)```", text, re.DOTALL)
    assert block, "docs/cli.md has no JSON Schema block"
    schema = json.loads(block.group(1))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def parse_document(result: subprocess.CompletedProcess) -> dict[str, Any]:
    """The whole of stdout is one JSON document that follows the documented schema."""
    document = json.loads(result.stdout)
    jsonschema.validate(document, documented_schema(), cls=jsonschema.Draft202012Validator)
    return document


# --- program name, version, help ---------------------------------------------------------------


def _version_or_absent(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@pytest.mark.parametrize("program", PROGRAMS)
def test_version_names_the_program_and_the_libraries(program: str) -> None:
    result = run("--version", program=program, cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    version = importlib.metadata.version
    python = ".".join(map(str, sys.version_info[:3]))
    first, cpu = result.stdout.splitlines()
    assert first == (
        f"{program} {version('mnist-int8-tuning')} (neural-compressor {version('neural-compressor')}, "
        f"onnxruntime {version('onnxruntime')}, onnx {version('onnx')}, openvino {_version_or_absent('openvino')}, "
        f"Python {python})"
    )
    # The CPU class every speed figure depends on, read from /proc/cpuinfo here a second way.
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    vnni = "yes" if {"avx512_vnni", "avx_vnni"} & set(flags) else "no"
    assert cpu.startswith("CPU: ") and f"AVX2 {'yes' if 'avx2' in flags else 'no'}" in cpu and f"VNNI {vnni}" in cpu


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_usage_line_names_the_program_and_every_command_takes_quiet_and_verbose(program: str) -> None:
    for command in COMMANDS:
        result = run(command, "--help", program=program)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"Usage: {program} {command} [OPTIONS]"), result.stdout[:80]
        for option in ("-q, --quiet", "-v, --verbose", "MNIST_TUNING_CONFIG", "MNIST_TUNING_QUIET"):
            assert option in result.stdout, f"{command} --help lacks {option}"
    assert "MNIST_TUNING_<COMMAND>_<FLAG>" in run("--help", program=program).stdout


def test_tune_help_lists_the_vocabulary_with_the_key_each_flag_sets() -> None:
    # INC's spellings (--input_model, --dataset_location, ...) are hidden aliases: tests/test_cli_reference.py.
    text = run("tune", "--help").stdout.split("Options:")[1]
    for flag, key in (
        ("-m, --model", "model.path"),
        ("-o, --output-model", "output.model"),
        ("--run-dir", "output.dir"),
        ("--dataset-location", "dataset.root"),
        ("--quant-format", "quantization.format"),
        ("--batch-size", "calibration.batch_size"),
    ):
        line = re.search(rf"^  {re.escape(flag)}\b(.*?)(?=^  -)", text, re.DOTALL | re.MULTILINE)
        assert line and key in line.group(1), flag


def test_quiet_and_verbose_exclude_each_other() -> None:
    result = run("gate", "--verbose", env={"MNIST_TUNING_QUIET": "1"})
    assert result.returncode == 2
    assert "--quiet and --verbose exclude each other" in result.stderr


def test_the_config_comes_from_the_environment(tmp_path: Path) -> None:
    bad = tmp_path / "from-env.yaml"
    bad.write_text("gates:\n  max_int8_top1_eror_pct: 1\n")
    result = run("gate", str(tmp_path / "absent.json"), env={"MNIST_TUNING_CONFIG": str(bad)})
    assert result.returncode == 2, result.stderr
    assert "max_int8_top1_eror_pct" in result.stderr
    # A flag on the command line wins over the variable.
    result = run("gate", str(tmp_path / "absent.json"), "--config", str(CONFIG), env={"MNIST_TUNING_CONFIG": str(bad)})
    assert result.returncode == 3 and "absent.json" in result.stderr


# --- benchmark --json on a model this project has never seen -----------------------------------


def _idx(name: str, offset: int) -> np.ndarray:
    with gzip.open(DATA / "MNIST" / "raw" / name) as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A linear classifier (Flatten -> Gemm) with other input/output names and a dynamic batch,
    weights fitted to the mean image of each class so that it beats chance by far."""
    pixels = _idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32)[:6000] / 255.0
    labels = _idx("train-labels-idx1-ubyte.gz", 8)[:6000]
    weights = np.stack([pixels[labels == k].mean(axis=0) for k in range(10)]).astype(np.float32)
    bias = (-0.5 * (weights**2).sum(axis=1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["scores"], transB=1),
        ],
        "nearest_mean",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 1, 28, 28])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("linear") / "nearest-mean.onnx"
    onnx.save(model, str(path))
    return path, weights, bias


def test_benchmark_json_accuracy_matches_an_independent_computation(
    linear_model: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path, weights, bias = linear_model
    result = run(
        "benchmark", "--json", "--mode=accuracy", "--batch_size=7", f"--input_model={path}",
        f"--config={CONFIG}", f"--dataset_location={DATA}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = parse_document(result)
    images = _idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255.0
    labels = _idx("t10k-labels-idx1-ubyte.gz", 8)
    expected = float(np.mean((images @ weights.T + bias).argmax(axis=1) == labels))
    assert 0.5 < expected < 1
    assert document["top1_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert document["model"] == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert (document["mode"], document["batch_size"]) == ("accuracy", 7)
    assert document["latency_ms_per_image"] is None and document["batch_time_ms"] is None
    assert document["versions"]["onnxruntime"] == importlib.metadata.version("onnxruntime")
    # The human lines moved to stderr, unchanged.
    assert f"Accuracy: {expected:.5f}" in result.stderr and "Batch size = 7" in result.stderr


def test_benchmark_json_performance_numbers_are_consistent(
    linear_model: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path, _, _ = linear_model
    result = run(
        "benchmark", "--json", "--batch_size=8", f"--input_model={path}", f"--config={CONFIG}",
        f"--dataset_location={DATA}", "--set", "benchmark.warmup=16", "--set", "benchmark.iterations=160",
        "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = parse_document(result)
    timing = document["batch_time_ms"]
    assert document["top1_accuracy"] is None
    assert document["throughput_images_per_s"] == pytest.approx(8 * 1000 / timing["p50"])
    assert document["latency_ms_per_image"] == pytest.approx(timing["p50"] / 8)
    assert timing["p50"] <= timing["p90"] <= timing["p99"]
    assert timing["timed_batches"] >= 1
    # --quiet drops the progress and the conditions, not the results.
    assert "Throughput:" in result.stderr and "Conditions:" not in result.stderr and "benchmark:" not in result.stderr


# --- gate --json, annotations, environment -----------------------------------------------------


@pytest.fixture(scope="module")
def zoo_report(zoo_accuracy_report: Path) -> Path:
    """A real report (accuracy only) with the zoo's int8 model as the int8 model: 54 % top-1 on [0, 1] pixels."""
    return zoo_accuracy_report / "report.json"


def test_gate_json_reports_the_failed_check_and_exits_1(zoo_report: Path) -> None:
    result = run("gate", str(zoo_report), f"--config={CONFIG}", "--json")
    assert result.returncode == 1, result.stderr
    document = parse_document(result)
    report = json.loads(zoo_report.read_text())
    int8_error_pct = 100 * next(m for m in report["models"] if m["role"] == "int8")["accuracy"]["top1_error"]
    checks = {check["name"]: check for check in document["checks"]}
    assert document["passed"] is False and document["report"] == str(zoo_report)
    assert checks["int8 top-1 error"]["status"] == "FAIL"
    assert checks["int8 top-1 error"]["measured"] == pytest.approx(int8_error_pct)
    assert int8_error_pct > 40
    assert "error: gate FAILED" in result.stderr and "FAIL int8 top-1 error" in result.stderr
    assert "::error" not in result.stderr  # not under GitHub Actions


def test_gate_prints_github_annotations_under_github_actions(zoo_report: Path) -> None:
    result = run("gate", str(zoo_report), f"--config={CONFIG}", env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(annotations) >= len(failed) >= 1
    assert annotations[0].startswith("::error title=gate%3A int8 top-1 error::")
    # With --json the annotations go to stderr and stdout stays one document.
    result = run("gate", str(zoo_report), f"--config={CONFIG}", "--json", env={"GITHUB_ACTIONS": "true"})
    assert parse_document(result)["passed"] is False
    assert "::error title=gate%3A int8 top-1 error::" in result.stderr


def test_gate_thresholds_from_the_environment_and_quiet_output(zoo_report: Path) -> None:
    env = {"MNIST_TUNING_GATE_MAX_INT8_TOP1_ERROR_PCT": "60", "MNIST_TUNING_GATE_MAX_ACCURACY_DROP_PP": "50"}
    # The zoo report has no timings; the shipped config's speed checks are skipped, not failed, for it.
    no_speed = ("--set", "gates.fail_on_missing_performance=false")
    result = run("gate", str(zoo_report), f"--config={CONFIG}", *no_speed, "--json", env=env)
    assert result.returncode == 0, result.stderr
    document = parse_document(result)
    checks = {check["name"]: check for check in document["checks"]}
    assert document["passed"] is True
    assert checks["int8 top-1 error"]["threshold"] == 60 and checks["accuracy drop vs float"]["threshold"] == 50
    quiet = run("gate", str(zoo_report), f"--config={CONFIG}", *no_speed, env={**env, "MNIST_TUNING_QUIET": "1"})
    assert quiet.returncode == 0
    assert not any(line.startswith("PASS ") for line in quiet.stdout.splitlines())
    assert quiet.stdout.splitlines()[-1].startswith("gate: passed")


# --- tune: the first line, the INC-example flags ------------------------------------------------


def test_tune_says_what_it_loads_before_importing_inc_and_takes_inc_flags(
    linear_model: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    output = tmp_path / "qdq.onnx"
    result = subprocess.run(
        [
            sys.executable, "-X", "importtime", "-m", "tuning", "tune", f"--config={CONFIG}",
            f"--input_model={linear_model[0]}", f"--output_model={output}", "--set", "model.sha256=null",
            f"--dataset_location={DATA}", "--quant_format=QDQ", "--batch_size=16",
            "--set", "tuning.objective=accuracy", "--set", "tuning.max_trials=1",
            "--set", "calibration.sampling_size=32", "--set", f"output.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    loading = next(i for i, line in enumerate(lines) if line.startswith("tune: loading Intel Neural Compressor"))
    inc_import = next(i for i, line in enumerate(lines) if re.search(r"\|\s+neural_compressor$", line))
    assert loading < inc_import
    progress = [line for line in lines if line.startswith("tune: ")]
    assert any(str(DATA) in line for line in progress), progress  # --dataset_location reached dataset.root
    op_types = {node.op_type for node in onnx.load(str(output)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types and "QGemm" not in op_types
    bad = run("tune", "--batch_size=0", f"--config={CONFIG}")
    assert bad.returncode == 2 and "--batch_size" in bad.stderr
