"""The config a command reads when none is given (tuning/config/shipped.py): the clone's configs/mnist.yaml, or
the installed package's copy with its models, MNIST from the user cache and outputs in the current folder.

The package data is the clone's own files (tuning/shipped/ links to them): here the package's copy is read
through those links, as an installed copy reads its own; tests/test_install.py runs the built wheel.
"""

from __future__ import annotations

import hashlib
import socket
import tomllib
from pathlib import Path

import pytest
from conftest import CONFIG, ROOT, run_cli_in_process

from tuning.cli.options import build_config
from tuning.config.schema import SHIPPED_CONFIG
from tuning.config.shipped import default_config, installed_overrides, packaged_config

SHIPPED = ROOT / "tuning" / "shipped"


@pytest.mark.fast
def test_the_package_data_is_the_clones_config_and_zoo_models() -> None:
    packaged = packaged_config()
    assert packaged == SHIPPED / "configs" / "mnist.yaml"
    assert packaged.read_bytes() == CONFIG.read_bytes()
    for name in ("mnist-12.onnx", "zoo-mnist-12-int8.onnx"):
        assert (SHIPPED / "models" / name).read_bytes() == (ROOT / "models" / name).read_bytes()
    # pyproject's package-data lists every file under tuning/shipped, so the wheel carries what the code reads.
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    on_disk = sorted(str(path.relative_to(ROOT / "tuning")) for path in SHIPPED.rglob("*") if not path.is_dir())
    assert sorted(listed["tuning"]) == on_disk


@pytest.mark.fast
def test_in_the_clone_the_default_is_configs_mnist_yaml_with_its_own_paths() -> None:
    assert default_config() == SHIPPED_CONFIG
    assert installed_overrides(SHIPPED_CONFIG) == {}
    assert installed_overrides(None) == {}
    config = build_config(None, ())
    assert config.dataset.root == ROOT / "data"
    assert config.output.model == ROOT / "models" / "mnist-12-int8.onnx"


@pytest.mark.fast
def test_the_packaged_config_reads_its_models_and_writes_into_the_current_folder() -> None:
    packaged = packaged_config()
    assert installed_overrides(packaged) == {"dataset.root": None, "output.model": "mnist-12-int8.onnx"}
    config = build_config(packaged, ())
    assert config.model.path == SHIPPED / "models" / "mnist-12.onnx"
    assert hashlib.sha256(config.model.path.read_bytes()).hexdigest() == config.model.sha256
    assert config.benchmark.reference_models == (SHIPPED / "models" / "zoo-mnist-12-int8.onnx",)
    assert config.dataset.root is None  # the user cache, downloaded on first use
    assert (config.output.model, config.output.dir) == (Path("mnist-12-int8.onnx"), Path("mnist-12-int8-run"))
    # What the user gives wins over both.
    given = build_config(packaged, ("dataset.root=elsewhere",), **{"output.model": Path("out/my-int8.onnx")})
    assert given.dataset.root == Path("elsewhere")
    assert (given.output.model, given.output.dir) == (Path("out/my-int8.onnx"), Path("out/my-int8-run"))


def test_tune_offline_from_an_empty_folder_fails_in_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with socket.socket() as closed:  # nothing listens: what a machine without network gets
        closed.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{closed.getsockname()[1]}/"
    result = run_cli_in_process(
        "tune", "--config", packaged_config(), "-o", "my-int8.onnx", "--set", f"dataset.download_url={url}",
        cwd=empty,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {url}train-images-idx3-ubyte.gz: download failed after 3 attempts: ")
    assert "offline? download train-images-idx3-ubyte.gz, " in error and "--dataset-location FOLDER" in error
    assert list(empty.iterdir()) == []  # no run folder, no lock file
    assert not (tmp_path / "cache").exists()


def test_a_missing_dataset_leaves_no_run_folder_beside_the_input_model(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes((ROOT / "models" / "mnist-12.onnx").read_bytes())
    no_data = tmp_path / "no-data"
    no_data.mkdir()
    result = run_cli_in_process("tune", "-m", model, "--dataset-location", no_data, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "dataset file not found" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx", "no-data"]
