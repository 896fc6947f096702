"""MNIST and its kin as torchvision declares them: sizes, preprocessing per pixel scale, seeded calibration samples."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import FASHION_MNIST_DEB, ROOT, regzip
from torchvision_shim import torchvision_datasets

from tuning.config.enums import PixelScale, Split
from tuning.config.schema import CalibrationSection, DatasetSection
from tuning.data.datasets import (
    IDX_DATASETS,
    BatchLoader,
    LabelledImages,
    calibration_images,
    class_names,
    evaluation_images,
    load_pixels,
)
from tuning.errors import ConfigError, InputError

pytestmark = pytest.mark.fast

MNIST = DatasetSection(root=ROOT / "data")
RAW = ROOT / "data" / "MNIST" / "raw"
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


def test_sampling_the_whole_split_takes_every_image_once_in_file_order():
    # sampling_size equal to the split's size is allowed; without replacement it is the whole split.
    whole = calibration_images(MNIST, CalibrationSection(split=Split.TEST, sampling_size=10000, seed=3), SAMPLE_SHAPE)
    test = evaluation_images(MNIST, Split.TEST, SAMPLE_SHAPE)
    np.testing.assert_array_equal(whole.images, test.images)
    np.testing.assert_array_equal(whole.labels, test.labels)


def test_a_sample_of_one_image_is_one_test_split_image():
    one = calibration_images(MNIST, CalibrationSection(split=Split.TEST, sampling_size=1, seed=5), SAMPLE_SHAPE)
    pixels, labels = load_pixels(MNIST, Split.TEST)
    drawn = np.rint(one.images[0, 0] * 255).astype(np.uint8)  # back to the pixels of a unit-scale image
    matches = np.flatnonzero((pixels == drawn).all(axis=(1, 2)))
    assert len(one) == 1 and len(matches) and one.labels[0] in labels[matches]


@pytest.mark.parametrize(("images", "batch_size", "sizes"), [(8, 4, [4, 4]), (3, 8, [3]), (1, 1, [1]), (0, 2, [])])
def test_loader_length_is_the_number_of_batches(images, batch_size, sizes):
    data = LabelledImages(np.arange(images * 2, dtype=np.float32).reshape(images, 2), np.arange(images))
    loader = BatchLoader(data, batch_size)
    assert [len(labels) for _, labels in loader] == sizes
    assert len(loader) == len(sizes)
    assert loader.batch_size == batch_size  # INC reads it


def test_sampling_more_than_the_split_is_a_config_error():
    with pytest.raises(ConfigError, match="calibration.sampling_size"):
        calibration_images(MNIST, CalibrationSection(split=Split.TEST, sampling_size=10001), SAMPLE_SHAPE)


def test_model_shape_that_does_not_fit_the_images():
    with pytest.raises(InputError, match=r"\[3, 32, 32\]"):
        evaluation_images(MNIST, Split.TEST, (3, 32, 32))


def test_unknown_dataset_class():
    with pytest.raises(ConfigError, match="dataset.name"):
        load_pixels(DatasetSection(root=ROOT / "data", name="CIFAR10"), Split.TEST)


def test_a_name_torchvision_does_not_have_lists_the_datasets_the_readme_names():
    with pytest.raises(ConfigError) as caught:
        class_names(DatasetSection(root=ROOT / "data", name="NoSuchDataset"))
    readme_names = ["MNIST", "FashionMNIST", "KMNIST"]  # README: "the IDX files of dataset.name (MNIST, ...)"
    assert str(caught.value) == (
        f"dataset.name: expected a torchvision IDX dataset ({', '.join(sorted(readme_names))}), got 'NoSuchDataset'"
    )


def test_the_dataset_table_is_torchvisions_idx_datasets():
    """IDX_DATASETS spares the run importing torchvision (with torch); it must say what torchvision says."""
    datasets = torchvision_datasets()

    def declares_own_gz_resources(candidate: object) -> bool:  # MNIST's kin with archives of their own
        resources = vars(candidate).get("resources") if isinstance(candidate, type) else None
        return (
            isinstance(candidate, type)
            and issubclass(candidate, datasets.MNIST)
            and isinstance(resources, list)
            and all(isinstance(item, tuple) and str(item[0]).endswith(".gz") for item in resources)
        )

    torchvision_idx = {name for name in dir(datasets) if declares_own_gz_resources(getattr(datasets, name))}
    assert torchvision_idx == set(IDX_DATASETS)
    for name, dataset in IDX_DATASETS.items():
        torchvision_class = getattr(datasets, name)
        assert dataset.name == name
        assert [tuple(item) for item in torchvision_class.resources] == list(dataset.resources), name
        assert list(torchvision_class.mirrors) == list(dataset.mirrors), name
        assert list(torchvision_class.classes) == list(dataset.classes), name
        assert class_names(DatasetSection(root=ROOT / "data", name=name)) == list(torchvision_class.classes)


def test_a_missing_root_names_both_layouts(tmp_path: Path):
    root = tmp_path / "nowhere"
    with pytest.raises(InputError) as caught:
        load_pixels(DatasetSection(root=root), Split.TEST)
    assert str(caught.value) == (
        f"dataset.root: folder {root} not found; it must hold MNIST/raw/ with the IDX files, or the files themselves"
    )


@pytest.fixture
def regzipped_mnist(tmp_path: Path) -> Path:
    """A dataset.root whose MNIST test files are re-gzipped copies of the vendored ones."""
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        regzip(RAW / name, tmp_path / "MNIST" / "raw" / name)
    return tmp_path


def test_a_recompressed_copy_with_the_same_content_is_accepted(regzipped_mnist):
    raw = regzipped_mnist / "MNIST" / "raw"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert hashlib.md5((raw / name).read_bytes()).digest() != hashlib.md5((RAW / name).read_bytes()).digest()
    pixels, labels = load_pixels(DatasetSection(root=regzipped_mnist), Split.TEST)
    original_pixels, original_labels = load_pixels(MNIST, Split.TEST)
    np.testing.assert_array_equal(pixels, original_pixels)
    np.testing.assert_array_equal(labels, original_labels)
    assert sorted(path.name for path in raw.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_a_changed_extracted_file_beside_an_intact_archive_is_refused(regzipped_mnist):
    raw = regzipped_mnist / "MNIST" / "raw"
    content = bytearray(gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    content[8:100] = bytes((label + 1) % 10 for label in content[8:100])  # 92 labels moved to the next class
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(content))
    with pytest.raises(InputError) as exc:
        load_pixels(DatasetSection(root=regzipped_mnist), Split.TEST)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{raw / 't10k-labels-idx1-ubyte'}: content sha256 ")
    assert "is not MNIST's t10k-labels-idx1-ubyte" in message


def test_extracted_files_alone_are_read(regzipped_mnist):
    raw = regzipped_mnist / "MNIST" / "raw"
    for archive in list(raw.glob("*.gz")):
        archive.with_suffix("").write_bytes(gzip.decompress(archive.read_bytes()))
        archive.unlink()
    pixels, labels = load_pixels(DatasetSection(root=regzipped_mnist), Split.TEST)
    assert pixels.shape == (10000, 28, 28) and len(labels) == 10000


def test_root_may_hold_the_files_themselves(regzipped_mnist):
    flat = regzipped_mnist / "MNIST" / "raw"  # no <name>/raw below it, as in a distribution's folder
    _, labels = load_pixels(DatasetSection(root=flat), Split.TEST)
    assert len(labels) == 10000


def test_another_datasets_files_are_refused(regzipped_mnist):
    (regzipped_mnist / "MNIST").rename(regzipped_mnist / "FashionMNIST")
    with pytest.raises(InputError, match="is not FashionMNIST's t10k-images-idx3-ubyte"):
        load_pixels(DatasetSection(root=regzipped_mnist, name="FashionMNIST"), Split.TEST)


def test_without_a_known_content_checksum_only_the_original_archive_is_accepted(regzipped_mnist):
    # KMNIST's content checksums are not known here: its files are verified by torchvision's archive md5s.
    (regzipped_mnist / "MNIST").rename(regzipped_mnist / "KMNIST")
    raw = regzipped_mnist / "KMNIST" / "raw"
    with pytest.raises(InputError, match="is not the original archive's .* no content checksum is known for KMNIST"):
        load_pixels(DatasetSection(root=regzipped_mnist, name="KMNIST"), Split.TEST)
    for archive in list(raw.glob("*.gz")):
        archive.with_suffix("").write_bytes(gzip.decompress(archive.read_bytes()))
        archive.unlink()
    with pytest.raises(InputError, match="verified only against the original archive beside it"):
        load_pixels(DatasetSection(root=regzipped_mnist, name="KMNIST"), Split.TEST)


def test_the_archive_md5_checked_is_torchvisions_for_that_file(regzipped_mnist):
    KMNIST = torchvision_datasets().KMNIST

    (regzipped_mnist / "MNIST").rename(regzipped_mnist / "KMNIST")
    archive = regzipped_mnist / "KMNIST" / "raw" / "t10k-images-idx3-ubyte.gz"  # the first file read
    torchvision_md5 = [md5 for file, md5 in KMNIST.resources if file == archive.name]
    assert len(torchvision_md5) == 1
    with pytest.raises(InputError) as caught:
        load_pixels(DatasetSection(root=regzipped_mnist, name="KMNIST"), Split.TEST)
    found = hashlib.md5(archive.read_bytes()).hexdigest()
    assert str(caught.value) == (
        f"{archive}: md5 {found} is not the original archive's ({torchvision_md5[0]}), and no content checksum is "
        "known for KMNIST, so a re-compressed or changed copy cannot be verified; use torchvision's original download"
    )


@pytest.mark.skipif(not FASHION_MNIST_DEB.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (bash scripts/setup_system.sh installs it)")
def test_fashion_mnist_from_the_debian_package():
    dataset = DatasetSection(root=FASHION_MNIST_DEB, name="FashionMNIST")
    pixels, labels = load_pixels(dataset, Split.TEST)
    assert pixels.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [1000] * 10  # FashionMNIST's test split is balanced
    assert class_names(dataset)[9] == "Ankle boot"


def test_missing_files():
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte.gz: dataset file not found"):
        load_pixels(DatasetSection(root=ROOT / "tests"), Split.TEST)
