"""Write outputs so that a reader sees either the old files or the complete new ones.

Every output is written to a temporary file ``.<name>.<random>.tmp`` beside its destination and
renamed into place only when complete; on any failure (including Ctrl-C) the temporary file is
removed and an existing output is left untouched.

A run with several outputs (the model and its summary; report.json, report.md and the plots)
wraps its writes in ``with atomic_outputs():``. Inside, every write is staged, and the staged
files are renamed into place together only when the block completes: either every output is
replaced or none is. The renames run with SIGINT and SIGTERM blocked, and a rename that fails
half-way puts the earlier outputs back from hard-link backups, so an interrupt or a full disk
cannot leave some outputs new and others old.

A temporary file is locked (``flock``) by the process writing it. A run killed with SIGKILL
leaves its temporary files behind unlocked; the next run writing the same output removes them.
A concurrent run's temporary files are locked, and so left alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tuning.errors import OutputError
from tuning.files.signals import interrupts_deferred


@dataclass
class _Staged:
    destination: Path
    temporary: Path
    lock_fd: int  # holds the flock that tells other runs this temporary file is alive

    def release(self) -> None:
        """Remove the temporary file if it is still there and give up its lock."""
        with contextlib.suppress(OSError):
            self.temporary.unlink(missing_ok=True)
        os.close(self.lock_fd)


@dataclass
class OutputSet:
    """Outputs staged as temporary files, renamed into place together by :meth:`commit`."""

    staged: list[_Staged] = field(default_factory=list)

    def stage(self, path: Path) -> Path:
        """A new temporary file beside ``path`` (stale ones of ``path`` removed first)."""
        path = Path(path)
        self._unstage(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path)
            staged = _Staged(path, *_locked_temporary(path))
        except OSError as exc:
            raise _output_error(path, exc) from None
        self.staged.append(staged)
        return staged.temporary

    def commit(self) -> None:
        """Rename every staged file into place, all or none; release the temporary files' locks."""
        try:
            with interrupts_deferred():
                self._check_destinations()
                self._replace_all()
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove whatever is still staged (nothing after a commit) and release the locks."""
        for staged in self.staged:
            staged.release()
        self.staged.clear()

    def _unstage(self, path: Path) -> None:
        # A second write of an output in one block replaces the first. Both staged, the first would be
        # renamed in still locked by this set, and the second's backup of it (a hard link: the same
        # inode, the same flock) would wait for that lock forever.
        for staged in [item for item in self.staged if item.destination == path]:
            self.staged.remove(staged)
            staged.release()

    def _check_destinations(self) -> None:
        # What would make a rename fail is found before the first rename, where possible.
        for staged in self.staged:
            try:
                mode = os.stat(staged.destination).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _output_error(staged.destination, exc) from None
            if stat.S_ISDIR(mode):
                raise OutputError(f"{staged.destination}: cannot write output (it is a directory)")

    def _replace_all(self) -> None:
        done: list[tuple[_Staged, _Backup | None]] = []
        try:
            for staged in self.staged:
                failed = staged.destination  # the output being put in place when an OSError comes
                os.chmod(staged.temporary, 0o644)
                done.append((staged, _Backup.of(staged.destination)))
                os.replace(staged.temporary, staged.destination)
        except OSError as exc:
            _roll_back(done)
            raise _output_error(failed, exc) from None
        finally:
            for _, backup in done:
                if backup is not None:
                    backup.release()


_current: contextvars.ContextVar[OutputSet | None] = contextvars.ContextVar("atomic_outputs", default=None)


@contextlib.contextmanager
def atomic_outputs() -> Iterator[OutputSet]:
    """Stage every write of the block (``atomic_output``, ``write_*_atomic``); commit them together."""
    if _current.get() is not None:  # nested: the outer block commits
        yield _current.get()  # type: ignore[misc]
        return
    outputs = OutputSet()
    token = _current.set(outputs)
    try:
        yield outputs
    except BaseException:
        outputs.discard()
        raise
    finally:
        _current.reset(token)
    outputs.commit()


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block (and any
    enclosing ``atomic_outputs`` block) succeeds, and is removed otherwise."""
    outputs = _current.get()
    with contextlib.nullcontext(outputs) if outputs is not None else atomic_outputs() as active:
        try:
            yield active.stage(path)
        except OSError as exc:  # whatever wrote the temporary file failed: the output is not written
            raise _output_error(Path(path), exc) from None


def staged_content(path: Path) -> Path:
    """Where ``path``'s new content is inside an ``atomic_outputs`` block: its temporary file if it is
    staged there (the destination still holds the old content), else ``path`` itself."""
    outputs = _current.get()
    staged = [item for item in (outputs.staged if outputs else []) if item.destination == Path(path)]
    return staged[-1].temporary if staged else Path(path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def prepare_output_dir(folder: Path) -> None:
    """Create ``folder`` now, so an unwritable output fails before minutes of work, not after."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create output folder ({exc.strerror or exc})") from None


def prepare_scratch_dir(folder: Path) -> None:
    """Create a scratch folder for a tool that writes into it by name (INC's workspace).

    Symlinks in it (or the folder itself being one) are removed, never followed: a link planted
    as ``Optimized_model.onnx`` would otherwise have the tool overwrite the file it points to.
    """
    folder = Path(folder)
    try:
        if folder.is_symlink():
            folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        for root, dirnames, filenames in os.walk(folder):  # os.walk does not descend into linked folders
            for name in dirnames + filenames:
                entry = Path(root) / name
                if entry.is_symlink():
                    entry.unlink()
    except OSError as exc:
        raise OutputError(f"{folder}: cannot prepare the workspace ({exc.strerror or exc})") from None


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove ``.<name>.*.tmp`` files of ``path`` that no live process holds (left by a killed run)."""
    removed = []
    for candidate in Path(path).parent.glob(f".{glob_escape(Path(path).name)}.*.tmp"):
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # gone already, or a symlink: not ours
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run is writing it
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
        finally:
            os.close(fd)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


def _locked_temporary(path: Path) -> tuple[Path, int]:
    """Create and lock a temporary file beside ``path``. A cleaner may delete a new file between
    its creation and its lock; then its link count is 0 and another one is made."""
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return Path(name), fd
        os.close(fd)


@dataclass
class _Backup:
    """A locked hard link to an output's current file, to put it back if a later rename fails."""

    path: Path
    lock_fd: int

    @classmethod
    def of(cls, destination: Path) -> _Backup | None:
        """None when there is no old file, or the file system has no hard links."""
        if destination.is_symlink() or not destination.is_file():
            return None
        backup = destination.parent / f".{destination.name}.{os.urandom(6).hex()}.tmp"
        try:
            os.link(destination, backup)
        except OSError:
            return None
        # Locked like a temporary file, so another run's clean-up leaves it alone while this one needs it.
        fd = os.open(backup, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_SH)
        return cls(backup, fd)

    def restore(self, destination: Path) -> None:
        os.replace(self.path, destination)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        os.close(self.lock_fd)


def _roll_back(done: list[tuple[_Staged, _Backup | None]]) -> None:
    for staged, backup in reversed(done):
        with contextlib.suppress(OSError):
            if backup is not None:
                backup.restore(staged.destination)
            elif not staged.temporary.exists():  # it was renamed in: there was no old file to restore
                staged.destination.unlink(missing_ok=True)


def _output_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write output ({exc.strerror or exc})")
