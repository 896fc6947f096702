"""Importing INC without the modules of other frameworks that its package ``__init__`` files import.

``import neural_compressor`` (and ``neural_compressor.quantization``) imports every adaptor, model wrapper
and metric of INC, whatever the framework. Two of them cost an ONNX run two seconds or more of start-up
and are never used by it:

- ``neural_compressor.model.torch_model`` imports torch whenever torch is installed (the tests build
  their models with it), and with it much of torch's Python code: a second or more, and more at exit;
- ``neural_compressor.metric.bleu`` builds regular expressions over every Unicode character (~0.8 s).

(``neural_compressor.adaptor.pytorch`` costs a second too, but that is INC's CPU probe, a py-cpuinfo
subprocess, which the onnxruntime adaptor would make at its first use anyway.)

While INC's packages import, these two names are held in ``sys.modules`` by placeholder modules (the model
wrapper's defines its PyTorch classes as None, as INC sets them when torch is not installed), so INC's
imports of them find the placeholders. The placeholders are removed right after: an explicit import of
one of them later gets the real module. Pinned to neural-compressor 3.7.1 (pyproject.toml);
tests/test_inc_loading.py checks that the placeholders' names still exist in INC and that INC quantizes with
them, and the real INC runs of the suite go through here.

One more second goes to INC's onnxruntime adaptor, which parses its 20 kB capability file (``onnxrt.yaml``)
anew for every ``fit()``, with PyYAML's pure-Python parser (50-100 ms each, 14 times on the shipped config).
The adaptor module's ``yaml`` is given libyaml's safe loader instead, where PyYAML has it: the same
constructors on a C parser, the same data (tests/test_inc_loading.py compares them) in a few milliseconds.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import IO, Any

import yaml

# The module each placeholder stands for, and what the placeholder must define for INC's own imports of it
# (``neural_compressor.model.model`` does ``from ...torch_model import *`` and names these three classes).
PLACEHOLDERS: dict[str, dict[str, object]] = {
    "neural_compressor.model.torch_model": {"PyTorchModel": None, "IPEXModel": None, "PyTorchFXModel": None},
    "neural_compressor.metric.bleu": {},
}


def import_inc() -> types.ModuleType:
    """``neural_compressor``, with ``neural_compressor.quantization`` imported: the first call imports them
    without the placeholders' modules; later calls return what is already imported."""
    if "neural_compressor.quantization" not in sys.modules:
        placed = [name for name in PLACEHOLDERS if name not in sys.modules]
        for name in placed:
            placeholder = types.ModuleType(name, "Placeholder of tuning/inc/loading.py: not used by ONNX runs.")
            placeholder.__dict__.update(PLACEHOLDERS[name])
            placeholder.__all__ = list(PLACEHOLDERS[name])  # type: ignore[attr-defined]
            sys.modules[name] = placeholder
        try:
            import neural_compressor.quantization  # noqa: F401 - imports the package and what fit() needs
        finally:
            for name in placed:
                sys.modules.pop(name, None)
    if yaml.__with_libyaml__:
        importlib.import_module("neural_compressor.adaptor.onnxrt").yaml = types.SimpleNamespace(safe_load=safe_load_c)
    return sys.modules["neural_compressor"]


def safe_load_c(stream: IO[str] | str) -> Any:
    """``yaml.safe_load`` on libyaml's parser."""
    return yaml.load(stream, Loader=yaml.CSafeLoader)
