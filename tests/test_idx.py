"""IDX files made here, byte by byte: headers, sizes, label ranges, checksums and the size bound at their edges.

Each file is built from the IDX format's definition (magic number, big-endian dimensions, then the bytes),
so every expected value comes from what the test wrote, not from a run.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tuning.data import idx
from tuning.errors import InputError

pytestmark = pytest.mark.fast


def images_idx(count: int, rows: int, columns: int, extra: bytes = b"") -> bytes:
    pixels = (np.arange(count * rows * columns) % 256).astype(np.uint8).tobytes()
    dims = b"".join(n.to_bytes(4, "big") for n in (count, rows, columns))
    return (0x0803).to_bytes(4, "big") + dims + pixels + extra


def labels_idx(labels: list[int]) -> bytes:
    return (0x0801).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + bytes(labels)


SOURCE = Path("where/t10k-images-idx3-ubyte")


# --- parsing ---------------------------------------------------------------------------------------


def test_images_come_out_in_the_headers_shape_with_their_bytes():
    content = images_idx(2, 3, 4)
    images = idx.parse_images(content, SOURCE)
    assert images.shape == (2, 3, 4) and images.dtype == np.uint8
    assert images.tobytes() == content[16:]


def test_zero_images_and_zero_labels_are_empty_arrays():
    assert idx.parse_images(images_idx(0, 28, 28), SOURCE).shape == (0, 28, 28)
    labels = idx.parse_labels(labels_idx([]), SOURCE, 10)
    assert labels.shape == (0,) and labels.dtype == np.int64


def test_labels_up_to_the_last_class_are_read():
    labels = idx.parse_labels(labels_idx([0, 9, 3]), SOURCE, 10)
    assert labels.tolist() == [0, 9, 3] and labels.dtype == np.int64


def test_a_label_equal_to_the_number_of_classes_is_refused():
    with pytest.raises(InputError) as caught:
        idx.parse_labels(labels_idx([0, 10, 3]), SOURCE, 10)
    assert str(caught.value) == f"{SOURCE}: label 10 is out of range; the dataset has 10 classes"


def test_the_size_must_be_exactly_header_plus_data():
    content = images_idx(2, 3, 4)  # 16 + 24 = 40 bytes
    assert idx.parse_images(content, SOURCE).shape == (2, 3, 4)
    for wrong in (content[:-1], content + b"\x00"):
        with pytest.raises(InputError) as caught:
            idx.parse_images(wrong, SOURCE)
        assert str(caught.value) == f"{SOURCE}: header says 2 x 3 x 4 images (40 bytes), the file holds {len(wrong)}"


def test_every_byte_of_a_dimension_counts():
    # Dimensions are 4 bytes big-endian: a width of 65536 + 3 sets the third byte from the end, a count of
    # 2**24 + 5 the first one. Read a byte short, they would look like 3 and 5, which the data would fit.
    wide = images_idx(1, 1, 65536 + 3)
    assert idx.parse_images(wide, SOURCE).shape == (1, 1, 65539)
    claimed = 2**24 + 5
    content = (0x0801).to_bytes(4, "big") + claimed.to_bytes(4, "big") + bytes(5)
    with pytest.raises(InputError) as caught:
        idx.parse_labels(content, SOURCE, 10)
    assert str(caught.value) == f"{SOURCE}: header says {claimed} labels ({8 + claimed} bytes), the file holds 13"


def test_label_size_must_match_its_count():
    with pytest.raises(InputError, match=r"header says 3 labels \(11 bytes\), the file holds 10$"):
        idx.parse_labels(labels_idx([1, 2, 3])[:-1], SOURCE, 10)


@pytest.mark.parametrize(("size", "kind", "header"), [(15, "images", 16), (7, "labels", 8)])
def test_content_shorter_than_its_header(size, kind, header):
    content = (images_idx(0, 1, 1) if kind == "images" else labels_idx([]))[:size]
    parse = idx.parse_images if kind == "images" else (lambda c, s: idx.parse_labels(c, s, 10))
    with pytest.raises(InputError) as caught:
        parse(content, SOURCE)
    assert str(caught.value) == f"{SOURCE}: {size} bytes, too short for an IDX {kind} header"
    assert len(parse((images_idx(0, 1, 1) if kind == "images" else labels_idx([]))[:header], SOURCE)) == 0


def test_labels_are_not_images_and_images_are_not_labels():
    with pytest.raises(InputError) as caught:
        idx.parse_images(labels_idx([1]) + bytes(7), SOURCE)
    assert str(caught.value) == f"{SOURCE}: IDX magic number 0x00000801, expected 0x00000803 (images)"
    with pytest.raises(InputError) as caught:
        idx.parse_labels(images_idx(1, 1, 1), SOURCE, 10)
    assert str(caught.value) == f"{SOURCE}: IDX magic number 0x00000803, expected 0x00000801 (labels)"


# --- reading and verifying -------------------------------------------------------------------------


def spec(content: bytes | None = None, archive: bytes | None = None) -> idx.IdxFile:
    return idx.IdxFile(
        "Made",
        "t10k-labels-idx1-ubyte",
        hashlib.sha256(content).hexdigest() if content is not None else None,
        hashlib.md5(archive).hexdigest() if archive is not None else None,
    )


CONTENT = labels_idx([1, 2, 3])


def test_a_gzipped_file_is_verified_on_its_decompressed_content(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(CONTENT, mtime=0))
    path, content = idx.read_verified(tmp_path, spec(CONTENT))
    assert (path, content) == (tmp_path / "t10k-labels-idx1-ubyte.gz", CONTENT)


def test_the_archive_is_read_when_both_copies_are_there_and_both_are_checked(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(CONTENT, mtime=0))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(CONTENT)
    assert idx.read_verified(tmp_path, spec(CONTENT))[0] == tmp_path / "t10k-labels-idx1-ubyte.gz"
    changed = CONTENT[:-1] + b"\x04"
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(changed)
    with pytest.raises(InputError) as caught:
        idx.read_verified(tmp_path, spec(CONTENT))
    digest, wanted = hashlib.sha256(changed).hexdigest(), hashlib.sha256(CONTENT).hexdigest()
    assert str(caught.value) == (
        f"{tmp_path / 't10k-labels-idx1-ubyte'}: content sha256 {digest[:16]}… is not Made's t10k-labels-idx1-ubyte "
        f"({wanted[:16]}…): the file was changed or belongs to another dataset; restore it"
    )


def test_no_copy_at_all(tmp_path):
    with pytest.raises(InputError) as caught:
        idx.read_verified(tmp_path, spec(CONTENT))
    assert str(caught.value) == (
        f"{tmp_path / 't10k-labels-idx1-ubyte.gz'}: dataset file not found (nor t10k-labels-idx1-ubyte extracted beside it)"
    )


def test_without_a_content_checksum_the_archive_md5_vouches(tmp_path):
    archive = gzip.compress(CONTENT, mtime=0)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(archive)
    assert idx.read_verified(tmp_path, spec(archive=archive))[1] == CONTENT
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(CONTENT)  # an extracted copy of that very archive
    assert idx.read_verified(tmp_path, spec(archive=archive))[1] == CONTENT
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(CONTENT + b"\x00")
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte: differs from the content of t10k-labels-idx1-ubyte.gz"):
        idx.read_verified(tmp_path, spec(archive=archive))
    recompressed = gzip.compress(CONTENT, mtime=1)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(recompressed)
    with pytest.raises(InputError) as caught:
        idx.read_verified(tmp_path, spec(archive=archive))
    assert str(caught.value).startswith(
        f"{tmp_path / 't10k-labels-idx1-ubyte.gz'}: md5 {hashlib.md5(recompressed).hexdigest()} is not the original "
        f"archive's ({hashlib.md5(archive).hexdigest()})"
    )


def test_without_a_content_checksum_an_extracted_file_alone_is_refused(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(CONTENT)
    with pytest.raises(InputError, match="is verified only against the original archive beside it .* which is missing"):
        idx.read_verified(tmp_path, spec(archive=gzip.compress(CONTENT)))


@pytest.mark.parametrize("gzipped", [False, True])
def test_content_up_to_the_size_bound_is_read_and_one_byte_more_is_refused(tmp_path, monkeypatch, gzipped):
    monkeypatch.setattr(idx, "MAX_CONTENT_BYTES", len(CONTENT))
    monkeypatch.setattr(idx, "_CHUNK", 4)  # several chunks, so the bound is checked as they add up
    name = "t10k-labels-idx1-ubyte" + (".gz" if gzipped else "")
    wrap = (lambda data: gzip.compress(data, mtime=0)) if gzipped else (lambda data: data)
    (tmp_path / name).write_bytes(wrap(CONTENT))
    assert idx.read_verified(tmp_path, spec(CONTENT))[1] == CONTENT
    (tmp_path / name).write_bytes(wrap(CONTENT + b"\x00"))
    with pytest.raises(InputError) as caught:
        idx.read_verified(tmp_path, spec(CONTENT))
    expected = (
        f"decompresses to more than the {len(CONTENT)} bytes an IDX dataset file may have"
        if gzipped
        else f"IDX dataset file is larger than the IDX file size limit ({len(CONTENT)} bytes)"
    )
    assert str(caught.value) == f"{tmp_path / name}: {expected}"


def test_a_truncated_archive_cannot_be_decompressed(tmp_path):
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(CONTENT)[:-6])
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte.gz: cannot decompress \(.*\); restore the original file$"):
        idx.read_verified(tmp_path, spec(CONTENT))


def test_an_archive_that_decompresses_past_the_bound_is_not_decompressed_whole(tmp_path, monkeypatch):
    # A gzip bomb: 64 MiB of zeros in a 64 KiB archive. Decompression stops once the bound is passed,
    # so memory stays near the bound (1 MiB here, read in 1 MiB chunks), not near the 64 MiB.
    import tracemalloc

    monkeypatch.setattr(idx, "MAX_CONTENT_BYTES", 1024 * 1024)
    bomb = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        for _ in range(64):
            handle.write(bytes(1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="decompresses to more than the 1048576 bytes"):
            idx.read_verified(tmp_path, spec(CONTENT))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024
