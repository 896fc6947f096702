"""The machine and software a measurement ran on, printed beside every speed figure."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path

# The /proc/cpuinfo flags that decide whether int8 pays: int8 dot products (VNNI in its AVX-512 or AVX form,
# AMX tiles) make int8 convolutions several times faster; without them an int8 convolution costs about what
# an fp32 one does, and the quantize/dequantize steps are pure overhead.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
_VERSIONED_PACKAGES = {
    "onnxruntime": "onnxruntime",
    "onnx": "onnx",
    "neural_compressor": "neural-compressor",
    "numpy": "numpy",
    "openvino": "openvino",  # None without the optional extra
}


@dataclass(frozen=True)
class Environment:
    cpu_model: str
    cpu_flags: dict[str, bool]
    cpu_count: int | None
    usable_cpus: int
    system: str
    machine: str
    python: str
    versions: dict[str, str | None]

    @property
    def cpu_class(self) -> str:
        """The CPU's class for int8: ``AMX``, ``AVX-512 VNNI``, ``AVX-VNNI``, ``AVX-512 (no VNNI)``, ``AVX2 (no VNNI)``
        or ``no AVX2``: what the README's expectations are given per."""
        flag = self.cpu_flags.get
        if flag("amx_int8"):
            return "AMX"
        if flag("avx512_vnni"):
            return "AVX-512 VNNI"
        if flag("avx_vnni"):
            return "AVX-VNNI"
        if flag("avx512f"):
            return "AVX-512 (no VNNI)"
        return "AVX2 (no VNNI)" if flag("avx2") else "no AVX2"

    def features(self) -> str:
        """The CPU and its int8-relevant features in one phrase, printed on the line of every speed verdict:
        ``AMD EPYC, AVX-512 VNNI class (AVX2 yes, AVX-512 yes, VNNI yes, AMX no, bf16 yes)``."""
        flag = self.cpu_flags.get

        def yes(*names: str) -> str:
            return "yes" if any(flag(name) for name in names) else "no"

        return (
            f"{self.cpu_model}, {self.cpu_class} class (AVX2 {yes('avx2')}, AVX-512 {yes('avx512f')}, "
            f"VNNI {yes('avx512_vnni', 'avx_vnni')}, AMX {yes('amx_int8')}, bf16 {yes('avx512_bf16', 'amx_bf16')})"
        )

    def summary(self) -> str:
        """One line: the CPU, its int8-relevant flags and the onnxruntime version."""
        present = " ".join(name for name, found in self.cpu_flags.items() if found) or "-"
        absent = " ".join(name for name, found in self.cpu_flags.items() if not found) or "-"
        return (
            f"CPU {self.cpu_model}, {self.cpu_class} class (has {present}; lacks {absent}; {self.usable_cpus} usable of "
            f"{self.cpu_count} cores), "
            f"onnxruntime {self.versions.get('onnxruntime')}"
        )


def capture_environment() -> Environment:
    cpuinfo = _read_cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    return Environment(
        cpu_model=cpuinfo.get("model name") or platform.processor() or "unknown",
        cpu_flags={flag: flag in flags for flag in CPU_FLAGS},
        cpu_count=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        system=platform.platform(),
        machine=platform.machine(),
        python=platform.python_version(),
        versions={key: distribution_version(dist) for key, dist in _VERSIONED_PACKAGES.items()}
        | {"python": platform.python_version()},
    )


def _read_cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo; empty where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def distribution_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (package metadata only, nothing imported), or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def import_failure(module: str, display_name: str, install_hint: str) -> str | None:
    """Why the optional package ``module`` cannot be used (not installed, or installed but not importing), or
    None when it imports; a missing package is told apart from a broken one by its metadata."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # ModuleNotFoundError when absent; a broken install raises ImportError, OSError, ...
        what = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        installed = distribution_version(module)
        if isinstance(exc, ModuleNotFoundError) and exc.name == module or not installed:
            return f"{display_name} is not installed ({what}); {install_hint}"
        return f"{display_name} {installed} is installed but does not import ({what}); reinstall it"
    return None
