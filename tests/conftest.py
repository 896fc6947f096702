"""Shared fixtures: the real vendored model and MNIST files, outputs under pytest's tmp folders."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from https_server import Certificate, make_certificate

from tuning.config.loading import load_config
from tuning.config.schema import PipelineConfig
from tuning.pipeline import TuningSummary, run_tuning

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mnist.yaml"
FASHION_MNIST_DEB = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (.ci/run installs it)


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


@pytest.fixture(scope="session")
def zoo_accuracy_report(default_run: tuple[PipelineConfig, TuningSummary], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one real accuracy-only report whose int8 model is the zoo's (54 % top-1 on [0, 1] pixels),
    made from the default run's output.dir, whose tuning_summary.json describes another model. Shared by the
    report's tests and the gate's CLI tests."""
    from tuning.cli.main import main

    config, _ = default_run
    out = tmp_path_factory.mktemp("zoo-report")
    main(["report", "--config", str(CONFIG), "--set", f"dataset.root={ROOT / 'data'}",
          "--set", "benchmark.runtimes=[onnxruntime]", "--set", "benchmark.reference_models=[]",
          "--set", f"output.dir={config.output.dir}", "--float-model", str(ROOT / "models" / "mnist-12.onnx"),
          "--int8-model", str(ROOT / "models" / "zoo-mnist-12-int8.onnx"), "--out-dir", str(out), "--skip-performance"])  # fmt: skip
    return out


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """The test session's certificate for 127.0.0.1 (tests/https_server.py); clients trust it through SSL_CERT_FILE."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


def regzip(source: Path, target: Path) -> None:
    """The same IDX content in a different gzip wrapper (name, time, level), as distributions ship it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as raw, gzip.GzipFile("repacked", "wb", compresslevel=6, fileobj=raw, mtime=1234567890) as out:
        out.write(gzip.decompress(source.read_bytes()))


@pytest.fixture(scope="session")
def dataset_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """dataset.root per dataset name, each holding re-gzipped copies made here (same content, new gzip header):
    MNIST from the vendored files, FashionMNIST from Debian's package (skipped where it is not installed)."""
    sources = {"MNIST": ROOT / "data" / "MNIST" / "raw", "FashionMNIST": FASHION_MNIST_DEB}
    roots = {}
    for name, folder in sources.items():
        if not folder.is_dir():
            continue
        root = tmp_path_factory.mktemp(f"{name}-regzipped")
        for archive in folder.glob("*-ubyte.gz"):
            regzip(archive, root / name / "raw" / archive.name)
        roots[name] = root
    return roots


@pytest.fixture(scope="session")
def torch_model(tmp_path_factory: pytest.TempPathFactory, dataset_roots) -> Callable[[str, str], Path]:
    """``torch_model(architecture, dataset)``: an ONNX classifier trained here (tests/torch_models.py), made once."""
    from torch_models import train_and_export

    from tuning.config.schema import DatasetSection

    made: dict[tuple[str, str], Path] = {}

    def get(architecture: str, dataset: str) -> Path:
        if dataset not in dataset_roots:
            pytest.skip(f"{dataset} files are not installed (bash scripts/setup_system.sh installs Debian's dataset-fashion-mnist)")
        if (architecture, dataset) not in made:
            folder = tmp_path_factory.mktemp(f"{architecture}-{dataset}")
            made[architecture, dataset] = train_and_export(
                architecture, DatasetSection(name=dataset, root=dataset_roots[dataset]), folder / f"{architecture}.onnx"
            )
        return made[architecture, dataset]

    return get


def run_cli_in_process(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m tuning ARGS`` run from ``cwd`` in this process, its exit code and output as a subprocess's.

    For the tests that check what a command does, not how a process starts: it saves a new interpreter
    importing INC and torch (seconds each, much more on a busy machine). Every command keeps at least one
    test that runs it in a real subprocess (tests/test_any_classifier.py's console script, tests/test_cli*.py).
    """
    from tuning.cli.main import main

    argv = [str(arg) for arg in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    previous_dir, previous_sigterm = os.getcwd(), signal.getsignal(signal.SIGTERM)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        os.chdir(previous_dir)
        signal.signal(signal.SIGTERM, previous_sigterm)
    return subprocess.CompletedProcess(["python", "-m", "tuning", *argv], code, stdout.getvalue(), stderr.getvalue())


def write_config(path: Path, sections: dict[str, Any]) -> Path:
    """A YAML config file with ``sections`` (nested mappings, as a user writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path
