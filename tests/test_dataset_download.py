"""dataset.root null: MNIST's archives downloaded into the user cache from a real HTTPS server on 127.0.0.1
serving the vendored files, checked, bounded and atomic (tuning/data/download.py)."""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from https_server import Certificate, FileServer, serve_folder

from tuning.config.enums import Split
from tuning.config.schema import DatasetSection
from tuning.data import download
from tuning.data.datasets import load_pixels
from tuning.data.idx import MAX_ARCHIVE_BYTES
from tuning.errors import FetchError, InputError

pytestmark = pytest.mark.fast

RAW = ROOT / "data" / "MNIST" / "raw"
TEST_FILES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: Certificate) -> Path:
    """An empty user cache (XDG_CACHE_HOME), and a client that trusts the test servers' certificate."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    return tmp_path / "cache"


@pytest.fixture
def mirror(certificate: Certificate) -> Iterator[FileServer]:
    with serve_folder(RAW, certificate) as server:
        yield server


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if not path.is_dir()) if folder.exists() else []


def test_null_root_downloads_what_a_split_needs_into_the_cache_once(cache: Path, mirror: FileServer) -> None:
    dataset = DatasetSection(root=None, download_url=mirror.url)
    pixels, labels = load_pixels(dataset, Split.TEST)
    assert pixels.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert mirror.requested == [f"/{name}" for name in TEST_FILES]  # the test split's two archives only
    folder = cache / "mnist-int8-tuning" / "datasets" / "MNIST" / "raw"
    assert files_under(cache) == [folder / name for name in TEST_FILES]  # no temporaries, no lock files
    for name in TEST_FILES:
        assert (folder / name).read_bytes() == (RAW / name).read_bytes()
    vendored_pixels, vendored_labels = load_pixels(DatasetSection(root=ROOT / "data"), Split.TEST)
    assert np.array_equal(pixels, vendored_pixels) and np.array_equal(labels, vendored_labels)

    load_pixels(dataset, Split.TEST)
    assert len(mirror.requested) == 2  # read from the cache, not downloaded again


def test_an_archive_with_another_md5_is_refused_and_leaves_nothing(
    cache: Path, tmp_path: Path, certificate: Certificate
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for name in TEST_FILES:  # the same content, gzipped again: not torchvision's archive
        (served / name).write_bytes(gzip.compress(gzip.decompress((RAW / name).read_bytes()), mtime=0))
    with serve_folder(served, certificate) as server, pytest.raises(FetchError) as caught:
        load_pixels(DatasetSection(root=None, download_url=server.url), Split.TEST)
    message = str(caught.value)
    assert "downloaded file has the wrong md5 (expected 9fb629c4189551a2d022fa330f9573f3, got " in message
    assert "check dataset.download_url" in message and "\n" not in message
    assert files_under(cache) == []


def test_offline_is_one_line_with_the_manual_steps(cache: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on: connection refused, as with no network
        closed.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{closed.getsockname()[1]}/mnist"
    with pytest.raises(FetchError) as caught:
        load_pixels(DatasetSection(root=None, download_url=url), Split.TRAIN)
    message = str(caught.value)
    folder = cache / "mnist-int8-tuning" / "datasets" / "MNIST" / "raw"
    assert message.startswith(f"{url}/train-images-idx3-ubyte.gz: download failed after 3 attempts: connection refused; ")
    assert message.endswith(
        "offline? download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz from {url}/ into {folder}/ yourself, or pass --dataset-location FOLDER "
        "(dataset.root) holding MNIST/raw/ with them"
    )
    assert files_under(cache) == [] and not cache.exists()  # the folders made for the download are gone too


def test_an_archive_over_the_size_limit_is_refused_before_its_body(
    cache: Path, tmp_path: Path, certificate: Certificate
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with open(served / "train-images-idx3-ubyte.gz", "wb") as sparse:  # takes no disk space
        sparse.truncate(MAX_ARCHIVE_BYTES + 1)
    with serve_folder(served, certificate) as server, pytest.raises(FetchError) as caught:
        load_pixels(DatasetSection(root=None, download_url=server.url), Split.TRAIN)
    assert f"response is {MAX_ARCHIVE_BYTES + 1} bytes, more than the archive size limit ({MAX_ARCHIVE_BYTES})" in str(
        caught.value
    )
    assert files_under(cache) == []


def test_a_configured_root_is_only_read_never_downloaded_into(
    cache: Path, tmp_path: Path, mirror: FileServer
) -> None:
    with pytest.raises(InputError, match="dataset file not found"):
        load_pixels(DatasetSection(root=tmp_path, download_url=mirror.url), Split.TEST)
    assert mirror.requested == [] and files_under(cache) == []


def test_a_copy_already_in_the_cache_is_verified_not_replaced(cache: Path, mirror: FileServer) -> None:
    folder = cache / "mnist-int8-tuning" / "datasets" / "MNIST" / "raw"
    folder.mkdir(parents=True)
    edited = bytearray(gzip.decompress((RAW / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    edited[-1] = (edited[-1] + 1) % 10
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(edited))  # extracted, and edited
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes((RAW / "t10k-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte: content sha256 .* is not MNIST's"):
        load_pixels(DatasetSection(root=None, download_url=mirror.url), Split.TEST)
    assert mirror.requested == []


def test_no_https_address_known_is_said_without_trying_the_network(cache: Path) -> None:
    # torchvision lists only http addresses for FashionMNIST; fetch refuses plain http but to localhost.
    with pytest.raises(FetchError) as caught:
        load_pixels(DatasetSection(name="FashionMNIST", root=None), Split.TEST)
    message = str(caught.value)
    assert "torchvision lists no https address for FashionMNIST (http://" in message
    assert "into " in message and "--dataset-location" in message


def test_the_cache_follows_xdg_cache_home_and_ignores_a_relative_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.cache_root() == tmp_path / "xdg" / "mnist-int8-tuning" / "datasets"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for relative in ("cache", ""):  # the XDG specification: a relative path is invalid, use the default
        monkeypatch.setenv("XDG_CACHE_HOME", relative)
        assert download.cache_root() == tmp_path / "home" / ".cache" / "mnist-int8-tuning" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert download.cache_folder("KMNIST") == tmp_path / "home" / ".cache" / "mnist-int8-tuning" / "datasets" / "KMNIST" / "raw"
    assert not os.path.exists(tmp_path / "home")  # naming the cache creates nothing
