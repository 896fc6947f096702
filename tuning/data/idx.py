"""IDX dataset files (MNIST and its kin): found, read, and checked on what is read.

A file may come gzipped (torchvision's download, the original archives, a distribution package
that re-compresses them, as Debian's ``dataset-fashion-mnist`` does) or extracted (``*-ubyte``,
e.g. a local copy). Whatever wraps it, the check is on the decompressed bytes, the content the
pipeline reads:

1. its sha256 against the known content checksum (:data:`CONTENT_SHA256`), so a re-compressed
   copy with the same content passes and an edited file fails; for a dataset with no known content
   checksum (KMNIST), the archive's md5 must be torchvision's (the original download), and an
   extracted copy must hold that archive's content;
2. the IDX header: magic number (unsigned bytes, 3 dimensions for images, 1 for labels), the
   dimensions, and a size that is exactly header plus data;
3. labels: as many as images, each below the number of classes.

Every copy present (the ``.gz`` and the extracted file) is checked, since other tools read
either. Nothing is written: the content is decompressed in memory, bounded by
:data:`MAX_CONTENT_BYTES`, and an archive is read whole but never past :data:`MAX_ARCHIVE_BYTES`
(gzip readers skip zero padding after the stream byte by byte, so a valid archive followed by
gigabytes of zeros would otherwise be read to its end).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuning.errors import InputError
from tuning.files.inputs import read_bounded

IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, columns)
LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
# The largest file of MNIST, FashionMNIST and KMNIST is 47,040,016 bytes (60,000 images of 28x28).
MAX_CONTENT_BYTES = 128 * 1024 * 1024
# The largest archive, train-images-idx3-ubyte.gz, is 9.9 MB (its content compresses to a fifth).
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024

# sha256 of the decompressed IDX files. MNIST: the vendored data/MNIST/raw archives (torchvision's md5s).
# FashionMNIST: Zalando's archives (torchvision's md5s); Debian's dataset-fashion-mnist re-gzips the same
# content. KMNIST: unknown here (no copy of the original archives was at hand), so only torchvision's
# original archives are accepted for it (their md5s are torchvision's).
CONTENT_SHA256: dict[str, dict[str, str]] = {
    "MNIST": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}


@dataclass(frozen=True)
class IdxFile:
    """What one IDX file of a dataset must be: its name and what is known to verify it."""

    dataset: str  # e.g. "FashionMNIST", for messages
    name: str  # extracted name, e.g. "t10k-labels-idx1-ubyte"; the archive is name + ".gz"
    content_sha256: str | None  # of the decompressed bytes; None when unknown
    archive_md5: str | None  # torchvision's md5 of the original .gz


def read_verified(folder: Path, spec: IdxFile) -> tuple[Path, bytes]:
    """The verified content of ``spec`` from ``folder`` and the file it was read from.

    Every copy present (archive, extracted) must pass."""
    archive = folder / f"{spec.name}.gz"
    extracted = folder / spec.name
    copies = [path for path in (archive, extracted) if _exists(path)]
    if not copies:
        raise InputError(f"{archive}: dataset file not found (nor {extracted.name} extracted beside it)")
    contents: dict[Path, bytes] = {}
    for path in copies:
        contents[path] = _read_content(path)
        _check_content(path, contents[path], spec, contents.get(archive))
    return copies[0], contents[copies[0]]


def _exists(path: Path) -> bool:
    """Whether anything is at ``path``: what is there (a folder, a FIFO, a link into /proc) is the reader's to judge."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise InputError(f"{path}: cannot read dataset file ({exc.strerror or exc})") from None
    return True


def _check_content(path: Path, content: bytes, spec: IdxFile, archive_content: bytes | None) -> None:
    """Raise InputError unless ``content`` (read from ``path``) is ``spec``'s; see the module's rules."""
    if spec.content_sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != spec.content_sha256:
            raise InputError(
                f"{path}: content sha256 {digest[:16]}… is not {spec.dataset}'s {spec.name} "
                f"({spec.content_sha256[:16]}…): the file was changed or belongs to another dataset; restore it"
            )
        return
    # No content checksum known: only the original archive vouches for the content.
    if path.suffix == ".gz":
        md5 = hashlib.md5(_read_archive(path)).hexdigest()
        if md5 != spec.archive_md5:
            raise InputError(
                f"{path}: md5 {md5} is not the original archive's ({spec.archive_md5}), and no content checksum "
                f"is known for {spec.dataset}, so a re-compressed or changed copy cannot be verified; use "
                "torchvision's original download"
            )
        return
    if archive_content is None:
        raise InputError(
            f"{path}: no content checksum is known for {spec.dataset}, so an extracted file is verified only "
            f"against the original archive beside it ({spec.name}.gz), which is missing"
        )
    if content != archive_content:
        raise InputError(f"{path}: differs from the content of {spec.name}.gz beside it; restore the original")


def _read_content(path: Path) -> bytes:
    """The decompressed bytes of ``path`` (gzip when it ends in .gz), at most MAX_CONTENT_BYTES."""
    if path.suffix != ".gz":
        return read_bounded(path, MAX_CONTENT_BYTES, "IDX dataset file", InputError, "the IDX file size limit")
    chunks = []
    total = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(_read_archive(path)), mode="rb") as source:
            while chunk := source.read(_CHUNK):
                total += len(chunk)
                if total > MAX_CONTENT_BYTES:
                    raise InputError(
                        f"{path}: decompresses to more than the {MAX_CONTENT_BYTES} bytes an IDX dataset file may have"
                    )
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot decompress ({exc}); restore the original file") from None
    return b"".join(chunks)


def _read_archive(path: Path) -> bytes:
    """The compressed bytes of ``path``, refused past :data:`MAX_ARCHIVE_BYTES` (padding included)."""
    return read_bounded(path, MAX_ARCHIVE_BYTES, "dataset archive", InputError, "the archive size limit")


def parse_images(content: bytes, source: Path) -> np.ndarray:
    """uint8 images ``(N, rows, columns)`` from verified IDX content; the header must describe it exactly."""
    count, rows, columns = _header(content, source, IMAGE_MAGIC, 3)
    return np.frombuffer(content, dtype=np.uint8, offset=16).reshape(count, rows, columns)


def parse_labels(content: bytes, source: Path, num_classes: int) -> np.ndarray:
    """int64 labels ``(N,)`` from verified IDX content; each must be below ``num_classes``."""
    (count,) = _header(content, source, LABEL_MAGIC, 1)
    labels = np.frombuffer(content, dtype=np.uint8, offset=8).astype(np.int64)
    if count and labels.max() >= num_classes:
        raise InputError(f"{source}: label {labels.max()} is out of range; the dataset has {num_classes} classes")
    return labels


def _header(content: bytes, source: Path, magic: int, ndims: int) -> tuple[int, ...]:
    header_size = 4 + 4 * ndims
    kind = "images" if magic == IMAGE_MAGIC else "labels"
    if len(content) < header_size:
        raise InputError(f"{source}: {len(content)} bytes, too short for an IDX {kind} header")
    found = int.from_bytes(content[:4], "big")
    if found != magic:
        raise InputError(f"{source}: IDX magic number 0x{found:08x}, expected 0x{magic:08x} ({kind})")
    dims = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndims))
    expected = header_size + int(np.prod(dims, dtype=np.int64))
    if len(content) != expected:
        raise InputError(
            f"{source}: header says {' x '.join(map(str, dims))} {kind} ({expected} bytes), the file holds {len(content)}"
        )
    return dims
