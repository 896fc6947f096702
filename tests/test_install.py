"""The package as a user installs it: pyproject's bounds agree with the lock files, and the built wheel,
installed into a fresh virtual environment, gives a console script that tunes, reports and gates from an empty
folder, with MNIST from a folder the user names or downloaded into the user cache.

The fresh environment sees the locked dependencies (and pip) already installed in the project's .venv (through a
.pth file naming a folder of links to them, without the project itself), so pip resolves pyproject's
requirements against exactly the locked versions and downloads nothing: a bound that excluded a locked
version would make `pip install --no-index` fail here. The MNIST download comes from an HTTPS server on
127.0.0.1 serving the vendored archives (no machine here reaches the internet).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
from conftest import ROOT
from https_server import Certificate, serve_folder
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


# What the wheel is built from, as in the repository (tuning/shipped/ links into configs/ and models/).
SOURCES = ["pyproject.toml", "README.md", "tuning", "configs/mnist.yaml", "models/mnist-12.onnx", "models/zoo-mnist-12-int8.onnx"]  # fmt: skip
SHIPPED = {  # in the wheel: the clone's files, copied
    "tuning/shipped/configs/mnist.yaml": "configs/mnist.yaml",
    "tuning/shipped/models/mnist-12.onnx": "models/mnist-12.onnx",
    "tuning/shipped/models/zoo-mnist-12-int8.onnx": "models/zoo-mnist-12-int8.onnx",
}


def _copy_sources(source: Path) -> Path:
    """A copy to build from, so a build writes nothing into the work tree; links kept, so it follows them as in the clone."""
    for name in SOURCES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    return source


@dataclass(frozen=True)
class Installed:
    python: Path
    script: Path  # the console script, mnist-tuning
    purelib: str
    env: dict[str, str]  # a user's environment: no pip settings, no MNIST_TUNING_*, nothing activated
    root: Path  # a folder for the test's own files

    def run(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.script), *args], cwd=cwd, env={**self.env, **env}, capture_output=True, text=True, timeout=600
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from a copy of the sources (`pip wheel --no-deps`), installed into a fresh venv whose
    dependencies are this environment's (a .pth naming links to them), with nothing downloaded."""
    tmp_path = tmp_path_factory.mktemp("install")
    source = _copy_sources(tmp_path / "source")
    # PYTHONPATH: scripts/python.sh points it at the checkout, which would shadow the installed wheel.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MNIST_TUNING_", "VIRTUAL_ENV", "PYTHONPATH"))}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
         "--disable-pip-version-check", "--no-input", "-w", str(tmp_path / "dist"), str(source)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mnist_int8_tuning-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for inside, original in SHIPPED.items():
            assert archive.read(inside) == (ROOT / original).read_bytes(), inside

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    dependencies = _dependencies_without_the_project(tmp_path / "locked")
    (Path(purelib) / "locked_dependencies.pth").write_text(f"{dependencies}\n")
    # Dependencies resolved, not skipped: a pyproject bound excluding a locked version fails here.
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--disable-pip-version-check", "--no-input", str(wheel)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert "Successfully installed mnist-int8-tuning-0.1.0" in install.stdout
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the user cache MNIST is downloaded into
    return Installed(python, venv / "bin" / "mnist-tuning", purelib, env, tmp_path)


def test_the_console_script_from_an_empty_folder(installed: Installed, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    pins = _pins("requirements.lock")
    version = installed.run("--version", cwd=empty)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("mnist-tuning 0.1.0 (")
    for name in ("neural-compressor", "onnxruntime", "onnx"):
        assert f"{name} {pins[name]}," in version.stdout

    tune_help = installed.run("tune", "--help", cwd=empty)
    assert tune_help.returncode == 0 and tune_help.stdout.startswith("Usage: mnist-tuning tune [OPTIONS]")
    assert "--dataset-location" in tune_help.stdout and "-o, --output-model" in tune_help.stdout

    benchmark = installed.run(
        "benchmark", "--json", f"--model={ROOT / 'models' / 'mnist-12.onnx'}",
        f"--dataset-location={ROOT / 'data'}", "--set", "benchmark.warmup=10", "--set", "benchmark.iterations=100",
        cwd=empty,
    )  # fmt: skip
    assert benchmark.returncode == 0, benchmark.stderr
    document = parse_document(benchmark)
    assert document["mode"] == "performance" and document["throughput_images_per_s"] > 0
    # The installed copy ran, not the work tree's, and nothing was written into the empty folder.
    where = subprocess.run(
        [str(installed.python), "-c", "import tuning; print(tuning.__file__)"],
        cwd=empty, env=installed.env, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert where.startswith(installed.purelib), where
    assert list(empty.iterdir()) == []


# Enough to make and judge a model in a few minutes: INC's own search (its first candidate meeting the
# criterion), benchmark timing cut short. The accuracy criterion and the gates stay the shipped config's.
QUICK_TUNE = ["--set", "tuning.objective=accuracy"]
QUICK_REPORT = [
    "--set", "benchmark.runtimes=[onnxruntime]", "--set", "benchmark.batch_sizes=[1, 16]", "--set", "benchmark.rounds=2",
    "--set", "benchmark.warmup=5", "--set", "benchmark.iterations=50", "--set", "benchmark.min_time_s=0",
]  # fmt: skip
# Speed is not judged here (it depends on the machine's load); the accuracy gates are the shipped config's.
NO_SPEED_GATES = ["--set", "gates.max_latency_ratio=null", "--set", "gates.min_throughput_ratio=null"]


def _check_tuned(folder: Path, shipped_sha256: str) -> None:
    assert sorted(path.name for path in folder.iterdir()) == ["my-int8-run", "my-int8.onnx"]
    model = onnx.load(folder / "my-int8.onnx")
    onnx.checker.check_model(model)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["tuning.source_sha256"] == shipped_sha256  # made from the packaged float model
    summary = json.loads((folder / "my-int8-run" / "tuning_summary.json").read_text())
    assert summary["output_sha256"] == hashlib.sha256((folder / "my-int8.onnx").read_bytes()).hexdigest()
    assert summary["int8_top1_accuracy"] > 0.98


def test_the_wheel_tunes_reports_and_gates_in_an_empty_folder(
    installed: Installed, tmp_path: Path, certificate: Certificate
) -> None:
    shipped_sha256 = hashlib.sha256((ROOT / "models" / "mnist-12.onnx").read_bytes()).hexdigest()
    cache = Path(installed.env["XDG_CACHE_HOME"])

    # 1. MNIST from a folder the user names (--dataset-location): nothing is downloaded.
    given = tmp_path / "given"
    given.mkdir()
    tuned = installed.run("tune", "-o", "my-int8.onnx", f"--dataset-location={ROOT / 'data'}", *QUICK_TUNE, cwd=given)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "Answer: top-1 error int8" in tuned.stdout
    _check_tuned(given, shipped_sha256)
    assert not (cache / "mnist-int8-tuning").exists()

    # 2. MNIST downloaded into the user cache, from an HTTPS server serving the original archives.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with serve_folder(ROOT / "data" / "MNIST" / "raw", certificate) as mirror:
        trusted = {"SSL_CERT_FILE": str(certificate.cert)}
        from_url = ["--set", f"dataset.download_url={mirror.url}"]
        tuned = installed.run("tune", "-o", "my-int8.onnx", *from_url, *QUICK_TUNE, cwd=fresh, **trusted)
        assert tuned.returncode == 0, tuned.stderr[-3000:]
        _check_tuned(fresh, shipped_sha256)
        archives = sorted(path.name for path in (ROOT / "data" / "MNIST" / "raw").glob("*.gz"))
        assert sorted(mirror.requested) == [f"/{name}" for name in archives]
        raw = cache / "mnist-int8-tuning" / "datasets" / "MNIST" / "raw"
        assert sorted(path.name for path in raw.iterdir()) == archives

        # 3. report and gate there, MNIST from the cache now.
        reported = installed.run("report", "-o", "my-int8.onnx", *from_url, *QUICK_REPORT, cwd=fresh, **trusted)
        assert reported.returncode == 0, reported.stderr[-3000:]
        assert len(mirror.requested) == len(archives)
    report_json = fresh / "my-int8-run" / "report" / "report.json"
    document = json.loads(report_json.read_text())
    models = {model["role"]: model for model in document["models"]}
    assert models["int8"]["sha256"] == hashlib.sha256((fresh / "my-int8.onnx").read_bytes()).hexdigest()
    assert models["float"]["path"].startswith(installed.purelib)  # the packaged models, float and reference
    assert models["reference"]["path"] == f"{installed.purelib}/tuning/shipped/models/zoo-mnist-12-int8.onnx"
    assert models["int8"]["accuracy"]["top1_accuracy"] == pytest.approx(json.loads((fresh / "my-int8-run" / "tuning_summary.json").read_text())["int8_top1_accuracy"])
    assert (fresh / "my-int8-run" / "report" / "report.html").is_file()

    gated = installed.run("gate", "-o", "my-int8.onnx", *NO_SPEED_GATES, cwd=fresh)  # reads that run folder's report
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "PASS int8 top-1 error" in gated.stdout and "PASS accuracy drop vs float" in gated.stdout


CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # PyTorch's CPU wheel index, as docs/install.md gives it
CUDA_PREFIXES = ("nvidia-", "cuda-", "triton")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except (OSError, ValueError):
        return False


def test_the_cpu_only_route_resolves_without_cuda_or_backtracking(tmp_path: Path) -> None:
    """docs/install.md's route, resolved by pip as a user's pip would (a dry run: nothing is installed).

    The CPU index is used when it answers; where it does not (these machines), pip's own configuration must
    offer a CPU torch instead, as it does for scripts/setup_env.sh; with neither, the route cannot be taken here.
    """
    assert f"pip install --extra-index-url {CPU_INDEX} ." in (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    assert f"torch_index=\"${{TUNING_TORCH_INDEX_URL-{CPU_INDEX}}}\"" in (ROOT / "scripts" / "setup_env.sh").read_text()
    source = _copy_sources(tmp_path / "source")
    index = ["--extra-index-url", CPU_INDEX] if _answers(f"{CPU_INDEX}/torch/") else []
    report = tmp_path / "resolution.json"
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation",
         "--disable-pip-version-check", "--no-input", "--report", str(report), *index, str(source)],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    output = resolved.stdout + resolved.stderr
    if resolved.returncode != 0 and ("NewConnectionError" in output or "No matching distribution" in output):
        pytest.skip(f"no package index reachable: {output.strip().splitlines()[-1]}")
    assert resolved.returncode == 0, output[-3000:]
    installs = {
        _canonical(item["metadata"]["name"]): Version(item["metadata"]["version"])
        for item in json.loads(report.read_text())["install"]
    }
    if installs["torch"].local != "cpu":
        pytest.skip(f"no CPU build of torch reachable (neither {CPU_INDEX} nor pip's configuration offers one)")
    assert [name for name in installs if name.startswith(CUDA_PREFIXES)] == []
    assert "is looking at multiple versions" not in output  # no backtracking: every wheel pip fetched is used
    for name, pinned in _pins("requirements.lock").items():
        assert Version(installs[name].public) == pinned, f"{name}: resolved {installs[name]}, locked {pinned}"
