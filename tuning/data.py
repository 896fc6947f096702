"""Calibration and evaluation data from a torchvision IDX dataset (MNIST and its kin).

The raw ``.gz`` files are checked against torchvision's own md5 sums and extracted
beside themselves; no download is ever attempted. Images are preprocessed once,
as a whole array, into the model's per-sample input shape.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuning._torchvision import torchvision_datasets
from tuning.atomic import atomic_output
from tuning.config import CalibrationSection, DatasetSection, Split
from tuning.errors import ConfigError, InputError

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LabelledImages:
    """Preprocessed float32 images shaped ``(N, *sample_shape)`` with int64 labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


class BatchLoader:
    """The dataloader shape INC expects: a ``batch_size`` attribute, iterating ``(images, labels)``."""

    def __init__(self, data: LabelledImages, batch_size: int) -> None:
        self.data = data
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.data), self.batch_size):
            stop = start + self.batch_size
            yield self.data.images[start:stop], self.data.labels[start:stop]

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)


def load_pixels(dataset: DatasetSection, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 images ``(N, H, W)`` and int64 labels of one split, read by torchvision."""
    dataset_class = _dataset_class(dataset.name)
    _prepare_raw_files(dataset_class, dataset.root)
    try:
        split_data = dataset_class(str(dataset.root), train=split is Split.TRAIN, download=False)
    # torchvision checks IDX headers with bare asserts, so a malformed file raises AssertionError.
    except (RuntimeError, OSError, ValueError, AssertionError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "malformed IDX file"
        raise InputError(f"{dataset.root}: cannot read {dataset.name} {split.value} split: {reason}") from None
    pixels = split_data.data.numpy()
    labels = split_data.targets.numpy().astype(np.int64)
    if len(pixels) != len(labels):
        raise InputError(
            f"{dataset.root}: {dataset.name} {split.value} split has {len(pixels)} images but {len(labels)} labels"
        )
    return pixels, labels


def preprocess(pixels: np.ndarray, dataset: DatasetSection, sample_shape: tuple[int, ...]) -> np.ndarray:
    """Scale and normalise uint8 pixels, reshaped to the model's per-sample input shape."""
    if int(np.prod(pixels.shape[1:])) != int(np.prod(sample_shape)):
        raise InputError(
            f"model input shape {list(sample_shape)} per sample does not fit {dataset.name} images "
            f"{list(pixels.shape[1:])}"
        )
    scaled = pixels.astype(np.float32) * np.float32(dataset.pixel_scale.factor)
    normalised = (scaled - np.float32(dataset.mean)) / np.float32(dataset.std)
    return normalised.reshape((len(pixels), *sample_shape))


def evaluation_images(dataset: DatasetSection, split: Split, sample_shape: tuple[int, ...]) -> LabelledImages:
    """The whole split, in file order."""
    pixels, labels = load_pixels(dataset, split)
    return LabelledImages(preprocess(pixels, dataset, sample_shape), labels)


def calibration_images(
    dataset: DatasetSection, calibration: CalibrationSection, sample_shape: tuple[int, ...]
) -> LabelledImages:
    """``sampling_size`` images drawn without replacement from the split, reproducibly from ``seed``."""
    pixels, labels = load_pixels(dataset, calibration.split)
    if calibration.sampling_size > len(labels):
        raise ConfigError(
            f"calibration.sampling_size: {calibration.sampling_size} is more than the "
            f"{len(labels)} images of the {calibration.split.value} split"
        )
    chosen = np.random.default_rng(calibration.seed).choice(len(labels), calibration.sampling_size, replace=False)
    chosen.sort()
    return LabelledImages(preprocess(pixels[chosen], dataset, sample_shape), labels[chosen])


def _dataset_class(name: str) -> type:
    datasets = torchvision_datasets()
    dataset_class = getattr(datasets, name, None)
    if not _is_idx_dataset(dataset_class, datasets.MNIST):
        choices = sorted(n for n in dir(datasets) if _is_idx_dataset(getattr(datasets, n), datasets.MNIST))
        raise ConfigError(f"dataset.name: expected a torchvision IDX dataset ({', '.join(choices)}), got {name!r}")
    return dataset_class


def _is_idx_dataset(candidate: object, base: type) -> bool:
    """MNIST-like classes declaring their own ``resources`` as (file.gz, md5) pairs (not EMNIST, QMNIST)."""
    resources = vars(candidate).get("resources") if isinstance(candidate, type) else None
    return (
        isinstance(candidate, type)
        and issubclass(candidate, base)
        and isinstance(resources, list)
        and all(isinstance(item, tuple) and str(item[0]).endswith(".gz") for item in resources)
    )


def _prepare_raw_files(dataset_class: type, root: Path) -> None:
    """Check each vendored ``.gz`` against torchvision's md5 and extract it once."""
    from torchvision.datasets.utils import calculate_md5

    if not Path(root).is_dir():
        raise InputError(f"dataset.root: folder {root} not found; it must hold {dataset_class.__name__}/raw/*.gz")
    raw_folder = Path(root) / dataset_class.__name__ / "raw"
    for filename, expected_md5 in dataset_class.resources:
        archive = raw_folder / filename
        extracted = archive.with_suffix("")
        if not archive.is_file():
            raise InputError(f"{archive}: raw dataset file not found (dataset.root is {root})")
        actual_md5 = calculate_md5(str(archive))
        if actual_md5 != expected_md5:
            raise InputError(f"{archive}: md5 mismatch, expected {expected_md5}, got {actual_md5}")
        if extracted.is_file():
            continue
        # A corrupt archive is bad input, but atomic_output reports any OSError (BadGzipFile is one) as an
        # output failure; so read errors are turned into InputError inside the block, write errors are not.
        with atomic_output(extracted) as tmp, open(tmp, "wb") as target:
            with gzip.open(archive, "rb") as source:
                while True:
                    try:
                        chunk = source.read(_CHUNK)
                    except (OSError, EOFError, zlib.error) as exc:
                        raise InputError(f"{archive}: cannot extract ({exc}); restore the original file") from None
                    if not chunk:
                        break
                    target.write(chunk)
