"""NNCF's int8 model as a reference row of ``report`` (config ``benchmark.nncf_reference``).

The row's model must be what ``nncf.quantize`` makes of the same float model with the same calibration images:
the test makes that model itself and compares outputs. Tests that need NNCF (and OpenVINO, which the ``nncf``
extra installs with it) are skipped, saying why, without the extra (``bash scripts/setup_env.sh nncf``; .ci/run
installs it); the error without it runs everywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import CONFIG, ROOT

from tuning.cli.main import main
from tuning.config.loading import load_config
from tuning.data import datasets
from tuning.errors import ConfigError
from tuning.graph.rewrite import batch_capable_copy

MISSING = [name for name in ("nncf", "openvino") if importlib.util.find_spec(name) is None]
needs_nncf = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: bash scripts/setup_env.sh nncf"
)
FLOAT = ROOT / "models" / "mnist-12.onnx"
INT8 = ROOT / "models" / "zoo-mnist-12-int8.onnx"  # any int8 model: the row under test is NNCF's
SMALL = [
    "--set", f"dataset.root={ROOT / 'data'}", "--set", "benchmark.warmup=5", "--set", "benchmark.iterations=40",
    "--set", "benchmark.min_time_s=0", "--set", "benchmark.rounds=2", "--set", "benchmark.batch_sizes=[1, 8]",
    "--set", "benchmark.reference_models=[]", "--set", "calibration.sampling_size=40",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("nncf-report")
    main(["report", "--config", str(CONFIG), *SMALL, "--set", "benchmark.runtimes=[onnxruntime, openvino-f32]",
          "--set", "benchmark.nncf_reference=true", "--float-model", str(FLOAT), "--int8-model", str(INT8),
          "--out-dir", str(out)])  # fmt: skip
    return {"out": out, "json": json.loads((out / "report.json").read_text()), "md": (out / "report.md").read_text()}


def _nncf_made_here(calibration: np.ndarray) -> onnx.ModelProto:
    import nncf

    copy = batch_capable_copy(onnx.load(str(FLOAT)), FLOAT)
    name = copy.graph.input[0].name
    return nncf.quantize(copy, nncf.Dataset([{name: image[None]} for image in calibration]), subset_size=len(calibration))


def _scores(model: onnx.ModelProto | Path, images: np.ndarray) -> np.ndarray:
    payload = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


@needs_nncf
def test_the_nncf_row_is_nncf_on_the_same_float_model_and_calibration_images(report) -> None:
    import nncf

    config = load_config(CONFIG, {"dataset.root": str(ROOT / "data"), "calibration.sampling_size": 40})
    calibration = datasets.calibration_images(config.dataset, config.calibration, (1, 28, 28)).images
    written = report["out"] / "nncf-int8.onnx"
    (entry,) = [model for model in report["json"]["models"] if model["name"] == "nncf-int8"]
    assert entry["role"] == "reference" and Path(entry["path"]) == written
    assert entry["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
    made = report["json"]["nncf_reference"]
    assert made["nncf_version"] == nncf.__version__ and made["calibration_images"] == 40 and made["opset"] == 12
    test_images = datasets.evaluation_images(config.dataset, config.evaluation.split, (1, 28, 28)).images[:256]
    np.testing.assert_array_equal(_scores(written, test_images), _scores(_nncf_made_here(calibration), test_images))
    # Other calibration images give other scales: the comparison above tells them apart.
    other = datasets.evaluation_images(config.dataset, config.evaluation.split, (1, 28, 28)).images[-40:]
    assert not np.array_equal(_scores(written, test_images), _scores(_nncf_made_here(other), test_images))
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(entry["op_types"])


@needs_nncf
def test_the_nncf_row_is_measured_beside_the_others_on_every_runtime(report) -> None:
    data = report["json"]
    (entry,) = [model for model in data["models"] if model["name"] == "nncf-int8"]
    for runtime in ("onnxruntime", "openvino-f32"):
        on = entry["runtimes"][runtime]
        assert on["status"] == "ok" and on["accuracy"]["images"] == 10_000
        assert [timing["batch_size"] for timing in on["throughput"]] == [1, 8]
        ratios = data["ratios_vs_onnxruntime_float"][runtime]["nncf-int8"]
        assert ratios["throughput"]["8"] is not None and ratios["latency_p50"] is not None
    assert entry["runtimes"]["openvino-f32"]["conditions"]["timed_input_shapes"]["8"] == "[8,1,28,28]"
    assert "| nncf-int8 | openvino-f32 |" in report["md"]
    assert "- nncf-int8: NNCF " in report["md"] and "same 40 calibration images as tuning" in report["md"]


@needs_nncf
def test_a_reference_already_named_like_the_nncf_row_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--config", str(CONFIG), *SMALL, "--set", "benchmark.nncf_reference=true",
              "--float-model", str(FLOAT), "--int8-model", str(INT8), "--reference", f"nncf-int8={INT8}",
              "--out-dir", str(tmp_path), "--skip-performance"])  # fmt: skip
    assert exit_info.value.code == ConfigError.exit_code
    assert not (tmp_path / "nncf-int8.onnx").exists()


def test_without_the_extra_the_key_is_one_line_saying_how_to_install_it(tmp_path: Path) -> None:
    # sys.modules["nncf"] = None makes `import nncf` fail as if the package were not installed.
    script = f"""
import sys
sys.modules["nncf"] = None
from tuning.cli.main import main
main({["report", "--config", str(CONFIG), *SMALL, "--set", "benchmark.runtimes=[onnxruntime]",
       "--set", "benchmark.nncf_reference=true", "--float-model", str(FLOAT), "--int8-model", str(INT8),
       "--out-dir", str(tmp_path / "report"), "--skip-performance"]!r})
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == ConfigError.exit_code, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: benchmark.nncf_reference: NNCF is not installed (")
    assert "bash scripts/setup_env.sh nncf" in line
    assert not (tmp_path / "report" / "report.json").exists()
