"""One run per output: a lock file beside each output, naming its holder and the temporaries it made.

``.<name>.lock`` beside an output is held (``flock``) by the run writing that output, from before the work
starts until it ends, so a second run on the same output stops at once with one line naming the first one's
pid instead of silently overwriting its result. The lock file also lists, with their inode numbers, the
temporary files and backups its holder made: a run killed with SIGKILL cannot remove them, and the next run
taking the lock removes exactly those. A user's own file that only looks like a temporary
(``.<name>.<random>.tmp``) is never listed, so never touched. A run that ends normally removes its lock file.

Before any work, :func:`check_writable` refuses an output whose name leaves no room for its temporary's
name, or whose folder cannot be written, so a legal but long name fails at once instead of after the tuning.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tuning.errors import OutputError
from tuning.files.paths import name_max

LOCK_HEADER = "mnist-int8-tuning output lock\n"
_TOKEN_BYTES = 6  # 12 hex digits in a temporary's name
# What a temporary's name adds to its output's: "." + name + "." + 12 hex digits + ".tmp".
TEMPORARY_NAME_EXTRA = 1 + 1 + 2 * _TOKEN_BYTES + len(".tmp")
_MAX_LOCK_BYTES = 1024 * 1024  # a lock file lists a few temporaries; a larger one is not ours


def temporary_name(output: Path) -> Path:
    """A fresh name ``.<name>.<random>.tmp`` beside ``output`` for its temporary file or backup."""
    return output.parent / f".{output.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp"


def lock_path(output: Path) -> Path:
    return output.parent / f".{output.name}.lock"


@dataclass
class OutputLock:
    """The held lock of one output; :meth:`record` lists a temporary so a later run can remove it."""

    output: Path
    fd: int
    created: list[Path]  # folders made to hold the lock file, removed again on release if still empty
    removed: list[Path] = field(default_factory=list)  # stale temporaries of a killed run, removed on taking it

    @classmethod
    def take(cls, output: Path) -> OutputLock:
        """Lock ``output`` for this process, or raise OutputError naming the run that holds it."""
        output = Path(output)
        path = lock_path(output)
        created = _make_folders(output)
        while True:
            fd = _open_lock_file(output, path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise OutputError(
                    f"{output}: another run ({holder}) is writing this output; wait for it to end, or choose "
                    "another output"
                ) from None
            # The previous holder removes the file as it ends: a lock on a removed file protects nothing.
            if _still_linked(fd, path):
                break
            os.close(fd)
        lock = cls(output, fd, created)
        lock.removed = lock._remove_listed_temporaries()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{LOCK_HEADER}pid {os.getpid()}\n".encode(), 0)
        return lock

    def record(self, temporary: Path, inode: int) -> None:
        """List ``temporary`` as this run's, with the inode number it has (or is about to get)."""
        os.lseek(self.fd, 0, os.SEEK_END)
        os.write(self.fd, f"temporary {inode} {temporary.name}\n".encode())

    def release(self) -> None:
        with contextlib.suppress(OSError):
            lock_path(self.output).unlink()
        os.close(self.fd)
        for folder in reversed(self.created):  # a run refused before writing leaves no empty folders
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _remove_listed_temporaries(self) -> list[Path]:
        removed = []
        for line in _read_lock(self.fd).splitlines()[2:]:
            kind, _, rest = line.partition(" ")
            inode_text, _, name = rest.partition(" ")
            if kind != "temporary" or not inode_text.isdigit() or "/" in name or not name.startswith("."):
                continue
            candidate = self.output.parent / name
            try:
                info = os.lstat(candidate)
            except OSError:
                continue  # renamed into place or removed already
            # Same inode and a regular file: what the killed run made, not a file put there since.
            if stat.S_ISREG(info.st_mode) and info.st_ino == int(inode_text):
                with contextlib.suppress(OSError):
                    candidate.unlink()
                    removed.append(candidate)
        return removed


_held: dict[str, OutputLock] = {}


def held_lock(output: Path) -> OutputLock | None:
    """The lock this process holds on ``output``, if any."""
    return _held.get(_key(output))


@contextlib.contextmanager
def output_locks(outputs: Iterable[Path]) -> Iterator[list[OutputLock]]:
    """Hold the lock of every output for the block (already held ones are reused, not taken twice)."""
    taken: list[OutputLock] = []
    try:
        for output in outputs:
            if held_lock(output) is None:
                lock = OutputLock.take(output)
                _held[_key(output)] = lock
                taken.append(lock)
        yield [lock for output in outputs if (lock := held_lock(output)) is not None]
    finally:
        for lock in reversed(taken):  # the first lock made the folders; it removes them once the others are gone
            _held.pop(_key(lock.output), None)
            lock.release()


def check_writable(output: Path, what: str) -> None:
    """Refuse an output that cannot be written, its temporary's name included; nothing is created.

    Every refusal is an OutputError (exit 5) naming ``what``, the flag or key that gave the path.
    """
    output = Path(output)
    limit = name_max(output.parent)
    size = len(os.fsencode(output.name))
    if size + TEMPORARY_NAME_EXTRA > limit:
        raise OutputError(
            f"{what}: the name {output.name[:40]}… is {size} bytes; its temporary file (.<name>.<random>.tmp) "
            f"needs {TEMPORARY_NAME_EXTRA} more and the file system takes {limit}: use a name of at most "
            f"{limit - TEMPORARY_NAME_EXTRA} bytes"
        )
    if output.is_dir():
        raise OutputError(f"{what}: {output}: cannot write output (it is a directory)")
    folder = next((parent for parent in output.parents if parent.exists()), Path("."))
    if not folder.is_dir():
        raise OutputError(f"{what}: {output.parent}: cannot create output folder ({folder} is a file)")
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
        reason = "Read-only file system" if read_only else "Permission denied"
        raise OutputError(f"{what}: {output}: cannot write output ({reason}: {folder})")


def _key(output: Path) -> str:
    return os.path.normpath(os.path.abspath(output))


def _make_folders(output: Path) -> list[Path]:
    """Make the folder of ``output`` and its missing parents; the ones made, outermost first."""
    missing = [parent for parent in output.parents if not parent.exists()][::-1]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{output}: cannot write output ({exc.strerror or exc})") from None
    return missing


def _open_lock_file(output: Path, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: a symbolic link planted as the lock file
            raise OutputError(f"{output}: {path} is a symbolic link, not this project's lock file") from None
        raise OutputError(f"{output}: cannot write output ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    content = _read_lock(fd) if stat.S_ISREG(info.st_mode) else None
    if content is None or (content and not content.startswith(LOCK_HEADER)):
        os.close(fd)
        raise OutputError(f"{output}: {path} exists and is not this project's lock file; move it away")
    return fd


def _read_lock(fd: int) -> str:
    data = os.pread(fd, _MAX_LOCK_BYTES, 0)
    return data.decode("utf-8", errors="replace")


# The holder writes its pid just after taking the lock (first removing what a killed run listed): a refused
# run that reads the file in between polls this long for it before saying "pid unknown".
_HOLDER_PID_WAIT_S = 2.0


def _holder(fd: int) -> str:
    deadline = time.monotonic() + _HOLDER_PID_WAIT_S
    while True:
        for line in _read_lock(fd).splitlines()[1:2]:
            if line.startswith("pid "):
                return line
        if time.monotonic() >= deadline:
            return "pid unknown"
        time.sleep(0.02)


def _still_linked(fd: int, path: Path) -> bool:
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False
