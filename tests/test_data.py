"""MNIST through torchvision: sizes, preprocessing per pixel scale, seeded calibration samples."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from tuning.config import CalibrationSection, DatasetSection, PixelScale, Split
from tuning.data import BatchLoader, calibration_images, evaluation_images, load_pixels
from tuning.errors import ConfigError, InputError

from conftest import ROOT

MNIST = DatasetSection(root=ROOT / "data")
SAMPLE_SHAPE = (1, 28, 28)


def idx_counts(name: str) -> int:
    """Image count straight from the IDX header, independent of torchvision."""
    with gzip.open(ROOT / "data" / "MNIST" / "raw" / name) as handle:
        return int.from_bytes(handle.read(8)[4:8], "big")


def test_split_sizes_match_the_idx_headers():
    train_pixels, train_labels = load_pixels(MNIST, Split.TRAIN)
    test_pixels, test_labels = load_pixels(MNIST, Split.TEST)
    assert len(train_pixels) == len(train_labels) == idx_counts("train-images-idx3-ubyte.gz") == 60000
    assert len(test_pixels) == len(test_labels) == idx_counts("t10k-images-idx3-ubyte.gz") == 10000
    assert train_pixels.dtype == np.uint8 and train_pixels.shape[1:] == (28, 28)
    assert set(np.unique(test_labels)) == set(range(10))


@pytest.mark.parametrize(("scale", "maximum"), [(PixelScale.UNIT, 1.0), (PixelScale.RAW, 255.0)])
def test_preprocessing_per_pixel_scale(scale, maximum):
    images = evaluation_images(DatasetSection(root=ROOT / "data", pixel_scale=scale), Split.TEST, SAMPLE_SHAPE)
    assert images.images.shape == (10000, *SAMPLE_SHAPE)
    assert images.images.dtype == np.float32
    assert images.images.min() == 0.0 and images.images.max() == maximum
    pixels, _ = load_pixels(MNIST, Split.TEST)
    np.testing.assert_allclose(images.images[0, 0], pixels[0] * (maximum / 255.0), rtol=1e-6)


def test_mean_and_std_normalise_after_scaling():
    normalised = evaluation_images(
        DatasetSection(root=ROOT / "data", mean=0.1307, std=0.3081), Split.TEST, SAMPLE_SHAPE
    )
    pixels, _ = load_pixels(MNIST, Split.TEST)
    np.testing.assert_allclose(normalised.images[3, 0], (pixels[3] / 255.0 - 0.1307) / 0.3081, rtol=1e-5)


def test_calibration_sample_is_seeded_and_from_the_train_split():
    first = calibration_images(MNIST, CalibrationSection(sampling_size=50, seed=7), SAMPLE_SHAPE)
    again = calibration_images(MNIST, CalibrationSection(sampling_size=50, seed=7), SAMPLE_SHAPE)
    other = calibration_images(MNIST, CalibrationSection(sampling_size=50, seed=8), SAMPLE_SHAPE)
    assert len(first) == 50
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    train = evaluation_images(MNIST, Split.TRAIN, SAMPLE_SHAPE).images
    assert any(np.array_equal(first.images[0], image) for image in train[:60000])


def test_loader_batches_cover_every_image_once():
    data = calibration_images(MNIST, CalibrationSection(sampling_size=10, seed=0), SAMPLE_SHAPE)
    batches = list(BatchLoader(data, batch_size=4))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([images for images, _ in batches]), data.images)


def test_sampling_more_than_the_split_is_a_config_error():
    with pytest.raises(ConfigError, match="calibration.sampling_size"):
        calibration_images(MNIST, CalibrationSection(split=Split.TEST, sampling_size=10001), SAMPLE_SHAPE)


def test_model_shape_that_does_not_fit_the_images():
    with pytest.raises(InputError, match=r"\[3, 32, 32\]"):
        evaluation_images(MNIST, Split.TEST, (3, 32, 32))


def test_unknown_dataset_class():
    with pytest.raises(ConfigError, match="dataset.name"):
        load_pixels(DatasetSection(root=ROOT / "data", name="CIFAR10"), Split.TEST)


def test_missing_and_corrupt_raw_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(ROOT / "data" / "MNIST" / "raw", raw, ignore=shutil.ignore_patterns("*-ubyte"))
    dataset = DatasetSection(root=tmp_path)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InputError, match="t10k-labels-idx1-ubyte.gz: raw dataset file not found"):
        load_pixels(dataset, Split.TEST)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match="md5 mismatch"):
        load_pixels(dataset, Split.TEST)
