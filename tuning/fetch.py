"""Fetch the model file once, verified by sha256, and never trust an unverified copy.

A download is written through ``atomic_output``: only a complete body whose hash
matches is renamed into place, so an interrupted or wrong download leaves nothing.
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
from pathlib import Path
from urllib.parse import urlsplit

from tuning.atomic import atomic_output
from tuning.errors import FetchError

_CHUNK = 64 * 1024
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class _Retryable(Exception):
    """An attempt failed in a way another attempt may fix; carries the reason."""


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() in _LOOPBACK_HOSTS


def _check_url(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    # Plain http is only safe where no one can sit in the middle: this machine.
    if scheme in ("https", "file") or (scheme == "http" and _is_loopback(url)):
        return
    raise FetchError(f"{url}: only https URLs are allowed (plain http only to localhost)")


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
        return f"timed out after {timeout_s} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, http.client.IncompleteRead):
        return f"truncated: got {len(exc.partial)} bytes, connection closed early"
    return str(exc) or type(exc).__name__


def _attempt(url: str, dest: Path, sha256: str, timeout_s: float, max_bytes: int) -> None:
    """Download once into place; raise _Retryable for failures worth another try."""
    with atomic_output(dest) as tmp:
        # Network OSErrors are caught here: atomic_output would report them as OutputError.
        try:
            response = _opener(url).open(url, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code >= 500 or exc.code == 429:
                raise _Retryable(reason) from None
            raise FetchError(f"{url}: download failed: {reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(_describe(exc, timeout_s)) from None

        with response:
            length_header = response.headers.get("Content-Length")
            expected_len = (
                int(length_header) if length_header and length_header.isdigit() else None
            )
            if expected_len is not None and expected_len > max_bytes:
                raise FetchError(
                    f"{url}: response is {expected_len} bytes, more than the {max_bytes} allowed"
                )
            digest = hashlib.sha256()
            received = 0
            with open(tmp, "wb") as handle:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Retryable(_describe(exc, timeout_s)) from None
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise FetchError(f"{url}: response exceeds the {max_bytes} bytes allowed")
                    digest.update(chunk)
                    handle.write(chunk)
                # http.client returns a short body without complaint; the length is our only check.
                if expected_len is not None and received != expected_len:
                    raise _Retryable(f"truncated: got {received} of {expected_len} bytes")
                handle.flush()
                os.fsync(handle.fileno())

        got = digest.hexdigest()
        if got != sha256:
            raise FetchError(
                f"{url}: downloaded file has the wrong sha256 (expected {sha256}, got {got}); "
                "check model.url and model.sha256"
            )


def ensure_file(
    dest: Path,
    url: str | None,
    sha256: str | None,
    *,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    max_bytes: int = 512 * 1024 * 1024,
) -> Path:
    """Return ``dest`` verified against ``sha256``, downloading it from ``url`` if missing."""
    dest = Path(dest)
    expected = sha256.strip().lower() if sha256 is not None else None

    if dest.exists():
        if expected is None:
            return dest
        got = sha256_of(dest)
        if got == expected:
            return dest
        raise FetchError(
            f"{dest}: sha256 mismatch (expected {expected}, got {got}); "
            "delete the file to download it again, or correct model.sha256"
        )

    if url is None:
        raise FetchError(f"{dest}: model file not found and no model.url to download it from")
    if expected is None:
        raise FetchError(
            f"{dest}: model file not found and model.sha256 is not set; "
            f"refusing to download {url} unverified (set model.sha256)"
        )
    _check_url(url)

    attempts = max(1, retries)
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            _attempt(url, dest, expected, timeout_s, max_bytes)
            return dest
        except _Retryable as exc:
            reason = str(exc)
        if attempt < attempts:
            delay = backoff_s * 2 ** (attempt - 1)
            print(
                f"retrying {url} in {delay:g} s (attempt {attempt}/{attempts}: {reason})",
                file=sys.stderr,
            )
            time.sleep(delay)
    plural = "s" if attempts != 1 else ""
    raise FetchError(f"{url}: download failed after {attempts} attempt{plural}: {reason}")
