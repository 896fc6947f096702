"""Shared fixtures: the real vendored model and MNIST files, outputs under pytest's tmp folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuning.config import PipelineConfig, load_config
from tuning.pipeline import TuningSummary, run_tuning

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mnist.yaml"


def project_config(out_dir: Path, **overrides: Any) -> PipelineConfig:
    """The shipped config with absolute input paths and every output under ``out_dir``."""
    return load_config(
        CONFIG,
        {
            "model.path": str(ROOT / "models" / "mnist-12.onnx"),
            "dataset.root": str(ROOT / "data"),
            "output.dir": str(out_dir / "run"),
            "output.model": str(out_dir / "mnist-12-int8.onnx"),
            "benchmark.reference_models": [str(ROOT / "models" / "zoo-mnist-12-int8.onnx")],
            **overrides,
        },
    )


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, TuningSummary]:
    """One real INC tuning run with the shipped config, shared by the tests that read its output."""
    config = project_config(tmp_path_factory.mktemp("default-run"))
    return config, run_tuning(config)
