"""One run per output (tuning/files/locks.py): the lock beside each output, the temporaries it lists, and the
checks made before any work (issue 22, classes 5, 6 and 7).

A killed run is played for real where it matters: a child process takes the lock, makes its temporaries and is
sent SIGKILL; the next writer removes exactly what that run listed, and never a user's file named like one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuning.errors import OutputError
from tuning.files.atomic import _Backup, _new_temporary, remove_stale_temporaries, write_text_atomic
from tuning.files.locks import (
    TEMPORARY_NAME_EXTRA,
    OutputLock,
    check_writable,
    lock_path,
    output_locks,
)

ROOT = Path(__file__).resolve().parent.parent


def killed_writer(output: Path, temporaries: int = 2, backup: bool = False) -> list[Path]:
    """A real process that locks ``output``, makes temporaries (and a backup) and is killed with SIGKILL."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from tuning.files.atomic import _Backup, _new_temporary
        from tuning.files.locks import OutputLock
        output = Path({str(output)!r})
        lock = OutputLock.take(output)
        made = [_new_temporary(output, lock) for _ in range({temporaries})]
        if {backup!r}:
            made.append(_Backup.of(output, lock).path)
        print("\\n".join(map(str, made)), flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert child.stdout is not None
    made = [Path(child.stdout.readline().strip()) for _ in range(temporaries + backup)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    return made


def test_a_killed_runs_temporaries_are_removed_and_a_users_lookalikes_kept(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    output.write_text("old")
    stale = killed_writer(output, backup=True)
    assert all(path.exists() for path in stale) and lock_path(output).exists()
    lookalikes = [tmp_path / ".model.onnx.abc123.tmp", tmp_path / ".model.onnx.0123456789ab.tmp"]
    for path in lookalikes:
        path.write_text("the user's own")
    assert sorted(remove_stale_temporaries(output)) == sorted(stale)
    assert all(path.read_text() == "the user's own" for path in lookalikes)
    assert output.read_text() == "old" and not lock_path(output).exists()


def test_a_listed_name_now_holding_another_file_a_link_or_a_fifo_is_kept(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    first, second, third = killed_writer(output, temporaries=3)
    first.rename(tmp_path / "kept aside")  # still there, so the new file under its name gets another inode
    for path in (second, third):
        path.unlink()
    first.write_text("a new file under the same name: another inode")
    second.symlink_to(tmp_path / "elsewhere")
    os.mkfifo(third)
    assert remove_stale_temporaries(output) == []
    assert first.read_text().startswith("a new file") and second.is_symlink() and third.exists()


def test_a_second_writer_is_refused_naming_the_holders_pid(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from tuning.files.locks import OutputLock; OutputLock.take({str(output)!r}); "
         "print('locked', flush=True); import time; time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError) as caught:
            write_text_atomic(output, "second")
        assert str(caught.value) == (
            f"{output}: another run (pid {holder.pid}) is writing this output; wait for it to end, or choose "
            "another output"
        )
        assert not output.exists()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    write_text_atomic(output, "after")  # the dead holder's lock is free again
    assert output.read_text() == "after" and not lock_path(output).exists()


@pytest.mark.fast
def test_a_run_refused_in_the_moment_before_the_holder_wrote_its_pid_still_names_it(tmp_path: Path) -> None:
    # A CI run once said "another run (pid unknown)": the second tune read the lock file after the first had
    # locked and emptied it, before it wrote its pid. Here the holder locks an empty file and writes 0.3 s later.
    output = tmp_path / "model.onnx"
    script = textwrap.dedent(f"""
        import fcntl, os, time
        from tuning.files.locks import LOCK_HEADER, lock_path
        fd = os.open(lock_path(__import__("pathlib").Path({str(output)!r})), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(0.3)
        os.pwrite(fd, f"{{LOCK_HEADER}}pid {{os.getpid()}}\\n".encode(), 0)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError) as caught:
            OutputLock.take(output)
        assert f"another run (pid {holder.pid}) is writing this output" in str(caught.value)
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_lock_file_that_is_not_ours_is_refused_and_left_alone(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    lock_path(output).write_text("my notes\n")
    with pytest.raises(OutputError, match="exists and is not this project's lock file; move it away"):
        write_text_atomic(output, "x")
    assert lock_path(output).read_text() == "my notes\n"
    lock_path(output).unlink()
    lock_path(output).symlink_to(tmp_path / "victim")
    with pytest.raises(OutputError, match="is a symbolic link, not this project's lock file"):
        write_text_atomic(output, "x")
    assert not (tmp_path / "victim").exists()


@pytest.mark.fast
def test_locks_are_reused_within_a_process_and_released_with_their_folders(tmp_path: Path) -> None:
    output = tmp_path / "new" / "deeper" / "model.onnx"
    with output_locks([output, output]) as locks:
        assert len(locks) == 2 and locks[0] is locks[1] and lock_path(output).exists()
        write_text_atomic(output, "inside")  # reuses the held lock instead of waiting for itself
        assert lock_path(output).exists()
    assert output.read_text() == "inside" and not lock_path(output).exists()
    with output_locks([tmp_path / "made" / "for" / "nothing.json"]):
        pass
    assert not (tmp_path / "made").exists()  # a run refused before writing leaves no empty folders


@pytest.mark.fast
def test_a_backup_is_listed_in_the_lock_and_released_with_it(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    output.write_text("old")
    lock = OutputLock.take(output)
    try:
        backup = _Backup.of(output, lock)
        temporary = _new_temporary(output, lock)
        assert backup is not None and backup.path.samefile(output)
        listed = lock_path(output).read_text()
        assert f" {backup.path.name}\n" in listed and f" {temporary.name}\n" in listed
        backup.release()
        assert not backup.path.exists() and output.read_text() == "old"
    finally:
        lock.release()


@pytest.mark.fast
def test_an_output_name_too_long_for_its_temporary_is_refused_before_any_work(tmp_path: Path) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    fits = tmp_path / ("m" * (limit - TEMPORARY_NAME_EXTRA))
    check_writable(fits, "--output_model")
    write_text_atomic(fits, "fits")
    too_long = tmp_path / ("m" * (limit - TEMPORARY_NAME_EXTRA + 1))
    with pytest.raises(OutputError) as caught:
        check_writable(too_long, "--output_model")
    assert str(caught.value).startswith("--output_model: the name mmm")
    assert f"use a name of at most {limit - TEMPORARY_NAME_EXTRA} bytes" in str(caught.value)


@pytest.mark.fast
def test_unwritable_folders_and_wrong_kinds_are_refused_before_any_work(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        readonly = Path("/proc/self")  # root writes anywhere mode bits say no; /proc's folders refuse even root
    else:
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o555)
    with pytest.raises(OutputError, match=r"cannot write output \((Permission denied|Read-only file system): "):
        check_writable(readonly / "new" / "model.onnx", "output.model")
    with pytest.raises(OutputError, match=r"^--junit: .*: cannot write output \(it is a directory\)$"):
        check_writable(tmp_path, "--junit")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"/file: cannot create output folder \(.*/file is a file\)$"):
        check_writable(tmp_path / "file" / "report.json", "--out-dir")
