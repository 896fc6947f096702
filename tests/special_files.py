"""Paths that are not regular files, made where a test needs an input that must be refused."""

from __future__ import annotations

import os
from pathlib import Path

# kind -> what the error message calls it
KINDS = {
    "fifo": "a FIFO",
    "dev-zero": "a character device",
    "symlink-to-dev-zero": "a character device",
    "directory": "a directory",
}


def make_special(path: Path, kind: str) -> Path:
    """Turn ``path`` into ``kind`` (a key of KINDS); returns the path to pass (``/dev/zero`` itself for dev-zero)."""
    if kind == "fifo":
        os.mkfifo(path)  # a read blocks until someone writes: the hang the checks prevent
    elif kind == "dev-zero":
        return Path("/dev/zero")
    elif kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")  # endless bytes
    elif kind == "directory":
        path.mkdir()
    else:
        raise ValueError(kind)
    return path
