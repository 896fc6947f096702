"""tuning.measure.figures' number formats and tuning.measure.environment's reading of the machine, from chosen
inputs: a cpuinfo file written by the test, flag sets for every CPU class, packages made in the test that import
or fail to.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import pytest

from tuning.measure import environment, figures
from tuning.measure.environment import CPU_FLAGS, Environment, distribution_version, import_failure
from tuning.measure.timings import Spread

pytestmark = pytest.mark.fast


def test_each_kind_of_figure_has_one_format() -> None:
    assert figures.pct(0.12345) == "12.35 %"
    assert figures.error_pct(0.875) == "12.50 %"  # the error of an accuracy
    assert figures.error_pct(None) == "—"
    assert figures.us(0.0125) == "12.5 µs"  # milliseconds in, microseconds out
    assert figures.us(1.5) == "1,500.0 µs"
    assert figures.us_range(Spread(0.0125, 0.01, 1.5)) == "12.5 µs (10.0 µs–1,500.0 µs)"
    assert figures.count(12468.4) == "12,468"
    assert figures.count_range(Spread(1500.5, 999.4, 2000.0)) == "1,500 (999–2,000)"  # 1500.5 rounds to even
    assert figures.factor(0.834) == "0.83×" and figures.factor(0.834, plain=True) == "0.83x"


def test_a_ratio_is_its_median_and_range_or_a_dash() -> None:
    spread = Spread(0.834, 0.821, 0.855)
    assert figures.ratio(spread) == "0.83× (0.82–0.85)"
    assert figures.ratio(spread, plain=True) == "0.83x (0.82-0.85)"
    assert figures.ratio(None) == "—" and figures.ratio(None, plain=True) == "-"


def _environment(**flags: bool) -> Environment:
    return Environment(
        cpu_model="Test CPU", cpu_flags={flag: flags.get(flag, False) for flag in CPU_FLAGS}, cpu_count=8,
        usable_cpus=2, system="Linux", machine="x86_64", python="3.11.0", versions={"onnxruntime": "1.2.3"},
    )


@pytest.mark.parametrize(
    "flags, expected",
    [
        # Each class with every weaker flag present too, and on its own: the strongest present decides.
        ({"amx_int8": True, "avx512_vnni": True, "avx_vnni": True, "avx512f": True, "avx2": True}, "AMX"),
        ({"amx_int8": True}, "AMX"),
        ({"avx512_vnni": True, "avx_vnni": True, "avx512f": True, "avx2": True}, "AVX-512 VNNI"),
        ({"avx512_vnni": True}, "AVX-512 VNNI"),
        ({"avx_vnni": True, "avx512f": True, "avx2": True}, "AVX-VNNI"),
        ({"avx_vnni": True}, "AVX-VNNI"),
        ({"avx512f": True, "avx2": True}, "AVX-512 (no VNNI)"),
        ({"avx512f": True}, "AVX-512 (no VNNI)"),
        ({"avx2": True}, "AVX2 (no VNNI)"),
        ({"amx_bf16": True, "avx512_bf16": True}, "no AVX2"),
        ({}, "no AVX2"),
    ],
)
def test_the_cpu_class_is_the_strongest_int8_feature_present(flags: dict[str, bool], expected: str) -> None:
    assert _environment(**flags).cpu_class == expected


@pytest.mark.parametrize(
    "flags, phrase",
    [
        ({}, "AVX2 no, AVX-512 no, VNNI no, AMX no, bf16 no"),
        ({"avx2": True}, "AVX2 yes, AVX-512 no, VNNI no, AMX no, bf16 no"),
        ({"avx512f": True}, "AVX2 no, AVX-512 yes, VNNI no, AMX no, bf16 no"),
        ({"avx512_vnni": True}, "AVX2 no, AVX-512 no, VNNI yes, AMX no, bf16 no"),
        ({"avx_vnni": True}, "AVX2 no, AVX-512 no, VNNI yes, AMX no, bf16 no"),
        ({"amx_int8": True}, "AVX2 no, AVX-512 no, VNNI no, AMX yes, bf16 no"),
        ({"avx512_bf16": True}, "AVX2 no, AVX-512 no, VNNI no, AMX no, bf16 yes"),
        ({"amx_bf16": True}, "AVX2 no, AVX-512 no, VNNI no, AMX no, bf16 yes"),
    ],
)
def test_the_features_say_yes_to_each_flag_family_present(flags: dict[str, bool], phrase: str) -> None:
    environment_ = _environment(**flags)
    assert environment_.features() == f"Test CPU, {environment_.cpu_class} class ({phrase})"


def test_the_summary_lists_present_and_absent_flags_and_the_cores() -> None:
    assert _environment(avx2=True, avx512f=True).summary() == (
        "CPU Test CPU, AVX-512 (no VNNI) class (has avx2 avx512f; lacks avx512_vnni avx_vnni avx512_bf16 amx_int8 "
        "amx_bf16; 2 usable of 8 cores), onnxruntime 1.2.3"
    )
    assert _environment().summary().startswith(f"CPU Test CPU, no AVX2 class (has -; lacks {' '.join(CPU_FLAGS)};")
    assert _environment(**dict.fromkeys(CPU_FLAGS, True)).summary().startswith(
        f"CPU Test CPU, AMX class (has {' '.join(CPU_FLAGS)}; lacks -; ")


CPUINFO = """
processor\t: 0
model name\t: First Model: 2 GHz  
flags\t\t: fpu avx2 avx512f amx_int8
flags\t\t: a second flags line of the same processor is not read
cache size\t: 1024 KB

processor\t: 1
model name\t: Second Model
flags\t\t: avx512_vnni
"""


def test_the_first_processors_fields_are_read_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO, encoding="utf-8")
    monkeypatch.setattr(environment, "Path", lambda _name: tmp_path / "cpuinfo")
    fields = environment._read_cpuinfo()
    assert fields == {
        "processor": "0", "model name": "First Model: 2 GHz", "flags": "fpu avx2 avx512f amx_int8", "cache size": "1024 KB",
    }
    captured = environment.capture_environment()
    assert captured.cpu_model == "First Model: 2 GHz"  # split at the first colon only
    assert captured.cpu_flags == {
        "avx2": True, "avx512f": True, "avx512_vnni": False, "avx_vnni": False, "avx512_bf16": False,
        "amx_int8": True, "amx_bf16": False,
    }


def test_without_cpuinfo_the_processor_is_named_by_the_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "Path", lambda _name: tmp_path / "absent")
    assert environment._read_cpuinfo() == {}
    monkeypatch.setattr(platform, "processor", lambda: "x86_64 by the platform")
    captured = environment.capture_environment()
    assert captured.cpu_model == "x86_64 by the platform"
    assert captured.cpu_flags == dict.fromkeys(CPU_FLAGS, False)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert environment.capture_environment().cpu_model == "unknown"


def test_the_environment_is_this_machines() -> None:
    captured = environment.capture_environment()
    assert captured.cpu_count == os.cpu_count()
    assert captured.usable_cpus == len(os.sched_getaffinity(0))
    assert (captured.system, captured.machine, captured.python) == (
        platform.platform(), platform.machine(), platform.python_version())
    assert captured.versions["numpy"] == np.__version__ and captured.versions["python"] == platform.python_version()
    assert set(captured.versions) == {"onnxruntime", "onnx", "neural_compressor", "numpy", "openvino", "python"}
    assert captured.versions["neural_compressor"] == distribution_version("neural-compressor") is not None


def test_the_usable_cores_are_this_process_affinity_else_the_core_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 9} if pid == 0 else set())
    captured = environment.capture_environment()
    assert (captured.cpu_count, captured.usable_cpus) == (64, 3)
    monkeypatch.delattr(os, "sched_getaffinity")  # not Linux
    assert environment.capture_environment().usable_cpus == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the count undeterminable: one core
    assert environment.capture_environment().usable_cpus == 1


def test_cpuinfo_that_is_not_utf_8_is_read_with_replacements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpuinfo").write_bytes(b"model name\t: Caf\xe9 CPU\nflags\t: avx2\n")
    monkeypatch.setattr(environment, "Path", lambda _name: tmp_path / "cpuinfo")
    assert environment._read_cpuinfo() == {"model name": "Caf\ufffd CPU", "flags": "avx2"}


def test_a_version_is_read_from_the_metadata_or_none() -> None:
    assert distribution_version("numpy") == np.__version__
    assert distribution_version("no-such-distribution-here") is None


def _package(root: Path, name: str, body: str, version: str | None) -> None:
    """A package ``name`` on ``root`` whose import runs ``body``; with ``version``, its installed metadata too."""
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(body, encoding="utf-8")
    if version is not None:
        info = root / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")


def test_an_optional_package_that_imports_has_no_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(tmp_path, "mt_fine", "", "1.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_failure("mt_fine", "Fine", "install it") is None


def test_a_missing_package_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert import_failure("mt_absent", "Absent", "install the extra") == (
        "Absent is not installed (ModuleNotFoundError: No module named 'mt_absent'); install the extra")
    # Importable files without metadata are not an installed package either, whatever they raise.
    _package(tmp_path, "mt_loose", "raise OSError('libfoo.so: cannot open\\nsecond line')", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_failure("mt_loose", "Loose", "hint") == (
        "Loose is not installed (OSError: libfoo.so: cannot open); hint")


def test_an_installed_package_that_does_not_import_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(tmp_path, "mt_broken", "raise OSError('libfoo.so: cannot open\\nsecond line')", "2.5.1")
    _package(tmp_path, "mt_silent", "raise ImportError()", "0.1")
    _package(tmp_path, "mt_needs", "import mt_dependency_absent", "3.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_failure("mt_broken", "Broken", "hint") == (
        "Broken 2.5.1 is installed but does not import (OSError: libfoo.so: cannot open); reinstall it")
    assert import_failure("mt_silent", "Silent", "hint") == (
        "Silent 0.1 is installed but does not import (ImportError); reinstall it")
    # A missing dependency is a ModuleNotFoundError naming another module: the package itself is there.
    assert import_failure("mt_needs", "Needs", "hint") == (
        "Needs 3.0 is installed but does not import (ModuleNotFoundError: No module named 'mt_dependency_absent'); "
        "reinstall it")
