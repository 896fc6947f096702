"""Importing INC without the modules of other frameworks that its package ``__init__`` files import.

``import neural_compressor`` (and ``neural_compressor.quantization``) imports every adaptor, model wrapper
and metric of INC, whatever the framework, and what they import. Two of them cost an ONNX run two seconds or more of start-up
and are never used by it:

- ``neural_compressor.model.torch_model`` imports torch whenever torch is installed (the tests build
  their models with it), and with it much of torch's Python code: a second or more, and more at exit;
- ``neural_compressor.metric.bleu`` builds regular expressions over every Unicode character (~0.8 s).

Two more cost an ONNX run 1.5-2 s of CPU and are not called by it, though it may use them:

- scikit-learn, scipy and pandas, which INC's metric module (``accuracy_score``, for one of its metrics), its
  bayesian strategy (a Gaussian process, ``scipy.optimize.minimize``) and its TPE strategy (``pandas.DataFrame``)
  import at module level;
- INC's CPU probe (``CpuInfo``, built when ``neural_compressor.adaptor.pytorch`` imports): it asks py-cpuinfo's
  ``get_cpu_info()``, a Python subprocess of 0.6 s of CPU, for the architecture alone, then reads VNNI and
  bf16 with its own CPUID instructions, in this process.

While INC's packages import, the first two names are held in ``sys.modules`` by placeholder modules (the model
wrapper's defines its PyTorch classes as None, as INC sets them when torch is not installed), so INC's
imports of them find the placeholders; the names of scikit-learn, scipy and pandas are held by :class:`Deferred` stand-ins that
import the real function or class at their first call; py-cpuinfo's ``get_cpu_info`` answers the architecture
the way py-cpuinfo parses it, from ``platform.machine()``. The placeholders are removed and ``get_cpu_info``
restored right after: an explicit import of one of them later gets the real module. Pinned to
neural-compressor 3.7.1 (pyproject.toml); tests/test_inc_loading.py checks that the placeholders' names still
exist in INC and scikit-learn, that INC quantizes with them and reads the same CPU features as without them,
and the real INC runs of the suite go through here.

One more second goes to INC's onnxruntime adaptor, which parses its 20 kB capability file (``onnxrt.yaml``)
anew for every ``fit()``, with PyYAML's pure-Python parser (50-100 ms each, 14 times on the shipped config).
The adaptor module's ``yaml`` is given libyaml's safe loader instead, where PyYAML has it: the same
constructors on a C parser, the same data (tests/test_inc_loading.py compares them) in a few milliseconds.

INC's activation calibration is remembered across the ``fit()`` calls of a run (tuning/inc/calibration.py).

Each ``fit()`` ends by pickling INC's tuning state to ``history.snapshot`` in the workspace (for INC's resume,
which this project never asks for), through a temporary file it ``fsync``s before renaming it into place: 42
``fit()`` calls waited 0.5-0.8 s for it on the shared 2-core VM of docs/pipeline.md's measurements. The
snapshot is still written and renamed into place (:func:`renamed_into_place`), without the ``fsync``: a crash can
only lose a file nothing reads.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
import tempfile
import types
from collections.abc import Iterator
from typing import IO, Any

import yaml

from tuning.inc.calibration import remembering

# The module each placeholder stands for, and what the placeholder must define for INC's own imports of it
# (``neural_compressor.model.model`` does ``from ...torch_model import *`` and names these three classes).
PLACEHOLDERS: dict[str, dict[str, object]] = {
    "neural_compressor.model.torch_model": {"PyTorchModel": None, "IPEXModel": None, "PyTorchFXModel": None},
    "neural_compressor.metric.bleu": {},
}
# The names INC imports at module level from scikit-learn, scipy and pandas (neural_compressor/metric/metric.py,
# strategy/bayesian.py, contrib/strategy/tpe.py), none of which an ONNX run calls.
DEFERRED: dict[str, tuple[str, ...]] = {
    "sklearn.metrics": ("accuracy_score",),
    "sklearn.gaussian_process": ("GaussianProcessRegressor",),
    "sklearn.gaussian_process.kernels": ("Matern",),
    "scipy.optimize": ("minimize",),
    "pandas": ("DataFrame",),
}


class Deferred:
    """A function or class of a module INC imports but an ONNX run does not call: imported at its first call."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


def _stand_ins() -> dict[str, dict[str, object]]:
    """Every module held in ``sys.modules`` while INC imports, with what it defines."""
    parents = {module.rsplit(".", depth)[0]: {} for module in DEFERRED for depth in range(1, module.count(".") + 1)}
    deferred = {module: {name: Deferred(module, name) for name in names} for module, names in DEFERRED.items()}
    return PLACEHOLDERS | parents | deferred


def _architecture_only() -> dict[str, object]:
    """What INC's ``CpuInfo`` reads of py-cpuinfo's ``get_cpu_info()``, parsed as py-cpuinfo parses it."""
    import cpuinfo

    arch, bits = cpuinfo.cpuinfo._parse_arch(platform.machine())
    return {"arch": arch, "bits": bits} if arch else {}


def import_inc() -> types.ModuleType:
    """``neural_compressor``, with ``neural_compressor.quantization`` imported: the first call imports them
    without the placeholders' modules; later calls return what is already imported."""
    if "neural_compressor.quantization" not in sys.modules:
        import cpuinfo

        stand_ins = _stand_ins()
        placed = [name for name in stand_ins if name not in sys.modules]
        for name in placed:
            placeholder = types.ModuleType(name, "Placeholder of tuning/inc/loading.py: not used by ONNX runs.")
            placeholder.__dict__.update(stand_ins[name])
            placeholder.__all__ = list(stand_ins[name])  # type: ignore[attr-defined]
            sys.modules[name] = placeholder
        probe = cpuinfo.get_cpu_info
        cpuinfo.get_cpu_info = _architecture_only
        try:
            import neural_compressor.quantization  # noqa: F401 - imports the package and what fit() needs
        finally:
            cpuinfo.get_cpu_info = probe
            for name in placed:
                sys.modules.pop(name, None)
    augment = importlib.import_module("neural_compressor.adaptor.ox_utils.calibration").ONNXRTAugment
    if not hasattr(augment.get_activation_tensors_calib_range, "__wrapped__"):  # once, whoever imported INC first
        augment.get_activation_tensors_calib_range = remembering(augment.get_activation_tensors_calib_range)
    importlib.import_module("neural_compressor.strategy.strategy").fault_tolerant_file = renamed_into_place
    if yaml.__with_libyaml__:
        importlib.import_module("neural_compressor.adaptor.onnxrt").yaml = types.SimpleNamespace(safe_load=safe_load_c)
    return sys.modules["neural_compressor"]


@contextlib.contextmanager
def renamed_into_place(name: str) -> Iterator[IO[bytes]]:
    """INC's ``fault_tolerant_file``: a temporary file beside ``name``, renamed to it when the block ends; without
    its ``fsync`` (see the module)."""
    folder = os.path.abspath(os.path.expanduser(os.path.dirname(name)))
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".tmp") as file:
        yield file
    os.replace(file.name, name)


def safe_load_c(stream: IO[str] | str) -> Any:
    """``yaml.safe_load`` on libyaml's parser."""
    return yaml.load(stream, Loader=yaml.CSafeLoader)
