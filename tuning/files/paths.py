"""The one check every path a user gives goes through, from a flag, the environment, ``--set`` or the YAML.

A path is refused here, with one line naming where it came from, before anything opens it: not text, empty,
a NUL byte (the C library cannot take it), a name or a whole path longer than the file system takes, a loop
of symbolic links, or a place under ``/proc`` or ``/sys`` (files there say they are regular and empty, yet
``/proc/self/pagemap`` never ends). Whatever reads or writes the path later still checks what it finds there
(:mod:`tuning.files.inputs`, :mod:`tuning.files.atomic`); this check makes the common mistakes one clear line
instead of an ``OSError`` from deep inside.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tuning.errors import ConfigError

# Linux's limits (<linux/limits.h>); os.pathconf asks the file system when the folder exists.
DEFAULT_NAME_MAX = 255
PATH_MAX = 4096
# Pseudo file systems whose "regular files" are generated on read: never an input or an output.
PSEUDO_FILE_SYSTEMS = (Path("/proc"), Path("/sys"))


def user_path(value: object, source: str) -> Path:
    """``value`` as a :class:`Path` once it passes every check above; ``source`` names the flag or key.

    Raises :class:`~tuning.errors.ConfigError` (exit 2) with one line naming ``source``.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes) or not isinstance(value, str):
        raise ConfigError(f"{source}: expected a path (text), got {type(value).__name__} {repr(value)[:40]}")
    if not value:
        raise ConfigError(f"{source}: the path is empty")
    if "\0" in value:
        raise ConfigError(f"{source}: the path contains a NUL byte, which no file name can hold")
    path = Path(value)
    _check_lengths(path, source)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{source}: {_shown(path)}: a loop of symbolic links") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"{source}: {_shown(path)}: the path is longer than the file system allows") from None
        # Missing files, unreadable folders: the reader or writer says what it expected there.
    pseudo = pseudo_file_system(path)
    if pseudo is not None:
        raise ConfigError(f"{source}: {_shown(path)} is in {pseudo}, a pseudo file system; not a data file")
    return path


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes (its nearest existing ancestor's)."""
    for candidate in (folder, *folder.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return DEFAULT_NAME_MAX


def pseudo_file_system(path: Path) -> Path | None:
    """``/proc`` or ``/sys`` when ``path`` (its links followed as far as they go) lies in one, else None."""
    real = Path(os.path.realpath(path))
    return next((root for root in PSEUDO_FILE_SYSTEMS if real == root or root in real.parents), None)


def _check_lengths(path: Path, source: str) -> None:
    encoded = os.fsencode(path)
    if len(encoded) >= PATH_MAX:
        raise ConfigError(
            f"{source}: the path is {len(encoded)} bytes long; the file system takes at most {PATH_MAX - 1}"
        )
    limit = name_max(path.parent)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise ConfigError(
                f"{source}: the name {_shown(Path(part))} is {len(os.fsencode(part))} bytes long; "
                f"the file system takes at most {limit}"
            )


def _shown(path: Path) -> str:
    # A 4000-character path quoted whole would bury the message.
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}…{text[-40:]}"
