"""ensure_file at its boundaries: the deadline to the tick of a clock the test moves, limits at their
exact values, and each network failure's wording, against raw servers on 127.0.0.1.

The clock is ``ensure_file``'s ``clock`` seam: it moves only when the back-off sleeps or when a server
says it took time to answer, so "the deadline is reached exactly" is a state the test can set up.
Sockets, files and their time-outs stay real.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_fetch_bounds import MODEL_SHA256, PAYLOAD, raw_server  # noqa: F401  (raw_server: a fixture)

from tuning.errors import FetchError, InputError
from tuning.files.fetch import READ_TIMEOUT_S, _describe, ensure_file

pytestmark = pytest.mark.fast

START = 1000.0  # the clock's first reading: far from 0, so a deadline added instead of subtracted shows


class ManualClock:
    """A monotonic clock that moves only when the back-off sleeps or a server calls :meth:`advance`."""

    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def answer(status: str, body: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (status.encode(), len(body)) + body


def busy(clock: ManualClock | None = None, took_s: float = 0.0):  # type: ignore[no-untyped-def]
    """A server answering 503 every time, having taken ``took_s`` on ``clock`` to do it."""

    def play(connection: socket.socket) -> None:
        if clock is not None:
            clock.advance(took_s)
        connection.sendall(answer("503 Service Unavailable"))

    return play


def model_after(clock: ManualClock, took_s: float):  # type: ignore[no-untyped-def]
    """A server sending the model, its headers sent once ``took_s`` has passed on ``clock``."""

    def play(connection: socket.socket) -> None:
        clock.advance(took_s)
        connection.sendall(answer("200 OK", PAYLOAD))

    return play


def model_after_real_time(seconds: float):  # type: ignore[no-untyped-def]
    """A server sending the model after ``seconds`` of real time, which the socket's time-out counts."""

    def play(connection: socket.socket) -> None:
        time.sleep(seconds)
        connection.sendall(answer("200 OK", PAYLOAD))

    return play


def leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.name.endswith(".tmp")]


def cut(text: str, limit: int = 200) -> str:
    """What a message quotes of a server's or user's text: at most ``limit`` characters, the last an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the deadline, on a clock the test moves ------------------------------------------------------


@pytest.mark.parametrize(
    ("deadline_s", "expected_waits"),
    [
        # Back-off 1 s, then 2 s, 4 s, 8 s: a wait that would reach the deadline is not started. What the injected
        # clock leaves of the deadline also bounds the real socket of the next attempt: at least 1 s of it here
        # (with 0.01 s left, a connection on a machine at load 16 timed out).
        (3.0, [1.0]),  # 1 + 2 = 3 reaches it
        (4.5, [1.0, 2.0]),  # 1 + 2 < 4.5; 1 + 2 + 4 does not fit
        (1.0, []),  # even the first wait reaches it
        (9.0, [1.0, 2.0, 4.0]),  # 1 + 2 + 4 < 9; 1 + 2 + 4 + 8 does not fit
    ],
)
def test_no_wait_reaches_the_deadline(raw_server, tmp_path: Path, deadline_s: float, expected_waits: list[float]) -> None:
    clock = ManualClock()
    server = raw_server(busy())
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, retries=6, backoff_s=1.0, deadline_s=deadline_s,
                    sleep=clock.sleep, clock=clock)  # fmt: skip
    attempts = len(expected_waits) + 1
    assert clock.slept == expected_waits
    assert str(caught.value) == (
        f"{server.url()}: download failed after {attempts} attempt{'s' if attempts > 1 else ''}: "
        "HTTP 503 Service Unavailable"
    )
    assert server.connections == attempts and leftovers(tmp_path) == []


@pytest.mark.parametrize(("took_s", "passed"), [(2.0, True), (1.99, False)])
def test_time_spent_in_an_attempt_counts_against_the_deadline(raw_server, tmp_path: Path, took_s: float, passed: bool) -> None:
    clock = ManualClock()
    server = raw_server(busy(clock, took_s))
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, retries=3, backoff_s=1.0, deadline_s=2.0,
                    sleep=clock.sleep, clock=clock)  # fmt: skip
    if passed:  # the attempt ended at the deadline itself: no second one, whatever the back-off
        expected = "download not finished within model.download_timeout_s (2 s; HTTP 503 Service Unavailable)"
    else:  # 0.01 s were left, less than the first wait
        expected = "download failed after 1 attempt: HTTP 503 Service Unavailable"
    assert str(caught.value) == f"{server.url()}: {expected}"
    assert clock.slept == [] and server.connections == 1


@pytest.mark.parametrize(("took_s", "cut_off"), [(2.0, True), (1.99, False)])
def test_a_body_reaching_the_deadline_is_cut_off_before_its_first_byte(raw_server, tmp_path: Path, took_s: float, cut_off: bool) -> None:
    clock = ManualClock()
    server = raw_server(model_after(clock, took_s))
    dest = tmp_path / "m.onnx"
    if not cut_off:
        assert ensure_file(dest, server.url(), MODEL_SHA256, deadline_s=2.0, sleep=clock.sleep, clock=clock) == dest
        assert dest.read_bytes() == PAYLOAD
        return
    with pytest.raises(FetchError) as caught:
        ensure_file(dest, server.url(), MODEL_SHA256, deadline_s=2.0, sleep=clock.sleep, clock=clock)
    assert str(caught.value) == (
        f"{server.url()}: download not finished within model.download_timeout_s (2 s; 0 bytes received)"
    )
    assert not dest.exists() and leftovers(tmp_path) == []


def test_each_read_waits_at_most_the_time_left(raw_server, tmp_path: Path) -> None:
    # 0.3 s left of the deadline, 30 s allowed per read, a server that takes 1 s (of real time) to answer:
    # the socket gives up after the 0.3 s that are left.
    clock = ManualClock()
    server = raw_server(model_after_real_time(1.0))
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, timeout_s=30, deadline_s=0.3,
                    sleep=clock.sleep, clock=clock)  # fmt: skip
    assert str(caught.value) == f"{server.url()}: download failed after 1 attempt: timed out after 0.3 s"
    assert clock.slept == []


def test_a_deadline_already_reached_still_gives_the_attempt_a_hundredth_of_a_second(raw_server, tmp_path: Path) -> None:
    clock = ManualClock()
    server = raw_server(model_after_real_time(0.5))
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, deadline_s=0, sleep=clock.sleep, clock=clock)
    assert str(caught.value) == (
        f"{server.url()}: download not finished within model.download_timeout_s (0 s; timed out after 0.01 s)"
    )


def test_the_readme_states_the_read_timeout() -> None:
    readme = (ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")
    assert f"{READ_TIMEOUT_S:g} s per\n   read" in readme or f"{READ_TIMEOUT_S:g} s per read" in readme


# --- limits of a file already there ---------------------------------------------------------------


def test_a_file_of_exactly_max_bytes_is_verified_and_one_byte_less_allowed_refuses_it(tmp_path: Path) -> None:
    dest = tmp_path / "m.onnx"
    dest.write_bytes(PAYLOAD)
    assert ensure_file(dest, None, MODEL_SHA256, max_bytes=len(PAYLOAD)) == dest
    with pytest.raises(InputError) as caught:
        ensure_file(dest, None, MODEL_SHA256, max_bytes=len(PAYLOAD) - 1)
    assert str(caught.value) == (
        f"{dest}: model is {len(PAYLOAD)} bytes, more than model.max_bytes ({len(PAYLOAD) - 1}); raise the limit"
    )
    assert type(caught.value) is InputError and dest.read_bytes() == PAYLOAD


def test_a_model_path_that_is_a_folder_is_input_error_naming_it(tmp_path: Path) -> None:
    dest = tmp_path / "m.onnx"
    dest.mkdir()
    with pytest.raises(InputError) as caught:
        ensure_file(dest, "https://127.0.0.1:9/m.onnx", MODEL_SHA256)
    assert str(caught.value) == f"{dest}: model file is a directory, expected a regular file"
    assert caught.value.exit_code == 3 and dest.is_dir()


def test_a_file_with_another_hash_gets_advice_not_deletion(tmp_path: Path) -> None:
    dest = tmp_path / "m.onnx"
    dest.write_bytes(PAYLOAD + b"\x00")
    with pytest.raises(FetchError) as caught:
        ensure_file(dest, None, MODEL_SHA256)
    assert str(caught.value).endswith(
        "point model.path at that file, or set model.sha256 (--input_sha256) to this file's"
    )
    assert dest.read_bytes() == PAYLOAD + b"\x00"


def test_a_downloaded_file_with_another_hash_names_what_to_check(raw_server, tmp_path: Path) -> None:
    server = raw_server(lambda connection: connection.sendall(answer("200 OK", b"not the model")))
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, retries=1)
    assert str(caught.value).endswith("; check model.url and model.sha256")


# --- what a message quotes is cut short -----------------------------------------------------------


def test_a_long_refused_url_is_quoted_cut_short(tmp_path: Path) -> None:
    url = "http://example.com/" + "a" * 300
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", url, MODEL_SHA256)
    assert str(caught.value) == f"{cut(url)}: only https URLs are allowed (plain http only to localhost)"


def test_a_long_url_without_sha256_is_quoted_cut_short(tmp_path: Path) -> None:
    url = "https://example.com/" + "b" * 300
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", url, None)
    assert str(caught.value).endswith(f"refusing to download {cut(url)} unverified (set model.sha256)")


def test_a_long_url_that_fails_is_quoted_cut_short(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/" + "c" * 300
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", url, MODEL_SHA256, retries=1)
    assert str(caught.value) == f"{cut(url)}: download failed after 1 attempt: connection refused"


def test_a_long_status_reason_is_quoted_cut_short(raw_server, tmp_path: Path) -> None:
    reason = "slow down " * 40
    server = raw_server(lambda connection: connection.sendall(answer(f"500 {reason}")))
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, retries=1)
    assert str(caught.value) == f"{server.url()}: download failed after 1 attempt: HTTP 500 {cut(reason.strip())}"


def test_only_the_first_line_of_urllibs_redirect_loop_message_is_quoted(raw_server, tmp_path: Path) -> None:
    # urllib's message for a redirect loop has three lines, its last quoting the server's status line.
    server = raw_server(lambda connection: connection.sendall(
        b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"))  # fmt: skip
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, retries=1)
    message = str(caught.value)
    assert re.fullmatch(re.escape(f"{server.url()}: download failed: HTTP 302 ") + r"[^\\]*loop\.", message), message


# --- each failure's wording -----------------------------------------------------------------------


def close_at_once(connection: socket.socket) -> None:
    pass  # the request was read; the connection closes without an answer


def reset(connection: socket.socket) -> None:
    # SO_LINGER with a zero time-out: close() sends RST instead of FIN.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("play", [close_at_once, reset])
def test_a_connection_closed_without_an_answer_says_so(raw_server, tmp_path: Path, play) -> None:  # type: ignore[no-untyped-def]
    server = raw_server(play)
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, retries=1)
    assert str(caught.value) == f"{server.url()}: download failed after 1 attempt: connection reset"


def test_a_url_without_a_host_says_so(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", "https:///m.onnx", MODEL_SHA256, retries=1)
    assert str(caught.value) == "https:///m.onnx: download failed after 1 attempt: no host given"


def test_a_response_that_is_not_http_quotes_its_first_line(raw_server, tmp_path: Path) -> None:
    server = raw_server(lambda connection: connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))
    with pytest.raises(FetchError) as caught:
        ensure_file(tmp_path / "m.onnx", server.url(), MODEL_SHA256, retries=1)
    line = "SSH-2.0-OpenSSH_9.2\r\n"  # what http.client read as the status line
    assert str(caught.value) == (
        f"{server.url()}: download failed after 1 attempt: not an HTTP response (status line {repr(line)})"
    )


@pytest.mark.parametrize("error", [OSError(), http.client.HTTPException(), ConnectionAbortedError()])
def test_a_failure_without_text_is_named_by_its_type(error: BaseException) -> None:
    assert _describe(error, 30.0) == type(error).__name__


def test_plain_http_to_localhost_by_name_is_allowed(raw_server, tmp_path: Path) -> None:
    server = raw_server(lambda connection: connection.sendall(answer("200 OK", PAYLOAD)))
    dest = tmp_path / "m.onnx"
    url = server.url().replace("127.0.0.1", "localhost")
    assert ensure_file(dest, url, MODEL_SHA256) == dest and dest.read_bytes() == PAYLOAD
