"""Opening the files a run reads: regular files only, and never more bytes than allowed.

A path may name a FIFO (a read blocks until someone writes), a device (``/dev/zero`` never ends)
or a folder. Every input is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open
descriptor before a byte is read, so the check and the read are about the same file and a FIFO
cannot block the open itself. Reads stop one byte past the limit, so a file that grows while
it is read cannot exhaust memory either.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tuning.errors import PipelineError

_CHUNK = 1024 * 1024


def file_kind(mode: int) -> str:
    """What ``st_mode`` says a path is, in words for an error message."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def require_regular_file(path: Path, what: str, error: type[PipelineError]) -> os.stat_result:
    """``os.stat`` of ``path`` (through symlinks); ``error`` unless it is an existing regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: {what} is {file_kind(info.st_mode)}, expected a regular file")
    return info


def open_regular(path: Path, what: str, error: type[PipelineError]) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file before reading from it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {what} is {file_kind(mode)}, expected a regular file")
    return os.fdopen(fd, "rb")


def read_bounded(path: Path, max_bytes: int, what: str, error: type[PipelineError], limit_name: str) -> bytes:
    """The whole of a regular file of at most ``max_bytes`` bytes (``limit_name`` names the limit)."""
    with open_regular(path, what, error) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: {what} is larger than {limit_name} ({max_bytes} bytes)")
    return data


def chunks(path: Path, what: str, error: type[PipelineError]) -> Iterator[bytes]:
    """The bytes of a regular file in chunks (for hashing without holding the file in memory)."""
    with open_regular(path, what, error) as handle:
        while True:
            try:
                chunk = handle.read(_CHUNK)
            except OSError as exc:
                raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
            if not chunk:
                return
            yield chunk


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same inode if both exist, else the same resolved path."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return Path(first).resolve() == Path(second).resolve()
