"""OpenVINO as a second runtime: the report, the benchmark command, the gate and tuning on it.

The models are ones this project never made: a LeNet trained here (tests/torch_models.py) and two int8
versions of it quantized by onnxruntime's own quantizer, one in QDQ format (OpenVINO loads it) and one in
QOperator format with per-channel weights (OpenVINO cannot convert its QLinearConv). Every number the
report gives per runtime is checked against predictions made here with plain onnxruntime and plain
OpenVINO calls. The tests that need OpenVINO are skipped, saying why, without the `openvino` extra
(`bash scripts/setup_env.sh openvino`; .ci/run installs it).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import CONFIG, ROOT, project_config
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from test_any_classifier import idx_test_split

from tuning.cli.main import main
from tuning.config.enums import Runtime, Split
from tuning.config.schema import DatasetSection, GatesSection
from tuning.data.datasets import load_pixels
from tuning.errors import TuningError
from tuning.gate.checks import evaluate_gates
from tuning.pipeline import run_tuning, summary_lines

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="the openvino extra is not installed: bash scripts/setup_env.sh openvino",
)
RUNTIMES = ["onnxruntime", "openvino", "openvino-f32"]
EVALUATION_BATCH = 500  # configs/mnist.yaml's evaluation.batch_size: the batch the report predicts in
SMALL = [
    "--set", f"dataset.root={ROOT / 'data'}", "--set", "benchmark.warmup=5", "--set", "benchmark.iterations=40",
    "--set", "benchmark.min_time_s=0", "--set", "benchmark.rounds=2", "--set", "benchmark.batch_sizes=[1, 8]",
]  # fmt: skip


class _Images(CalibrationDataReader):
    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self.batches = iter([{input_name: images[i : i + 1]} for i in range(len(images))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _quantize_with_onnxruntime(model: Path, out: Path, quant_format: QuantFormat) -> Path:
    pixels, _ = load_pixels(DatasetSection(root=ROOT / "data"), Split.TRAIN)
    train = (pixels[:64, None] / np.float32(255)).astype(np.float32)  # the LeNet's preprocessing: unit pixels
    input_name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    quantize_static(
        str(model), str(out), _Images(train[:64], input_name), quant_format=quant_format, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def models(torch_model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    lenet = torch_model("lenet", "MNIST")
    folder = tmp_path_factory.mktemp("ort-quantized")
    return {
        "fp32": lenet,
        "int8": _quantize_with_onnxruntime(lenet, folder / "lenet-qdq.onnx", QuantFormat.QDQ),
        "qop": _quantize_with_onnxruntime(lenet, folder / "lenet-qop.onnx", QuantFormat.QOperator),
    }


@pytest.fixture(scope="module")
def report(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report")
    main(["report", "--config", str(CONFIG), *SMALL, "--set", f"benchmark.runtimes=[{', '.join(RUNTIMES)}]",
          "--set", f"output.dir={out}", "--float-model", str(models["fp32"]), "--int8-model", str(models["int8"]),
          "--reference", f"qop={models['qop']}", "--out-dir", str(out)])  # fmt: skip
    return {"json": json.loads((out / "report.json").read_text()), "md": (out / "report.md").read_text()}


def _onnxruntime_predictions(model: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: images[i : i + EVALUATION_BATCH]})[0].argmax(1) for i in range(0, len(images), EVALUATION_BATCH)]
    )


def _openvino_compiled(model: Path, runtime: str) -> Any:
    import openvino

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": 1}
    if runtime == "openvino-f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return openvino.Core().compile_model(str(model), "CPU", config)


def _openvino_predictions(model: Path, runtime: str, images: np.ndarray) -> np.ndarray:
    request = _openvino_compiled(model, runtime).create_infer_request()
    return np.concatenate(
        [request.infer({0: images[i : i + EVALUATION_BATCH]})[0].argmax(1) for i in range(0, len(images), EVALUATION_BATCH)]
    )


def _by_name(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(model for model in report["models"] if model["name"] == name)


@needs_openvino
def test_accuracy_on_every_runtime_matches_plain_onnxruntime_and_openvino(report, models) -> None:
    images, labels = idx_test_split(ROOT / "data", "MNIST")
    for name in ("fp32", "int8"):
        on_onnxruntime = _onnxruntime_predictions(models[name], images)
        model = _by_name(report["json"], name)
        assert model["accuracy"]["top1_accuracy"] == pytest.approx(np.mean(on_onnxruntime == labels), abs=1e-12)
        for runtime in RUNTIMES[1:]:
            predicted = _openvino_predictions(models[name], runtime, images)
            on = model["runtimes"][runtime]
            assert on["status"] == "ok" and on["error"] is None
            assert on["accuracy"]["top1_accuracy"] == pytest.approx(np.mean(predicted == labels), abs=1e-12)
            assert on["accuracy"]["differing_from_onnxruntime"] == int(np.sum(predicted != on_onnxruntime))
            assert on["accuracy"]["images"] == len(labels)


@needs_openvino
def test_the_precision_openvino_runs_in_is_read_back_never_silent(report, models) -> None:
    # What OpenVINO picks by itself for this CPU, asked here directly: the report must state the same.
    default = _openvino_compiled(models["fp32"], "openvino").get_property("INFERENCE_PRECISION_HINT").to_string()
    for name in ("fp32", "int8"):
        runtimes = _by_name(report["json"], name)["runtimes"]
        assert runtimes["openvino"]["conditions"]["inference_precision"] == default
        assert "INFERENCE_PRECISION_HINT" not in runtimes["openvino"]["conditions"]["requested"]
        assert runtimes["openvino-f32"]["conditions"]["inference_precision"] == "f32"
        assert runtimes["openvino-f32"]["conditions"]["requested"]["INFERENCE_PRECISION_HINT"] == "f32"
        assert {on["conditions"]["inference_num_threads"] for on in list(runtimes.values())[1:]} == {1}
    side_by_side = report["md"][report["md"].index("## Runtimes side by side") :].split("\n## ")[0]
    assert f"| fp32 | openvino | {default} (default) |" in side_by_side
    assert "| int8 | openvino-f32 | f32 (set) |" in side_by_side
    conditions = report["md"][report["md"].index("## Conditions") :].split("\n## ")[0]
    assert "- Runtime openvino: OpenVINO" in conditions and f"inference precision {default} (OpenVINO's default" in conditions


@needs_openvino
def test_a_model_openvino_cannot_convert_is_reported_naming_the_op(report) -> None:
    qop = _by_name(report["json"], "qop")
    assert qop["runtimes"]["onnxruntime"]["status"] == "ok"
    for runtime in RUNTIMES[1:]:
        on = qop["runtimes"][runtime]
        assert on["status"] == "cannot load" and on["accuracy"] is None and on["latency_ms"] is None
        assert "OpenVINO cannot load it (unsupported ops:" in on["error"] and "QLinearConv" in on["error"]
        assert "\n" not in on["error"]
    assert "| qop | openvino | cannot load |" in report["md"]


@needs_openvino
def test_every_model_and_runtime_is_timed_in_the_same_session_sets(report) -> None:
    data = report["json"]
    timed = [
        (model["name"], runtime, on)
        for model in data["models"]
        for runtime, on in model["runtimes"].items()
        if on["latency_ms"] is not None
    ]
    # The two loadable models on three runtimes; the QOperator model on onnxruntime only.
    assert sorted((name, runtime) for name, runtime, _ in timed) == sorted(
        [(name, runtime) for name in ("fp32", "int8") for runtime in RUNTIMES] + [("qop", "onnxruntime")]
    )
    # Each runtime's models take turns among themselves: within a runtime, the same number of timed batches.
    for runtime in RUNTIMES:
        on_runtime = [on for _, name, on in timed if name == runtime]
        assert len({on["latency_ms"]["samples"] for on in on_runtime}) == 1
        for batch in (0, 1):
            assert len({on["throughput"][batch]["batches"] for on in on_runtime}) == 1
    assert sorted(data["ratios_vs_onnxruntime_float"]) == sorted(RUNTIMES)
    assert data["ratios_vs_onnxruntime_float"]["onnxruntime"] == data["ratios_vs_float"]["onnxruntime"]
    assert "fp32" in data["ratios_vs_onnxruntime_float"]["openvino"]  # fp32 on OpenVINO against fp32 on onnxruntime
    assert data["ratios_vs_float"]["openvino"]["qop"]["latency_p50"] is None
    assert [entry["runtime"] for entry in data["benchmark"]["runtimes"]] == RUNTIMES
    assert all(entry["installed"] for entry in data["benchmark"]["runtimes"])


@needs_openvino
def test_the_gate_reads_accuracy_and_ratios_on_its_runtime(report) -> None:
    data = report["json"]
    fp32, int8 = (_by_name(data, name)["runtimes"]["openvino-f32"]["accuracy"]["top1_accuracy"] for name in ("fp32", "int8"))
    gates = GatesSection(runtime=Runtime.OPENVINO_F32, max_accuracy_drop_pp=100.0, max_latency_ratio=1000.0)
    drop, latency = evaluate_gates(data, gates, None)
    assert drop.measured == pytest.approx(100 * (fp32 - int8))
    assert latency.measured == data["ratios_vs_float"]["openvino-f32"]["int8"]["latency_p50"]
    assert latency.message.endswith("(p50 on openvino-f32, f32)")
    # The QOperator model as the model under test: OpenVINO cannot run it, so the gate fails, saying why.
    as_int8 = {**data, "models": [m | {"role": "int8" if m["name"] == "qop" else "reference" if m["role"] == "int8" else m["role"]}
                                  for m in data["models"]]}  # fmt: skip
    (failed,) = evaluate_gates(as_int8, gates, None)
    assert not failed.passed and "int8 model on openvino-f32: no accuracy in the report" in failed.message
    assert "QLinearConv" in failed.message


@needs_openvino
def test_benchmark_on_openvino_prints_the_conditions_and_refuses_in_one_line(models, tmp_path) -> None:
    def benchmark(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tuning", "benchmark", "--config", str(CONFIG), *SMALL, *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    refused = benchmark("--runtime", "openvino", "--input_model", str(models["qop"]))
    assert refused.returncode == 3 and refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {models['qop']}: OpenVINO cannot load it (unsupported ops:") and "QLinearConv" in line

    measured = benchmark("--runtime", "openvino-f32", "--mode", "accuracy", "--batch_size", str(EVALUATION_BATCH),
                         "--input_model", str(models["int8"]), "--json")  # fmt: skip
    assert measured.returncode == 0, measured.stderr
    document = json.loads(measured.stdout)
    images, labels = idx_test_split(ROOT / "data", "MNIST")
    expected = np.mean(_openvino_predictions(models["int8"], "openvino-f32", images) == labels)
    assert document["top1_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert document["runtime"] == "openvino-f32" and document["runtime_conditions"]["inference_precision"] == "f32"
    assert "inference precision f32 (set), 1 thread, 1 stream, performance hint" in document["conditions"]

    # More threads than the cores this process may use: OpenVINO runs fewer, and says so through a warning.
    cores = len(os.sched_getaffinity(0))
    capped = benchmark("--runtime", "openvino-f32", "--set", f"benchmark.intra_op_threads={cores + 1}",
                       "--input_model", str(models["int8"]), "--json")  # fmt: skip
    assert capped.returncode == 0, capped.stderr
    threads = json.loads(capped.stdout)["runtime_conditions"]["inference_num_threads"]
    assert threads <= cores
    assert f"warning: OpenVINO runs {threads} inference threads, not the {cores + 1} benchmark.intra_op_threads" in capped.stderr


def test_without_the_extra_openvino_is_reported_as_not_measured(models, tmp_path) -> None:
    # sys.modules["openvino"] = None makes `import openvino` fail as if the package were not installed.
    script = f"""
import sys
sys.modules["openvino"] = None
from tuning.cli.main import main
try:
    main({["report", "--config", str(CONFIG), *SMALL, "--set", "benchmark.runtimes=[onnxruntime, openvino]",
           "--float-model", str(models["fp32"]), "--int8-model", str(models["int8"]),
           "--set", "benchmark.reference_models=[]", "--out-dir", str(tmp_path / "report"), "--skip-performance"]!r})
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    (openvino,) = [entry for entry in data["benchmark"]["runtimes"] if entry["runtime"] == "openvino"]
    assert openvino["installed"] is False and "bash scripts/setup_env.sh openvino" in openvino["note"]
    assert all(list(model["runtimes"]) == ["onnxruntime"] for model in data["models"])
    # One line under the runtimes table, not a row of blanks per model in it.
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| openvino |" not in md
    assert "- openvino: not measured: OpenVINO is not installed" in md


def test_nothing_imports_openvino_unless_a_runtime_needs_it(models, tmp_path) -> None:
    script = f"""
import sys
from tuning.cli.main import main
try:
    main({["report", "--config", str(CONFIG), *SMALL, "--set", "benchmark.runtimes=[onnxruntime]",
           "--float-model", str(models["fp32"]), "--int8-model", str(models["int8"]),
           "--set", "benchmark.reference_models=[]", "--out-dir", str(tmp_path / "report")]!r})
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print(sorted(name for name in sys.modules if name.split(".")[0] == "openvino"))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@needs_openvino
def test_tuning_for_openvino_keeps_only_candidates_it_loads(tmp_path) -> None:
    config = project_config(
        tmp_path,
        **{
            "deployment.runtime": "openvino",
            "tuning.max_trials": 4,  # QDQ and QOperator, without and with the first Conv in fp32
            "tuning.latency": {"warmup": 5, "iterations": 50, "min_time_s": 0, "rounds": 2},
        },
    )
    summary = run_tuning(config)
    trials = summary.trials[1:]
    refused = [trial for trial in trials if trial.unloadable]
    assert {trial.quant_format for trial in refused} == {"QOperator"} and len(refused) == 2
    for trial in refused:
        assert "OpenVINO cannot load it" in trial.unloadable and "QLinearConv" in trial.unloadable
        assert trial.accuracy is None and trial.latency_ratio is None and not trial.chosen
    chosen = next(trial for trial in trials if trial.chosen)
    assert chosen.quant_format == "QDQ" and chosen.meets_criterion
    # Every QDQ candidate is made with its pools before their quantizers (OpenVINO's uint8 MaxPool is slow on some
    # CPUs); the written one keeps that placement only where it measured faster, and says which it wrote.
    for trial in trials:
        if trial.quant_format == "QDQ" and not trial.chosen:
            assert any(rewrite.endswith("moved before its quantizer") for rewrite in trial.rewrites), trial.rewrites
    moved = any(rewrite.endswith("moved before its quantizer") for rewrite in chosen.rewrites)
    assert ("; pools before their quantizers: " if moved else "; pools left quantized: ") in chosen.reason
    written = onnx.load(str(config.output.model))
    producers = {output: node.op_type for node in written.graph.node for output in node.output}
    pools = [node for node in written.graph.node if node.op_type == "MaxPool"]
    assert moved == all(producers.get(node.input[0]) != "DequantizeLinear" for node in pools)
    measurement = summary.latency_measurement
    assert measurement["runtime"] == "openvino"
    props = {prop.key: prop.value for prop in onnx.load(str(config.output.model)).metadata_props}
    assert props["tuning.deployment_runtime"] == "openvino" and summary.deployment_runtime == "openvino"
    assert "  top-1 error scored on onnxruntime; deployment.runtime openvino" in summary_lines(summary)
    emitted = _openvino_compiled(config.output.model, "openvino")  # the written model loads on OpenVINO
    precision = emitted.get_property("INFERENCE_PRECISION_HINT").to_string()
    assert measurement["runtime_conditions"]["inference_precision"] == precision


@needs_openvino
def test_objective_accuracy_refuses_a_model_the_deployment_runtime_cannot_load(tmp_path) -> None:
    config = project_config(
        tmp_path, **{"deployment.runtime": "openvino", "tuning.objective": "accuracy", "quantization.format": "QOperator"}
    )
    with pytest.raises(TuningError, match=r"OpenVINO cannot load it \(unsupported ops: .*QLinearConv.*nothing written"):
        run_tuning(config)
    assert not config.output.model.exists()


def _report(models: dict[str, Path], out: Path, runtimes: str, float_model: str = "fp32", *extra: str) -> dict[str, Any]:
    main(["report", "--config", str(CONFIG), *SMALL, "--set", f"benchmark.runtimes=[{runtimes}]",
          "--set", f"output.dir={out}", "--float-model", str(models[float_model]), "--int8-model", str(models["int8"]),
          "--set", "benchmark.reference_models=[]", *extra, "--out-dir", str(out)])  # fmt: skip
    return {"json": json.loads((out / "report.json").read_text()), "md": (out / "report.md").read_text()}


@needs_openvino
def test_a_report_on_openvino_alone_names_the_runtime_of_every_column(models, tmp_path) -> None:
    report = _report(models, tmp_path, "openvino-f32", "fp32", "--reference", f"qop={models['qop']}")
    summary = report["md"][report["md"].index("## Summary") :].split("\n## ")[0]
    header = next(line for line in summary.splitlines() if line.startswith("| model |"))
    # Accuracy in the summary is onnxruntime's; speed is OpenVINO's: both say so.
    assert "top-1 error (unit pixels, onnxruntime)" in header and "p50 latency (batch 1, openvino-f32)" in header
    assert re.search(r"\| qop \(reference\) \|.*\| cannot load \| cannot load \|", summary)
    # OpenVINO's own accuracy is in the side-by-side table, the only one measured on it.
    int8 = _by_name(report["json"], "int8")["runtimes"]["openvino-f32"]["accuracy"]
    side_by_side = report["md"][report["md"].index("## Runtimes side by side") :].split("\n## ")[0]
    assert f"| int8 | openvino-f32 | f32 (set) | {100 * int8['top1_error']:.2f} % |" in side_by_side
    assert "qop on openvino-f32: " in side_by_side and "QLinearConv" in side_by_side
    assert report["json"]["benchmark"]["runtimes"] == [{"runtime": "openvino-f32", "installed": True, "note": None}]


@needs_openvino
def test_an_int8_model_timed_on_a_runtime_that_cannot_load_the_float_model_is_still_reported(models, tmp_path) -> None:
    # The QOperator model as the float baseline: OpenVINO cannot load it, the QDQ int8 model it can.
    report = _report(models, tmp_path, "onnxruntime, openvino-f32", "qop")["json"]
    on_openvino = _by_name(report, "int8")["runtimes"]["openvino-f32"]
    assert on_openvino["latency_ms"] is not None
    assert report["ratios_vs_float"]["openvino-f32"]["int8"]["latency_p50"] is None  # no float model to divide by
    against_onnxruntime = report["ratios_vs_onnxruntime_float"]["openvino-f32"]["int8"]["latency_p50"]
    float_p50 = _by_name(report, "fp32")["runtimes"]["onnxruntime"]["latency_ms"]["p50"]
    # The paired ratio (median over session sets) and the pooled p50s' ratio part under load, but not by
    # a factor 3: an inverted direction would put OpenVINO's ~2x slower batch 1 at ~0.5x.
    p50_ratio = on_openvino["latency_ms"]["p50"] / float_p50
    assert abs(math.log(against_onnxruntime / p50_ratio)) < math.log(3.0)
    assert "| int8 · openvino-f32 |" in (tmp_path / "report.md").read_text()


def test_an_openvino_that_does_not_import_is_told_apart_from_a_missing_one(models, tmp_path) -> None:
    broken = tmp_path / "broken" / "openvino"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise OSError("libopenvino.so: cannot open shared object file")\n')
    result = subprocess.run(
        [sys.executable, "-m", "tuning", "benchmark", "--config", str(CONFIG), *SMALL, "--runtime", "openvino",
         "--input_model", str(models["int8"])],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(broken.parent)},
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    if importlib.util.find_spec("openvino") is not None:  # its metadata is installed: a broken install
        assert "is installed but does not import (OSError: libopenvino.so: cannot open shared object file)" in line
    else:
        assert "OpenVINO is not installed" in line
