"""Errors a user can act on, each with its documented exit code.

The CLI prints ``error: <message>`` on one line and exits with ``exit_code``; anything
else escaping is a bug in this package, reported on one line with :data:`INTERNAL_ERROR_EXIT_CODE`.
"""

from __future__ import annotations

import errno
import unicodedata


class PipelineError(Exception):
    """Base class: a failure with a one-line message for the user."""

    exit_code = 1


class GateFailed(PipelineError):
    """A quality-gate check failed: the numbers are valid but not good enough."""

    exit_code = 1


class ConfigError(PipelineError):
    """The YAML config or a command-line override is invalid."""

    exit_code = 2


class InputError(PipelineError):
    """A model, dataset or report file is missing, corrupt or does not fit."""

    exit_code = 3


class FetchError(InputError):
    """A download failed or its checksum did not match."""


class TuningError(PipelineError):
    """INC found no int8 model meeting the accuracy criterion, or failed inside."""

    exit_code = 4


class SlowerThanFp32Error(PipelineError):
    """No int8 candidate meeting the criterion is faster than fp32, and the config says to fail then."""

    exit_code = 6


class OutputError(PipelineError):
    """An output could not be written (read-only folder, disk full)."""

    exit_code = 5


# errno values meaning "this output cannot be written", wherever the write happened (disk full, quota,
# RLIMIT_FSIZE, read-only file system).
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class Interrupted(PipelineError):
    """The run was stopped by SIGINT (Ctrl-C), SIGTERM, SIGHUP or SIGQUIT.

    The message says which outputs, if any, were replaced before it came: none, or all of a commit.
    """

    exit_code = 130


# An exception none of the above: a bug of this package or of a library it calls, never a user's mistake.
# 70 is sysexits.h's EX_SOFTWARE; distinct from 1, which means "a gate failed".
INTERNAL_ERROR_EXIT_CODE = 70


# Longer messages are cut: a server's error page or an expanded YAML value must not flood the console.
MAX_MESSAGE_CHARS = 500


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as one printable line of at most ``limit`` characters.

    Control characters (newlines, CR, NUL, ESC, ...) and Unicode format characters (bidi overrides)
    are escaped as ``\\n``/``\\xNN``/``\\uNNNN``, so bytes a server or a file sent cannot redraw or
    split the line they are quoted in.
    """
    escaped = "".join(_escaped(char) for char in text[: limit + 1])
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _escaped(char: str) -> str:
    if char == " " or unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp"):
        return char
    return char.encode("unicode_escape").decode("ascii")
