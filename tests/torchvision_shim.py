"""Import torchvision.datasets next to a CPU-only torch.

The torchvision wheel on PyPI is a CUDA build; with the CPU torch wheel its import fails
with ``operator torchvision::nms does not exist`` because its compiled ops do not load.
Declaring the two op schemas it registers at import time lets the pure-Python parts
(datasets, transforms) load; the compiled ops stay unavailable, and this project uses none.
"""

from __future__ import annotations

import types

_MISSING_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fragment = None  # keeps the op declarations registered for the life of the process


def torchvision_datasets() -> types.ModuleType:
    """Return ``torchvision.datasets``, declaring the missing op schemas only if the plain import fails."""
    global _fragment
    try:
        import torchvision.datasets as datasets
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        import sys

        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _fragment = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _MISSING_OPS:
            _fragment.define(schema)
        import torchvision.datasets as datasets
    return datasets
