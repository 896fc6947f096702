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
"""

from __future__ import annotations

import sys
import types

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
    return sys.modules["neural_compressor"]
