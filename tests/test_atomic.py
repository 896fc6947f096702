"""Outputs are replaced whole or not at all: a reader sees the old file or the complete new one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tuning.errors import OutputError
from tuning.files.atomic import (
    atomic_output,
    prepare_output_dir,
    write_bytes_atomic,
    write_text_atomic,
)

pytestmark = pytest.mark.fast


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_written_bytes_replace_the_old_file_readable_by_all(tmp_path):
    path = tmp_path / "deep" / "er" / "out.bin"
    write_bytes_atomic(path, b"first")
    write_bytes_atomic(path, b"\x00second\xff")
    assert path.read_bytes() == b"\x00second\xff"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(path.parent) == []


def test_text_is_written_as_utf8(tmp_path):
    write_text_atomic(tmp_path / "t.txt", "Größe: 5 µs\n")
    assert (tmp_path / "t.txt").read_bytes() == "Größe: 5 µs\n".encode("utf-8")


def test_the_temporary_file_is_hidden_beside_the_output_until_the_block_ends(tmp_path):
    with atomic_output(tmp_path / "model.onnx") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"new")
        assert not (tmp_path / "model.onnx").exists()
    assert (tmp_path / "model.onnx").read_bytes() == b"new" and leftovers(tmp_path) == []


def test_a_failure_inside_the_block_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_output(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_an_output_under_a_regular_file_is_an_output_error_naming_it(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with pytest.raises(OutputError) as caught:
        write_bytes_atomic(blocker / "out.bin", b"x")
    assert str(caught.value).startswith(f"{blocker / 'out.bin'}: cannot write output (")
    assert caught.value.exit_code == 5


def test_an_output_that_is_a_folder_is_an_output_error_and_the_folder_stays(tmp_path):
    folder = tmp_path / "out.bin"
    folder.mkdir()
    with pytest.raises(OutputError, match=r"out.bin: cannot write output \("):
        write_bytes_atomic(folder, b"x")
    assert folder.is_dir() and leftovers(tmp_path) == []


def test_prepare_output_dir_makes_every_level_and_accepts_an_existing_one(tmp_path):
    prepare_output_dir(tmp_path / "a" / "b")
    prepare_output_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError) as caught:
        prepare_output_dir(tmp_path / "file" / "sub")
    assert str(caught.value) == f"{tmp_path / 'file' / 'sub'}: cannot create output folder (Not a directory)"
