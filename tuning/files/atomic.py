"""Write outputs so that a reader sees either the old files or the complete new ones.

Every output is written to a temporary file ``.<name>.<random>.tmp`` beside its destination and
renamed into place only when complete; on any failure (including an interrupt) the temporary file is
removed and an existing output is left untouched.

A run with several outputs (the model and its summary; report.json, report.md and the plots)
wraps its writes in ``with atomic_outputs():``. Inside, every write is staged, and the staged
files are renamed into place together only when the block completes: either every output is
replaced or none is. The renames run with the interrupt signals held back, and a rename that fails
half-way puts the earlier outputs back from hard-link backups, so an interrupt or a full disk
cannot leave some outputs new and others old. What was committed is remembered
(:func:`committed_outputs`), so an interrupt that comes after the commit is reported as such.

Each output is locked for its writer (:mod:`tuning.files.locks`): the lock file lists the
temporaries and backups made, so those a run killed with SIGKILL left are removed by the next run
writing the same output, and nothing else is.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tuning.errors import OutputError
from tuning.files.locks import OutputLock, held_lock, output_locks, temporary_name
from tuning.files.signals import interrupts_deferred

# Every output this process has renamed into place, in order: what an interrupt after a commit must mention.
_committed: list[Path] = []


def committed_outputs() -> list[Path]:
    """The outputs this process has replaced so far (each commit's, in order)."""
    return list(_committed)


@dataclass
class _Staged:
    destination: Path
    temporary: Path

    def release(self) -> None:
        """Remove the temporary file if it is still there."""
        with contextlib.suppress(OSError):
            self.temporary.unlink(missing_ok=True)


@dataclass
class OutputSet:
    """Outputs staged as temporary files, renamed into place together by :meth:`commit`."""

    staged: list[_Staged] = field(default_factory=list)
    locks: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # of outputs no caller had locked

    def stage(self, path: Path) -> Path:
        """A new temporary file beside ``path``, listed in ``path``'s lock (taken now unless held already)."""
        path = Path(path)
        self._unstage(path)
        lock = held_lock(path)
        if lock is None:
            self.locks.enter_context(output_locks([path]))
            lock = held_lock(path)
        try:
            staged = _Staged(path, _new_temporary(path, lock))  # type: ignore[arg-type]
        except OSError as exc:
            raise _output_error(path, exc) from None
        self.staged.append(staged)
        return staged.temporary

    def commit(self) -> None:
        """Rename every staged file into place, all or none; release the locks this set took."""
        try:
            with interrupts_deferred():
                self._check_destinations()
                self._replace_all()
                _committed.extend(staged.destination for staged in self.staged)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove whatever is still staged (nothing after a commit) and release the locks this set took."""
        for staged in self.staged:
            staged.release()
        self.staged.clear()
        self.locks.close()

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
                done.append((staged, _Backup.of(staged.destination, held_lock(staged.destination))))
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
    """Remove the temporaries and backups of ``path`` that a killed run listed in its lock file.

    They are removed as the lock is taken; when this process holds it already, that happened then.
    """
    lock = held_lock(path)
    if lock is not None:
        return list(lock.removed)
    with output_locks([Path(path)]) as (taken,):
        return list(taken.removed)


def _new_temporary(path: Path, lock: OutputLock) -> Path:
    """Create an empty temporary file beside ``path`` (never over an existing file), listed in the lock.

    The file is made unnamed (O_TMPFILE), listed, then linked under its name: a run killed at any moment
    leaves no temporary that its lock does not list. Where the file system has no O_TMPFILE, it is named
    first and listed right after.
    """
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            temporary = temporary_name(path)
            try:
                fd = os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600, dir_fd=folder)
            except OSError:
                return _new_named_temporary(temporary, lock)
            try:
                lock.record(temporary, os.fstat(fd).st_ino)
                # A folder descriptor makes Python call linkat() with AT_SYMLINK_FOLLOW, which links the open file.
                os.link(f"/proc/self/fd/{fd}", temporary.name, dst_dir_fd=folder, follow_symlinks=True)
            except FileExistsError:
                continue
            except OSError:  # no /proc to link through
                return _new_named_temporary(temporary, lock)
            finally:
                os.close(fd)
            return temporary
    finally:
        os.close(folder)


def _new_named_temporary(temporary: Path, lock: OutputLock) -> Path:
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        lock.record(temporary, os.fstat(fd).st_ino)
    finally:
        os.close(fd)
    return temporary


@dataclass
class _Backup:
    """A hard link to an output's current file, to put it back if a later rename fails."""

    path: Path

    @classmethod
    def of(cls, destination: Path, lock: OutputLock | None) -> _Backup | None:
        """None when there is no old file, or the file system has no hard links.

        Listed in the output's lock like a temporary, so a run killed during the commit leaves no stray link.
        """
        if destination.is_symlink() or not destination.is_file():
            return None
        backup = temporary_name(destination)
        if lock is not None:  # listed before it exists: a link is the old file's inode, known already
            lock.record(backup, os.stat(destination).st_ino)
        try:
            os.link(destination, backup)
        except OSError:
            return None
        return cls(backup)

    def restore(self, destination: Path) -> None:
        os.replace(self.path, destination)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def _roll_back(done: list[tuple[_Staged, _Backup | None]]) -> None:
    for staged, backup in reversed(done):
        with contextlib.suppress(OSError):
            if backup is not None:
                backup.restore(staged.destination)
            elif not staged.temporary.exists():  # it was renamed in: there was no old file to restore
                staged.destination.unlink(missing_ok=True)


def _output_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write output ({exc.strerror or exc})")
