"""The clean-up paths of tuning/files/atomic.py, in this process on real files: the scratch folder INC writes
into, a transaction rolled back by a rename that fails half-way (stale temporaries: tests/test_output_locks.py).

tests/test_outputs.py checks the same promises end to end (a killed run in a subprocess, INC's workspace
in a real tuning run); these reach every branch without starting a process.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tuning.errors import OutputError
from tuning.files.atomic import (
    _Backup,
    atomic_output,
    atomic_outputs,
    prepare_scratch_dir,
    staged_content,
    write_text_atomic,
)

pytestmark = pytest.mark.fast


def temporaries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*.tmp"))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --- backups (stale temporaries and locks: tests/test_output_locks.py) ----------------------------------


def test_there_is_no_backup_of_a_missing_file_a_folder_or_a_link(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "target").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for name in ("missing", "folder", "link"):
        assert _Backup.of(tmp_path / name, None) is None
    assert temporaries(tmp_path) == []


# --- the transaction ------------------------------------------------------------------------------


def failed_commit(outputs: dict[Path, str], disrupt: Callable[[], object]) -> str:
    """Write ``outputs`` in one block, ``disrupt`` the file system before the block commits; the commit's error."""
    with pytest.raises(OutputError) as caught:
        with atomic_outputs():
            for path, text in outputs.items():
                write_text_atomic(path, text)
            disrupt()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_rename_failing_half_way_on_a_real_file_system_rolls_back(tmp_path: Path) -> None:
    # The second output's folder disappears after staging (another process removing it): the first
    # output is renamed in, then the second cannot be, and the first must get its old content back.
    first, second = tmp_path / "a" / "model.onnx", tmp_path / "b" / "summary.json"
    first.parent.mkdir()
    first.write_text("old model")
    fds = open_fds()
    message = failed_commit({first: "new model", second: "new summary"}, lambda: shutil.rmtree(second.parent))
    assert message.startswith(f"{second}: cannot write output (")
    assert first.read_text() == "old model"
    assert temporaries(tmp_path) == []
    assert open_fds() == fds  # the temporaries' and the backup's locks are released


def test_a_new_output_renamed_in_before_the_failure_is_removed_again(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "model.onnx", tmp_path / "b" / "summary.json"
    failed_commit({first: "new model", second: "new summary"}, lambda: shutil.rmtree(second.parent))
    assert not (tmp_path / "a").exists()  # nor the folder made for it


def test_outputs_after_the_failing_one_keep_their_old_content(tmp_path: Path) -> None:
    paths = [tmp_path / "a" / "one", tmp_path / "b" / "two", tmp_path / "c" / "three"]
    for path in paths:
        path.parent.mkdir()
        path.write_text(f"old {path.name}")
    message = failed_commit({path: f"new {path.name}" for path in paths}, lambda: shutil.rmtree(paths[1].parent))
    assert message.startswith(f"{paths[1]}: cannot write output (")
    assert paths[0].read_text() == "old one" and paths[2].read_text() == "old three"
    assert temporaries(tmp_path) == []


def test_the_first_rename_failing_names_the_first_output(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "model.onnx", tmp_path / "summary.json"
    second.write_text("old summary")
    message = failed_commit({first: "new model", second: "new summary"}, lambda: shutil.rmtree(first.parent))
    assert message.startswith(f"{first}: cannot write output (")
    assert second.read_text() == "old summary" and temporaries(tmp_path) == []


def test_an_output_turned_into_a_folder_before_the_commit_is_refused_before_any_rename(tmp_path: Path) -> None:
    first, second = tmp_path / "model.onnx", tmp_path / "summary.json"
    first.write_text("old model")
    message = failed_commit({first: "new model", second: "new summary"}, second.mkdir)
    assert message == f"{second}: cannot write output (it is a directory)"
    assert first.read_text() == "old model" and second.is_dir() and temporaries(tmp_path) == []


def test_a_folder_after_a_new_output_is_found_before_any_rename(tmp_path: Path) -> None:
    first, second = tmp_path / "new.onnx", tmp_path / "summary.json"  # the first output does not exist yet
    message = failed_commit({first: "new model", second: "new summary"}, second.mkdir)
    assert message == f"{second}: cannot write output (it is a directory)"
    assert not first.exists() and temporaries(tmp_path) == []


def test_a_destination_that_cannot_be_examined_is_refused_before_any_rename(tmp_path: Path) -> None:
    # The second output's folder replaced by a regular file after staging: stat() of the output fails
    # with ENOTDIR, not FileNotFoundError, so the commit stops before its first rename.
    first, second = tmp_path / "model.onnx", tmp_path / "b" / "summary.json"
    first.write_text("old model")

    def folder_to_file() -> None:
        shutil.rmtree(second.parent)
        second.parent.write_text("a file now")

    message = failed_commit({first: "new model", second: "new summary"}, folder_to_file)
    assert message == f"{second}: cannot write output (Not a directory)"
    assert first.read_text() == "old model" and temporaries(tmp_path) == []


def test_nested_blocks_commit_with_the_outer_one(tmp_path: Path) -> None:
    first, second = tmp_path / "model.onnx", tmp_path / "summary.json"
    with pytest.raises(RuntimeError, match="later"):
        with atomic_outputs() as outer:
            with atomic_outputs() as inner:
                assert inner is outer
                write_text_atomic(first, "new model")
            assert not first.exists()  # the inner block's end commits nothing
            write_text_atomic(second, "new summary")
            raise RuntimeError("a later step failed")
    assert not first.exists() and not second.exists() and temporaries(tmp_path) == []
    with atomic_outputs():
        with atomic_outputs():
            write_text_atomic(first, "new model")
        assert not first.exists()
    assert first.read_text() == "new model"


def test_an_output_written_twice_in_one_block_gets_the_second_content(tmp_path: Path) -> None:
    # In a thread: a commit that waits for a lock this process holds would otherwise hang the suite
    # (outside the main thread the commit's signal deferral is off, and join() can give up).
    output = tmp_path / "report.json"
    output.write_text("old")
    failures: list[BaseException] = []

    def write_twice() -> None:
        try:
            with atomic_outputs():
                write_text_atomic(output, "first")
                write_text_atomic(output, "second")
                assert temporaries(tmp_path) != [] and len(temporaries(tmp_path)) == 1
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            failures.append(exc)

    writer = threading.Thread(target=write_twice, daemon=True)
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive(), "the commit waits for a lock this process holds"
    assert failures == []
    assert output.read_text() == "second" and temporaries(tmp_path) == []


def test_staged_content_is_the_new_content_until_the_commit(tmp_path: Path) -> None:
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"old plot")
    assert staged_content(plot) == plot  # outside a block: the file itself
    with atomic_outputs():
        assert staged_content(plot) == plot  # not staged yet
        write_text_atomic(plot, "first")
        write_text_atomic(plot, "second")
        assert staged_content(plot).read_text() == "second"  # the latest write of it
        assert staged_content(tmp_path / "other.png") == tmp_path / "other.png"
        assert plot.read_bytes() == b"old plot"
    assert staged_content(plot) == plot and plot.read_text() == "second"


def test_a_failed_block_releases_every_lock(tmp_path: Path) -> None:
    fds = open_fds()
    with pytest.raises(KeyboardInterrupt):
        with atomic_outputs():
            for name in ("one", "two", "three"):
                write_text_atomic(tmp_path / name, name)
            raise KeyboardInterrupt
    assert open_fds() == fds and temporaries(tmp_path) == []
    with atomic_outputs():
        for name in ("one", "two"):
            write_text_atomic(tmp_path / name, name)
    assert open_fds() == fds and [p.read_text() for p in (tmp_path / "one", tmp_path / "two")] == ["one", "two"]


def test_a_write_failing_inside_atomic_output_is_an_output_error_naming_the_output(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    output.write_text("old")
    with pytest.raises(OutputError) as caught:
        with atomic_output(output) as tmp:
            open(tmp.parent / "missing" / "x", "wb")  # an OSError of whatever writes the output
    assert str(caught.value).startswith(f"{output}: cannot write output (")
    assert "No such file or directory" in str(caught.value)
    assert output.read_text() == "old" and temporaries(tmp_path) == []


# --- the scratch folder ---------------------------------------------------------------------------


def test_symlinks_in_the_scratch_folder_are_removed_at_every_depth_and_their_targets_kept(tmp_path: Path) -> None:
    scratch = tmp_path / "nc_workspace"
    (scratch / "history" / "deep").mkdir(parents=True)
    victims = tmp_path / "victims"
    victims.mkdir()
    (victims / "model.onnx").write_text("precious")
    (victims / "inside.txt").write_text("precious too")
    links = [
        scratch / "Optimized_model.onnx",
        scratch / "history" / "inc.log",
        scratch / "history" / "deep" / "deploy.yaml",
    ]
    for link in links:
        link.symlink_to(victims / "model.onnx")
    (scratch / "linked_folder").symlink_to(victims, target_is_directory=True)
    (scratch / "history" / "keep.txt").write_text("a real file of an earlier run")
    prepare_scratch_dir(scratch)
    assert not any(link.is_symlink() or link.exists() for link in links)
    assert not (scratch / "linked_folder").exists()
    assert sorted(p.name for p in victims.iterdir()) == ["inside.txt", "model.onnx"]  # not walked into
    assert (victims / "model.onnx").read_text() == "precious"
    assert (scratch / "history" / "keep.txt").read_text() == "a real file of an earlier run"
    assert (scratch / "history" / "deep").is_dir()


def test_a_scratch_folder_that_is_a_symlink_becomes_a_real_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "file").write_text("kept")
    scratch = tmp_path / "run" / "nc_workspace"
    scratch.parent.mkdir()
    scratch.symlink_to(elsewhere, target_is_directory=True)
    prepare_scratch_dir(scratch)
    assert scratch.is_dir() and not scratch.is_symlink() and list(scratch.iterdir()) == []
    assert (elsewhere / "file").read_text() == "kept"


def test_a_missing_scratch_folder_is_made_with_its_parents(tmp_path: Path) -> None:
    scratch = tmp_path / "a" / "b" / "nc_workspace"
    prepare_scratch_dir(scratch)
    prepare_scratch_dir(scratch)
    assert scratch.is_dir() and list(scratch.iterdir()) == []


def test_a_scratch_folder_that_cannot_be_made_is_an_output_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    scratch = tmp_path / "file" / "nc_workspace"
    with pytest.raises(OutputError) as caught:
        prepare_scratch_dir(scratch)
    assert str(caught.value) == f"{scratch}: cannot prepare the workspace (Not a directory)"
    assert caught.value.exit_code == 5
