"""Fetch the model file once, verified by sha256, and never trust an unverified copy.

A download (:func:`download`; the model's through :func:`ensure_file`, a dataset's archives through
tuning/data/download.py) is written through ``atomic_output``: only a complete body whose hash
matches is renamed into place, so an interrupted or wrong download leaves nothing.
Every download is bounded: in bytes (``model.max_bytes``), in time per read (``timeout_s``)
and in wall-clock time as a whole, retries included (``model.download_timeout_s``), so a
server that sends one byte a second is cut off too.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tuning.errors import FetchError, InputError, one_line
from tuning.files.atomic import atomic_output
from tuning.files.inputs import chunks, require_regular_file
from tuning.files.limits import DOWNLOAD_DEADLINE_S, MODEL_MAX_BYTES

_CHUNK = 64 * 1024
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_REASON_CHARS = 200  # a server's status line or error text, quoted in retry lines and the error
READ_TIMEOUT_S = 30.0  # the longest wait for one read (README: "30 s per read")


@dataclass(frozen=True)
class Keys:
    """What a download's error lines name: the settings that bound it, and what to check when its hash is wrong."""

    max_bytes: str = "model.max_bytes"
    deadline: str = "model.download_timeout_s"
    wrong_hash_hint: str = "check model.url and model.sha256"


MODEL_KEYS = Keys()


class _Retryable(Exception):
    """An attempt failed in a way another attempt may fix; carries the reason."""


def sha256_of(path: Path, max_bytes: int = MODEL_MAX_BYTES) -> str:
    """Return the hex sha256 of the regular file ``path``, read in chunks, refused past ``max_bytes``
    (``model.max_bytes``; a file of /proc says it is empty and may never end)."""
    digest = hashlib.sha256()
    for chunk in chunks(Path(path), "model file", InputError, max_bytes, "model.max_bytes"):
        digest.update(chunk)
    return digest.hexdigest()


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in _LOOPBACK_HOSTS


def _check_url(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    # Plain http is only safe where no one can sit in the middle: this machine.
    if scheme == "https" or (scheme == "http" and _is_loopback(url)):
        return
    raise FetchError(f"{one_line(url, _REASON_CHARS)}: only https URLs are allowed (plain http only to localhost)")


class _CheckedRedirectHandler(urllib.request.HTTPRedirectHandler):
    # Without this an https URL could be silently downgraded by a redirect.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        try:
            _check_url(newurl)
        except FetchError:
            fp.close()  # urllib closes the 3xx response only when the redirect is followed
            raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_CheckedRedirectHandler()]
    if _is_loopback(url):
        # A configured proxy cannot reach our own loopback interface.
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _describe(exc: BaseException, timeout_s: float) -> str:
    """One short reason for a network failure, for retry lines and the final error."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, urllib.error.URLError):
        return _reason(str(exc.reason))
    if isinstance(exc, http.client.IncompleteRead):
        return f"truncated: got {len(exc.partial)} bytes, connection closed early"
    if isinstance(exc, http.client.BadStatusLine):
        return f"not an HTTP response (status line {_reason(repr(exc.line))})"
    return _reason(str(exc)) or type(exc).__name__


def _reason(text: str) -> str:
    # Server-sent text: its first line only (urllib's redirect-loop message quotes the last response),
    # with control bytes escaped and cut short.
    return one_line(text.strip().split("\n")[0], _REASON_CHARS)


class _DeadlinePassed(Exception):
    """The whole download took longer than its wall-clock limit."""


@dataclass(frozen=True)
class _Expected:
    """What the body must be: its hash, its largest size, and the keys the error lines name."""

    digest: str
    algorithm: str
    max_bytes: int
    keys: Keys


def _attempt(
    url: str, dest: Path, expected: _Expected, timeout_s: float, deadline: float, clock: Callable[[], float]
) -> None:
    """Download once into place; raise _Retryable for failures worth another try.

    ``deadline`` (on ``clock``) ends the attempt however the server trickles: every read
    returns what one ``recv`` got (``read1``) and is given at most the time left.
    """
    with atomic_output(dest) as tmp:
        # Network OSErrors are caught here: atomic_output would report them as OutputError.
        timeout_s = min(timeout_s, max(deadline - clock(), 0.01))
        try:
            response = _opener(url).open(url, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"HTTP {exc.code} {_reason(str(exc.reason))}"
            if exc.code >= 500 or exc.code == 429:
                raise _Retryable(reason) from None
            raise FetchError(f"{url}: download failed: {reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(_describe(exc, timeout_s)) from None

        with response:
            length_header = (response.headers.get("Content-Length") or "").strip()
            # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
            expected_len = int(length_header) if length_header.isascii() and length_header.isdigit() else None
            max_bytes, keys = expected.max_bytes, expected.keys
            if expected_len is not None and expected_len > max_bytes:
                raise FetchError(f"{url}: response is {expected_len} bytes, more than {keys.max_bytes} ({max_bytes})")
            digest = hashlib.new(expected.algorithm)
            received = 0
            with open(tmp, "wb") as handle:
                while True:
                    if clock() >= deadline:
                        raise _DeadlinePassed(f"{received} bytes received")
                    try:
                        chunk = response.read1(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Retryable(_describe(exc, timeout_s)) from None
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise FetchError(f"{url}: response exceeds {keys.max_bytes} ({max_bytes} bytes)")
                    digest.update(chunk)
                    handle.write(chunk)
                # http.client returns a short body without complaint; the length is our only check.
                if expected_len is not None and received != expected_len:
                    raise _Retryable(f"truncated: got {received} of {expected_len} bytes")
                handle.flush()
                os.fsync(handle.fileno())

        got = digest.hexdigest()
        if got != expected.digest:
            raise FetchError(
                f"{url}: downloaded file has the wrong {expected.algorithm} (expected {expected.digest}, got {got}); "
                f"{keys.wrong_hash_hint}"
            )


def ensure_file(
    dest: Path,
    url: str | None,
    sha256: str | None,
    *,
    max_bytes: int = MODEL_MAX_BYTES,
    deadline_s: float = DOWNLOAD_DEADLINE_S,
    timeout_s: float = READ_TIMEOUT_S,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Path:
    """Return ``dest`` verified against ``sha256``, downloading it from ``url`` if missing.

    ``max_bytes`` bounds the file and the download (``model.max_bytes``); ``deadline_s`` bounds the
    whole download, retries and back-off included (``model.download_timeout_s``). After a failed
    attempt ``sleep`` waits ``backoff_s``, then twice as long after each further one. The deadline is on
    ``clock`` (tests pass a recording sleep and a clock they move, to see the back-off and the deadline).
    """
    dest = Path(dest)
    expected = sha256.strip().lower() if sha256 is not None else None

    if dest.exists():
        size = require_regular_file(dest, "model file", InputError).st_size
        if expected is None:
            return dest
        if size > max_bytes:
            raise InputError(f"{dest}: model is {size} bytes, more than model.max_bytes ({max_bytes}); raise the limit")
        got = sha256_of(dest, max_bytes)
        if got == expected:
            return dest
        # Never advise deleting: the file may be the user's own model, not a bad download.
        raise FetchError(
            f"{dest}: sha256 mismatch (expected {expected}, got {got}): not the file model.sha256 describes; "
            "point model.path at that file, or set model.sha256 (--input_sha256) to this file's"
        )

    if url is None:
        raise FetchError(f"{dest}: model file not found and no model.url to download it from")
    if expected is None:
        raise FetchError(
            f"{dest}: model file not found and model.sha256 is not set; "
            f"refusing to download {one_line(url, _REASON_CHARS)} unverified (set model.sha256)"
        )
    return download(
        url, dest, expected, max_bytes=max_bytes, deadline_s=deadline_s, timeout_s=timeout_s, retries=retries,
        backoff_s=backoff_s, sleep=sleep, clock=clock,
    )  # fmt: skip


def download(
    url: str,
    dest: Path,
    digest: str,
    *,
    algorithm: str = "sha256",
    max_bytes: int = MODEL_MAX_BYTES,
    deadline_s: float = DOWNLOAD_DEADLINE_S,
    keys: Keys = MODEL_KEYS,
    timeout_s: float = READ_TIMEOUT_S,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Path:
    """Download ``url`` into ``dest``, in place only once its ``algorithm`` hash is ``digest``; see :func:`ensure_file`
    for the bounds and the retries. ``keys`` names the settings the error lines mention."""
    _check_url(url)
    shown_url = one_line(url, _REASON_CHARS)
    expected = _Expected(digest.strip().lower(), algorithm, max_bytes, keys)

    deadline = clock() + deadline_s
    attempts = max(1, retries)
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            _attempt(url, dest, expected, timeout_s, deadline, clock)
            return dest
        except _Retryable as exc:
            reason = str(exc)
        except _DeadlinePassed as exc:
            reason = str(exc)
        if clock() >= deadline:
            raise FetchError(
                f"{shown_url}: download not finished within {keys.deadline} ({deadline_s:g} s; {reason})"
            )
        if attempt < attempts:
            delay = backoff_s * 2 ** (attempt - 1)
            if clock() + delay >= deadline:
                break
            print(
                f"retrying {shown_url} in {delay:g} s (attempt {attempt}/{attempts}: {reason})",
                file=sys.stderr,
            )
            sleep(delay)
    plural = "s" if attempt != 1 else ""
    raise FetchError(f"{shown_url}: download failed after {attempt} attempt{plural}: {reason}")
