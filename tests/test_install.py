"""The package as a user installs it: pyproject's bounds agree with the lock files, and `pip install .`
into a fresh virtual environment gives a console script that works from an empty folder.

The fresh environment sees the locked dependencies (and pip) already installed in the project's .venv (through a
.pth file naming a folder of links to them, without the project itself), so pip resolves pyproject's
requirements against exactly the locked versions and downloads nothing: a bound that excluded a locked
version would make `pip install --no-index .` fail here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version
from test_cli_conventions import parse_document

# Each lock file and the pyproject list it pins (the dev, distributed, openvino and nncf files add to requirements.lock).
LOCKS = {
    "requirements.lock": ("dependencies",),
    "requirements-dev.lock": ("optional-dependencies", "test"),
    "requirements-distributed.lock": ("optional-dependencies", "distributed"),
    "requirements-openvino.lock": ("optional-dependencies", "openvino"),
    "requirements-nncf.lock": ("optional-dependencies", "nncf"),
}


def _pins(lock: str) -> dict[str, Version]:
    pins = {}
    for line in (ROOT / lock).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = Version(version)
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(path: tuple[str, ...]) -> dict[str, Requirement]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for key in path:
        table = table[key]
    return {_canonical(requirement.name): requirement for requirement in map(Requirement, table)}


def _next_release(version: Version) -> Version:
    release = list(version.release)
    release[-1] += 1
    return Version(".".join(map(str, release)))


@pytest.mark.parametrize("lock", LOCKS)
def test_pyproject_bounds_end_at_the_locked_versions(lock: str) -> None:
    pins, declared = _pins(lock), _declared(LOCKS[lock])
    assert sorted(declared) == sorted(pins), f"pyproject.toml and {lock} name different packages"
    for name, pinned in pins.items():
        specifier = declared[name].specifier
        assert specifier.contains(pinned), f"{name}: {specifier} excludes the locked {pinned}"
        # The lock's version is the newest allowed, so `pip install .` resolves to it ...
        assert not specifier.contains(_next_release(pinned)), f"{name}: {specifier} admits newer than {pinned}"
        # ... and the PyTorch CPU index's local builds (2.13.0+cpu) count as that version.
        assert specifier.contains(Version(f"{pinned}+cpu")), f"{name}: {specifier} refuses a +cpu build"


def test_requires_python_admits_this_interpreter() -> None:
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert SpecifierSet(project["requires-python"]).contains(".".join(map(str, sys.version_info[:3])))


def _dependencies_without_the_project(folder: Path) -> Path:
    """Links to everything installed in this environment except the project's own distribution."""
    folder.mkdir()
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for entry in site_packages.iterdir():
        if entry.name.startswith(("mnist_int8_tuning", "__editable__")) or entry.name == "tuning":
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def test_pip_install_into_a_fresh_venv_then_the_console_script_from_an_empty_folder(tmp_path: Path) -> None:
    # A copy of what the package is built from, so the build writes nothing into the work tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "tuning", source / "tuning", ignore=shutil.ignore_patterns("__pycache__"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    dependencies = _dependencies_without_the_project(tmp_path / "locked")
    (Path(purelib) / "locked_dependencies.pth").write_text(f"{dependencies}\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MNIST_TUNING_", "VIRTUAL_ENV"))}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "--disable-pip-version-check",
         "--no-input", str(source)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert "Successfully installed mnist-int8-tuning-0.1.0" in install.stdout

    script = venv / "bin" / "mnist-tuning"
    empty = tmp_path / "empty"
    empty.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), *args], cwd=empty, env=env, capture_output=True, text=True, timeout=300)

    pins = _pins("requirements.lock")
    version = run("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("mnist-tuning 0.1.0 (")
    for name in ("neural-compressor", "onnxruntime", "onnx"):
        assert f"{name} {pins[name]}," in version.stdout

    tune_help = run("tune", "--help")
    assert tune_help.returncode == 0 and tune_help.stdout.startswith("Usage: mnist-tuning tune [OPTIONS]")
    assert "--dataset-location" in tune_help.stdout and "-o, --output-model" in tune_help.stdout

    benchmark = run(
        "benchmark", "--json", f"--input_model={ROOT / 'models' / 'mnist-12.onnx'}",
        f"--dataset_location={ROOT / 'data'}", "--set", "benchmark.warmup=10", "--set", "benchmark.iterations=100",
    )  # fmt: skip
    assert benchmark.returncode == 0, benchmark.stderr
    document = parse_document(benchmark)
    assert document["mode"] == "performance" and document["throughput_images_per_s"] > 0
    # The installed copy ran, not the work tree's, and nothing was written into the empty folder.
    where = subprocess.run(
        [str(python), "-c", "import tuning; print(tuning.__file__)"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert where.startswith(purelib), where
    assert list(empty.iterdir()) == []
