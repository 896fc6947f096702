"""Calibration and evaluation data from a torchvision IDX dataset (MNIST and its kin).

The IDX files are read and checked on their decompressed content by tuning/data/idx.py, gzipped
or extracted, from ``<root>/<name>/raw/`` or from ``root`` itself; torchvision's dataset class
names the files, the classes and the original archives' md5 sums. Nothing is written into a
configured root; ``dataset.root: null`` reads the user cache, where tuning/data/download.py downloads
an archive a split needs that is not there yet. Images are preprocessed once, as a whole array, into
the model's per-sample input shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuning.config.enums import Split
from tuning.config.schema import CalibrationSection, DatasetSection
from tuning.data import download, idx
from tuning.data.torchvision_shim import torchvision_datasets
from tuning.errors import ConfigError, InputError


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
    """Raw uint8 images ``(N, H, W)`` and int64 labels of one split, verified on their content (tuning/data/idx.py)."""
    dataset_class = _dataset_class(dataset.name)
    folder = raw_folder(dataset)
    prefix = "train" if split is Split.TRAIN else "t10k"
    images_path, images_content = _read(dataset, dataset_class, folder, f"{prefix}-images-idx3-ubyte")
    labels_path, labels_content = _read(dataset, dataset_class, folder, f"{prefix}-labels-idx1-ubyte")
    pixels = idx.parse_images(images_content, images_path)
    labels = idx.parse_labels(labels_content, labels_path, len(dataset_class.classes))
    if len(pixels) != len(labels):
        raise InputError(f"{images_path}: {len(pixels)} images, but {labels_path.name} has {len(labels)} labels")
    return pixels, labels


def class_names(dataset: DatasetSection) -> list[str]:
    """The dataset's class names in label order (torchvision's ``classes``), e.g. FashionMNIST's ``T-shirt/top``."""
    return [str(name) for name in _dataset_class(dataset.name).classes]


def raw_folder(dataset: DatasetSection) -> Path:
    """``<root>/<name>/raw`` (torchvision's layout) when it exists, else ``root`` itself holds the files;
    for ``root: null``, the cache's folder of the dataset (tuning/data/download.py)."""
    if dataset.root is None:
        return download.cache_folder(dataset.name)
    root = Path(dataset.root)
    if not root.is_dir():
        raise InputError(
            f"dataset.root: folder {root} not found; it must hold {dataset.name}/raw/ with the IDX files, "
            "or the files themselves"
        )
    nested = root / dataset.name / "raw"
    return nested if nested.is_dir() else root


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


def describe_root(dataset: DatasetSection) -> str:
    """Where the dataset is read from, for progress lines."""
    return str(dataset.root) if dataset.root is not None else f"the cache {download.cache_root()}"


def _read(dataset: DatasetSection, dataset_class: type, folder: Path, name: str) -> tuple[Path, bytes]:
    spec = _idx_file(dataset_class, name)
    if dataset.root is None:
        files = [str(archive) for archive, _ in dataset_class.resources]
        download.ensure_archive(dataset, spec, list(dataset_class.mirrors), files)
    return idx.read_verified(folder, spec)


def _idx_file(dataset_class: type, name: str) -> idx.IdxFile:
    archive_md5 = dict(dataset_class.resources).get(f"{name}.gz")
    content_sha256 = idx.CONTENT_SHA256.get(dataset_class.__name__, {}).get(name)
    return idx.IdxFile(dataset_class.__name__, name, content_sha256, archive_md5)
