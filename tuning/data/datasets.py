"""Calibration and evaluation data from a torchvision IDX dataset (MNIST and its kin).

The IDX files are read and checked on their decompressed content by tuning/data/idx.py, gzipped
or extracted, from ``<root>/<name>/raw/`` or from ``root`` itself; :data:`IDX_DATASETS` names the
files, the classes and the original archives' md5 sums as torchvision's dataset classes of the same
names declare them (tests/test_data.py compares the two), so a run does not import torchvision and
torch (over a second at start-up). Nothing is written into a configured root; ``dataset.root: null``
reads the user cache, where tuning/data/download.py downloads an archive a split needs that is not there
yet. Images are preprocessed once, as a whole array, into the model's per-sample input shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuning.config.enums import Split
from tuning.config.schema import CalibrationSection, DatasetSection
from tuning.data import download, idx
from tuning.errors import ConfigError, InputError


@dataclass(frozen=True)
class IdxDataset:
    """What torchvision's class of this name declares: its download addresses, its archives with their md5
    sums, its class names."""

    name: str
    mirrors: tuple[str, ...]  # base addresses, in torchvision's order of preference
    resources: tuple[tuple[str, str], ...]  # (archive file name, md5 of the original archive)
    classes: tuple[str, ...]  # in label order


def _declared(
    name: str, mirrors: tuple[str, ...], md5s: tuple[str, str, str, str], classes: tuple[str, ...]
) -> IdxDataset:
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return IdxDataset(name, mirrors, tuple((f"{file}.gz", md5) for file, md5 in zip(files, md5s)), classes)


# torchvision 0.28's MNIST, FashionMNIST and KMNIST (``mirrors``, ``resources``, ``classes``): the IDX datasets of 28x28
# images that declare their own archives (EMNIST and QMNIST do not); tests/test_data.py checks it is all of them.
IDX_DATASETS: dict[str, IdxDataset] = {
    dataset.name: dataset
    for dataset in (
        _declared(
            "MNIST",
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
            tuple(f"{digit} - {word}" for digit, word in enumerate("zero one two three four five six seven eight nine".split())),
        ),
        _declared(
            "FashionMNIST",
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        _declared(
            "KMNIST",
            ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
            ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ),
    )
}


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
    declared = _idx_dataset(dataset.name)
    folder = raw_folder(dataset)
    prefix = "train" if split is Split.TRAIN else "t10k"
    images_path, images_content = _read(dataset, declared, folder, f"{prefix}-images-idx3-ubyte")
    labels_path, labels_content = _read(dataset, declared, folder, f"{prefix}-labels-idx1-ubyte")
    pixels = idx.parse_images(images_content, images_path)
    labels = idx.parse_labels(labels_content, labels_path, len(declared.classes))
    if len(pixels) != len(labels):
        raise InputError(f"{images_path}: {len(pixels)} images, but {labels_path.name} has {len(labels)} labels")
    return pixels, labels


def class_names(dataset: DatasetSection) -> list[str]:
    """The dataset's class names in label order (torchvision's ``classes``), e.g. FashionMNIST's ``T-shirt/top``."""
    return [str(name) for name in _idx_dataset(dataset.name).classes]


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


def _idx_dataset(name: str) -> IdxDataset:
    dataset = IDX_DATASETS.get(name)
    if dataset is None:
        raise ConfigError(
            f"dataset.name: expected a torchvision IDX dataset ({', '.join(sorted(IDX_DATASETS))}), got {name!r}"
        )
    return dataset


def describe_root(dataset: DatasetSection) -> str:
    """Where the dataset is read from, for progress lines."""
    return str(dataset.root) if dataset.root is not None else f"the cache {download.cache_root()}"


def _read(dataset: DatasetSection, declared: IdxDataset, folder: Path, name: str) -> tuple[Path, bytes]:
    spec = _idx_file(declared, name)
    if dataset.root is None:
        files = [archive for archive, _ in declared.resources]
        download.ensure_archive(dataset, spec, list(declared.mirrors), files)
    return idx.read_verified(folder, spec)


def _idx_file(dataset: IdxDataset, name: str) -> idx.IdxFile:
    archive_md5 = dict(dataset.resources).get(f"{name}.gz")
    content_sha256 = idx.CONTENT_SHA256.get(dataset.name, {}).get(name)
    return idx.IdxFile(dataset.name, name, content_sha256, archive_md5)
