"""tuning.measure.evaluate.verify_batch_copy at its edges: the tolerance, the argmax's axis, the batch steps.

The models are small classifiers built here (tests/tiny_models.py), with a fixed batch of 1 or 2 like the zoo's,
and their batch-capable copies (tuning.graph.rewrite). Each copy is then changed in a way computed from the
original's own scores, so that what the verification must say follows from np.allclose's rule and the argmax
written out again here, not from a previous run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tests.tiny_models import mlp
from tuning.config.enums import Split
from tuning.config.schema import DatasetSection
from tuning.data.datasets import evaluation_images
from tuning.errors import InputError
from tuning.graph.rewrite import batch_capable_copy
from tuning.measure.evaluate import VERIFY_ATOL, VERIFY_IMAGES, VERIFY_RTOL, verify_batch_copy

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return evaluation_images(DatasetSection(root=ROOT / "data"), Split.TEST, (1, 28, 28)).images


def _fixed_batch_mlp(folder: Path, batch: int = 1) -> onnx.ModelProto:
    return onnx.load(str(mlp(folder / f"mlp-b{batch}.onnx", batch=batch)))


def _scores_one_by_one(model: onnx.ModelProto, images: np.ndarray, batch: int = 1) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run(None, {"pixels": images[start : start + batch]})[0] for start in range(0, len(images), batch)]
    )


def _shift_output_bias(model: onnx.ModelProto, shift: np.ndarray) -> None:
    """Add ``shift`` to the last bias (``b2``), which the model adds to every image's scores."""
    bias = next(init for init in model.graph.initializer if init.name == "b2")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + shift.astype(np.float32), "b2"))


def _allowed(scores: np.ndarray) -> np.ndarray:
    """np.allclose's tolerance per score, written out: atol + rtol * |expected|."""
    return VERIFY_ATOL + VERIFY_RTOL * np.abs(scores)


@pytest.mark.parametrize("factor", [0.5, 1.5, 1000.0])
def test_a_shift_below_the_tolerance_passes_and_one_beyond_it_is_refused(
    images: np.ndarray, tmp_path: Path, factor: float
) -> None:
    """Every score of one class moved by ``factor`` times the least difference the tolerance allows in that
    class: half of it is accepted, 1.5 times it (just beyond) and 1000 times it (far beyond) are refused."""
    original = _fixed_batch_mlp(tmp_path)
    scores = _scores_one_by_one(original, images[:VERIFY_IMAGES])
    allowed = _allowed(scores)
    column = int(np.argmin(allowed.min(axis=0)))
    shift = np.zeros(scores.shape[1], np.float32)
    shift[column] = factor * allowed[:, column].min()
    copy = batch_capable_copy(original, "mlp.onnx")
    _shift_output_bias(copy, shift)
    if factor < 1:
        difference = verify_batch_copy(original, copy, images, "mlp.onnx")
        # The largest difference is the shift itself, up to float32 rounding of the shifted scores.
        assert difference == pytest.approx(shift[column], rel=0.05)
    else:
        with pytest.raises(InputError, match=rf"^mlp\.onnx: .*outputs differ from the original's on {VERIFY_IMAGES} test"):
            verify_batch_copy(original, copy, images, "mlp.onnx")


def test_a_flipped_class_within_the_tolerance_is_refused(images: np.ndarray, tmp_path: Path) -> None:
    """One image's two best classes are made almost tied in the original; the copy's bias moves them past each
    other by less than the tolerance. np.allclose passes, the argmax of that image's row differs: refused.
    The image is not the one holding the batch's largest score, so only a per-row argmax sees the flip."""
    original = _fixed_batch_mlp(tmp_path)
    batch = images[:VERIFY_IMAGES]
    scores = _scores_one_by_one(original, batch)
    row = int(np.argsort(scores.max(axis=1))[len(batch) // 2])  # a middling image, not the batch's maximum
    first, second = np.argsort(scores[row])[::-1][:2]
    gap = float(scores[row, first] - scores[row, second])
    tie = np.zeros(scores.shape[1], np.float32)
    tie[second] = gap - 2e-6  # second now just below first
    _shift_output_bias(original, tie)
    tied = _scores_one_by_one(original, batch)
    assert tied[row].argmax() == first and 0 < tied[row, first] - tied[row, second] < 4e-6

    copy = batch_capable_copy(original, "mlp.onnx")
    _shift_output_bias(copy, np.eye(scores.shape[1], dtype=np.float32)[second] * 5e-6)
    flipped = _scores_one_by_one(copy, batch)
    assert np.allclose(flipped, tied, rtol=VERIFY_RTOL, atol=VERIFY_ATOL)  # within tolerance everywhere
    assert flipped[row].argmax() == second  # but this image's class changed
    assert flipped.argmax() == tied.argmax() and np.array_equal(flipped.argmax(axis=0), tied.argmax(axis=0))
    with pytest.raises(InputError, match=r"outputs differ from the original's"):
        verify_batch_copy(original, copy, images, "mlp.onnx")


@pytest.mark.parametrize("count, expected", [(VERIFY_IMAGES, VERIFY_IMAGES), (7, 6), (5, 4), (2, 2)])
def test_the_verified_images_are_whole_batches_of_the_original(
    images: np.ndarray, tmp_path: Path, count: int, expected: int
) -> None:
    """A model with a fixed batch of 2 is checked on ``count`` images rounded down to whole batches: a shift of
    image ``expected`` (the first left out) is not seen, one of image ``expected - 1`` is."""
    original = _fixed_batch_mlp(tmp_path, batch=2)
    copy = batch_capable_copy(original, "mlp2.onnx")
    assert verify_batch_copy(original, copy, images, "mlp2.onnx", count=count) <= VERIFY_ATOL
    # The changed copy differs from the original only on images whose pixel (0, 0) is lit: light one at a time.
    marked = np.zeros_like(images[: expected + 1])
    _mark_first_pixel(copy)
    assert verify_batch_copy(original, copy, marked, "mlp2.onnx", count=count) <= VERIFY_ATOL
    marked[expected, 0, 0, 0] = 1.0  # beyond the whole batches: not checked
    assert verify_batch_copy(original, copy, marked, "mlp2.onnx", count=count) <= VERIFY_ATOL
    marked[expected - 1, 0, 0, 0] = 1.0  # the last image checked
    with pytest.raises(InputError, match=rf"outputs differ from the original's on {expected} test images"):
        verify_batch_copy(original, copy, marked, "mlp2.onnx", count=count)


def _mark_first_pixel(model: onnx.ModelProto) -> None:
    """Make the model's scores depend strongly on pixel (0, 0), which the original weighs like any other."""
    weights = next(init for init in model.graph.initializer if init.name == "w1")
    array = numpy_helper.to_array(weights).copy()
    array[0, :] += 100.0
    weights.CopyFrom(numpy_helper.from_array(array, "w1"))


def test_fewer_images_than_one_batch_is_refused(images: np.ndarray, tmp_path: Path) -> None:
    original = _fixed_batch_mlp(tmp_path, batch=2)
    copy = batch_capable_copy(original, "mlp2.onnx")
    with pytest.raises(InputError, match=r"^mlp2\.onnx: fewer test images than the model's batch size 2$"):
        verify_batch_copy(original, copy, images[:1], "mlp2.onnx")
    assert verify_batch_copy(original, copy, images[:2], "mlp2.onnx") <= VERIFY_ATOL
