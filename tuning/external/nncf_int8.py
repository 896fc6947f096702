"""NNCF's int8 model of the float model, made for ``report``'s reference row (config ``benchmark.nncf_reference``).

``nncf.quantize`` runs on the float model's batch-capable copy (the graph INC quantizes too) with the same
calibration images tuning uses (config ``calibration``), one image per sample, all of them as NNCF's
``subset_size``, and NNCF's defaults otherwise (preset performance for a CNN, fast bias correction, target device
any). Given an ONNX model NNCF uses its ONNX backend and returns QuantizeLinear/DequantizeLinear pairs at the
places its OpenVINO recipe puts FakeQuantize (activations after ReLU, before MaxPool; logits left in fp32), so the
model runs on onnxruntime and OpenVINO alike; on OpenVINO it measured as fast as NNCF's own OpenVINO-backend model
(docs/openvino-nncf.md). NNCF quantizes weights per channel from opset 13 and per tensor below (mnist-12 is opset
12); the model is left at its opset as a user would hand it over.

NNCF is an optional extra (``bash scripts/setup_env.sh nncf``): :func:`unavailable_reason` says why it cannot be
used, and nothing imports it before a model is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuning.data.datasets import LabelledImages
from tuning.errors import InputError
from tuning.files.atomic import write_bytes_atomic
from tuning.files.onnx_io import describe, plain_metadata
from tuning.graph.rewrite import batch_capable_copy
from tuning.measure.environment import import_failure

NNCF_NAME = "nncf-int8"  # the report's name for the row
NNCF_FILE = f"{NNCF_NAME}.onnx"  # written into the report's folder beside report.json
INSTALL_HINT = "install the extra with `bash scripts/setup_env.sh nncf` (or pip install 'mnist-int8-tuning[nncf]')"
# What this module passes to nncf.quantize besides the model and the data: NNCF's defaults otherwise.
_SETTINGS = {"preset": "NNCF's default (performance)", "fast_bias_correction": True, "target_device": "ANY"}


@dataclass(frozen=True)
class NncfReference:
    """How the NNCF row's model was made: stated in report.json and report.md beside its numbers."""

    path: Path
    nncf_version: str
    float_model: Path
    calibration_images: int
    opset: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": NNCF_NAME,
            "path": str(self.path),
            "nncf_version": self.nncf_version,
            "float_model": str(self.float_model),
            "calibration_images": self.calibration_images,
            "opset": self.opset,
            "call": "nncf.quantize(model, nncf.Dataset(images), subset_size=images)",
            "settings": _SETTINGS,
        }

    def sentence(self) -> str:
        weights = "per channel" if self.opset >= 13 else f"per tensor (opset {self.opset}: NNCF needs 13 for per channel)"
        return (
            f"{NNCF_NAME}: NNCF {self.nncf_version}'s `nncf.quantize` (ONNX backend, its defaults: preset performance, "
            f"fast bias correction) on the float model's batch-capable copy with the same {self.calibration_images:,} "
            f"calibration images as tuning; weights {weights}; written to {self.path.name}"
        )


def unavailable_reason() -> str | None:
    """Why NNCF cannot be used here (not installed, or does not import), or None."""
    return import_failure("nncf", "NNCF", INSTALL_HINT)


def quantize_with_nncf(float_model: Path, calibration: LabelledImages, out: Path) -> NncfReference:
    """NNCF's int8 model of ``float_model``, calibrated on ``calibration``, written atomically to ``out``.

    An InputError naming the float model when NNCF cannot quantize it (its message's first line)."""
    import nncf
    import onnx

    model = onnx.load(str(float_model))
    batched = model if describe(model, float_model).batch_dim is None else batch_capable_copy(model, float_model)
    name = batched.graph.input[0].name
    dataset = nncf.Dataset(list(calibration.images), lambda image: {name: image[None]})
    # NNCF draws progress bars on stdout, which carries the report's own answer: they go to stderr.
    with contextlib.redirect_stdout(sys.stderr), _nncf_warnings_quiet():
        try:
            quantized = nncf.quantize(batched, dataset, subset_size=len(calibration))
        except Exception as exc:  # NNCF raises its own and its backends' exception types
            first = next((line for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
            raise InputError(f"{float_model}: NNCF cannot quantize it ({first.strip()})") from None
    opset = next((entry.version for entry in batched.opset_import if entry.domain in ("", "ai.onnx")), 0)
    made = {"made_by": f"nncf {nncf.__version__}: nncf.quantize", "calibration_images": len(calibration)}
    for key, value in sorted(plain_metadata(made).items()):
        quantized.metadata_props.add(key=key, value=value)
    write_bytes_atomic(out, quantized.SerializeToString(deterministic=True))
    return NncfReference(out, nncf.__version__, float_model, len(calibration), opset)


@contextlib.contextmanager
def _nncf_warnings_quiet() -> Iterator[None]:
    """NNCF's logger at errors only: its per-tensor warning for opset < 13 is what :meth:`NncfReference.sentence`
    states, once, in the report."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
