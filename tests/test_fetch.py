"""ensure_file against a real HTTPS server on 127.0.0.1 that each test scripts.

The server's certificate is the test session's (tests/https_server.py), which the client trusts through
SSL_CERT_FILE. Plain http, which fetch allows to loopback only, has its own fixture.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from https_server import Certificate, wrap_tls

from tuning.errors import FetchError, InputError
from tuning.files.fetch import ensure_file, sha256_of

MODEL = Path(__file__).parent.parent / "models" / "mnist-12.onnx"
MODEL_SHA256 = "5c688690f8bacf667d4c2074af5ad0646ca328d7ab03eccf944a65b320171bdd"
PAYLOAD = MODEL.read_bytes()

pytestmark = pytest.mark.fast


@dataclass
class Reply:
    """One scripted response: status, body, and how to misbehave."""

    status: int = 200
    body: bytes = PAYLOAD
    truncate: bool = False  # send the full Content-Length but only half the body
    stall_s: float = 0.0  # send half the body, then wait this long before the rest
    delay_s: float = 0.0  # sleep before answering
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Server:
    url: str
    replies: list[Reply] = field(default_factory=list)
    requests: int = 0
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self) -> Reply:
        with self.lock:
            self.requests += 1
            self.arrivals.append(time.monotonic())
            # The last scripted reply repeats, so "always fail" needs one entry.
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def serve(state: Server, scheme: str, certificate: Certificate | None = None) -> Iterator[Server]:
    """Run a scripted server for ``state`` until the test ends."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reply = state.next_reply()
            if reply.delay_s:
                time.sleep(reply.delay_s)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                body = reply.body[: len(reply.body) // 2] if reply.truncate else reply.body
                if reply.stall_s:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    time.sleep(reply.stall_s)
                    body = body[len(body) // 2 :]
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                pass  # the client gave up (timeout tests); nothing to answer
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if certificate is not None:
        wrap_tls(httpd, certificate)
    # A short poll interval keeps shutdown() from adding 0.5 s to every test.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}/mnist-12.onnx"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An HTTPS server whose certificate the client trusts."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    yield from serve(Server(url=""), "https", certificate)


@pytest.fixture
def untrusted_server(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An HTTPS server with the same certificate, which the client's default CA store does not hold."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    yield from serve(Server(url=""), "https", certificate)


@pytest.fixture
def http_server() -> Iterator[Server]:
    yield from serve(Server(url=""), "http")


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def fetch(server: Server, dest: Path, **kwargs: object) -> Path:
    kwargs.setdefault("backoff_s", 0.01)
    return ensure_file(dest, server.url, MODEL_SHA256, **kwargs)  # type: ignore[arg-type]


def test_payload_is_the_real_model() -> None:
    assert hashlib.sha256(PAYLOAD).hexdigest() == MODEL_SHA256
    assert sha256_of(MODEL) == MODEL_SHA256


def test_good_download(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply()]
    assert server.url.startswith("https://127.0.0.1:")
    dest = tmp_path / "mnist-12.onnx"
    assert fetch(server, dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sha256_of(dest) == MODEL_SHA256
    assert server.requests == 1
    assert temp_files(tmp_path) == []


def test_verified_copy_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    dest.write_bytes(PAYLOAD)
    assert fetch(server, dest) == dest
    assert server.requests == 0
    assert dest.read_bytes() == PAYLOAD


def test_served_body_with_wrong_checksum(server: Server, tmp_path: Path) -> None:
    wrong = b"not the model" * 100
    server.replies = [Reply(body=wrong)]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError) as info:
        fetch(server, dest)
    message = str(info.value)
    assert MODEL_SHA256 in message
    assert hashlib.sha256(wrong).hexdigest() in message
    assert "expected" in message and "got" in message
    assert "\n" not in message
    assert server.requests == 1  # a wrong file is not retried
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_truncated_every_time(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(truncate=True)]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError) as info:
        fetch(server, dest, retries=3)
    message = str(info.value)
    assert "truncated" in message
    assert f"of {len(PAYLOAD)} bytes" in message
    assert "3 attempts" in message
    assert server.requests == 3
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_truncated_once_then_good(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(truncate=True), Reply()]
    dest = tmp_path / "mnist-12.onnx"
    fetch(server, dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == 2
    assert temp_files(tmp_path) == []


def test_http_500_then_success(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(status=500, body=b"oops"), Reply()]
    dest = tmp_path / "mnist-12.onnx"
    fetch(server, dest)
    assert sha256_of(dest) == MODEL_SHA256
    assert server.requests == 2
    assert temp_files(tmp_path) == []


def test_http_500_every_time(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(status=500, body=b"oops")]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="after 2 attempts: HTTP 500 Internal Server Error"):
        fetch(server, dest, retries=2)
    assert server.requests == 2
    assert not dest.exists()
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("status", [429, 500, 502, 503, 599])
def test_too_many_requests_and_server_errors_are_retried(server: Server, tmp_path: Path, status: int) -> None:
    server.replies = [Reply(status=status, body=b"later"), Reply()]
    dest = tmp_path / "mnist-12.onnx"
    fetch(server, dest, retries=2)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == 2


@pytest.mark.parametrize("status", [400, 403, 404, 428, 430, 499])
def test_other_client_errors_are_not_retried(server: Server, tmp_path: Path, status: int) -> None:
    server.replies = [Reply(status=status, body=b"no")]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match=f"download failed: HTTP {status}") as info:
        fetch(server, dest, retries=3)
    assert server.url in str(info.value)
    assert server.requests == 1
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_http_404_is_not_retried(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(status=404, body=b"missing")]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="HTTP 404 Not Found"):
        fetch(server, dest, retries=3)
    assert server.requests == 1
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_existing_file_with_wrong_hash_is_left_alone(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    stale = PAYLOAD[:-1] + b"\x00"
    dest.write_bytes(stale)
    with pytest.raises(FetchError) as info:
        fetch(server, dest)
    message = str(info.value)
    assert str(dest) in message
    assert MODEL_SHA256 in message
    assert hashlib.sha256(stale).hexdigest() in message
    assert "delete" not in message and "model.sha256" in message  # it may be the user's own model
    assert dest.read_bytes() == stale
    assert server.requests == 0


def test_plain_http_to_remote_host_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "mnist-12.onnx"
    url = "http://example.com/mnist-12.onnx"
    with pytest.raises(FetchError) as info:
        ensure_file(dest, url, MODEL_SHA256, timeout_s=0.5, retries=1)
    assert url in str(info.value)
    assert "only https" in str(info.value)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # refused before even creating a temp file


def test_redirect_to_plain_http_remote_is_refused(server: Server, tmp_path: Path) -> None:
    target = "http://example.com/mnist-12.onnx"
    server.replies = [Reply(status=302, body=b"", headers={"Location": target})]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="only https") as info:
        fetch(server, dest)
    assert target in str(info.value)
    assert server.requests == 1
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_redirect_to_loopback_is_followed(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(status=302, body=b"", headers={"Location": "/moved.onnx"}), Reply()]
    dest = tmp_path / "mnist-12.onnx"
    fetch(server, dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == 2


def test_response_larger_than_max_bytes(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="1000"):
        fetch(server, dest, max_bytes=1000)
    assert server.requests == 1  # too large is not retried
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_timeout_is_retried(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(delay_s=1.0)]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="timed out after 0.5 s") as info:
        fetch(server, dest, timeout_s=0.5, retries=2)
    assert "2 attempts" in str(info.value)
    assert server.requests == 2
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mnist-12.onnx"
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="connection refused") as info:
        ensure_file(dest, url, MODEL_SHA256, retries=2, backoff_s=0.01)
    assert str(info.value) == f"{url}: download failed after 2 attempts: connection refused"
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_missing_file_without_url(tmp_path: Path) -> None:
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="no model.url"):
        ensure_file(dest, None, MODEL_SHA256)


def test_missing_file_without_sha256_is_not_downloaded(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="model.sha256"):
        ensure_file(dest, server.url, None)
    assert server.requests == 0
    assert not dest.exists()


def test_upper_case_sha256_with_spaces_matches(server: Server, tmp_path: Path) -> None:
    # sha256sum prints lower case, other tools upper case; both name the same file.
    server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    assert ensure_file(dest, server.url, f" {MODEL_SHA256.upper()}\n", backoff_s=0.01) == dest
    assert dest.read_bytes() == PAYLOAD and server.requests == 1
    assert ensure_file(dest, server.url, MODEL_SHA256.upper()) == dest  # the copy on disk, verified
    assert server.requests == 1


def test_untrusted_certificate_is_refused(untrusted_server: Server, tmp_path: Path) -> None:
    untrusted_server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED") as info:
        fetch(untrusted_server, dest, retries=1)
    assert untrusted_server.url in str(info.value) and "\n" not in str(info.value)
    assert not dest.exists()
    assert temp_files(tmp_path) == []


def test_plain_http_to_loopback_is_allowed(http_server: Server, tmp_path: Path) -> None:
    http_server.replies = [Reply()]
    assert http_server.url.startswith("http://127.0.0.1:")
    dest = tmp_path / "mnist-12.onnx"
    fetch(http_server, dest)
    assert dest.read_bytes() == PAYLOAD


def test_https_redirect_to_plain_http_on_loopback_is_followed(
    server: Server, http_server: Server, tmp_path: Path
) -> None:
    server.replies = [Reply(status=302, body=b"", headers={"Location": http_server.url})]
    http_server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    fetch(server, dest)
    assert dest.read_bytes() == PAYLOAD
    assert (server.requests, http_server.requests) == (1, 1)


class RecordingSleep:
    """time.sleep that also records what it was asked to wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


def test_backoff_doubles_after_each_failed_attempt(server: Server, tmp_path: Path, capsys) -> None:
    server.replies = [Reply(status=503, body=b"busy")] * 3 + [Reply()]
    sleep = RecordingSleep()
    dest = tmp_path / "mnist-12.onnx"
    ensure_file(dest, server.url, MODEL_SHA256, retries=4, backoff_s=0.05, sleep=sleep)
    assert dest.read_bytes() == PAYLOAD
    assert sleep.delays == pytest.approx([0.05, 0.1, 0.2])
    # The server saw the waits: each request came at least the back-off after the previous one.
    gaps = [later - earlier for earlier, later in zip(server.arrivals, server.arrivals[1:])]
    assert len(gaps) == 3 and all(gap >= delay for gap, delay in zip(gaps, sleep.delays))
    retry_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("retrying")]
    assert [line.split(" in ")[1].split(" s ")[0] for line in retry_lines] == ["0.05", "0.1", "0.2"]
    assert retry_lines[0].endswith("(attempt 1/4: HTTP 503 Service Unavailable)")


@pytest.mark.parametrize("retries", [1, 2, 3])
def test_no_wait_after_the_last_attempt(server: Server, tmp_path: Path, retries: int) -> None:
    server.replies = [Reply(status=503, body=b"busy")]
    sleep = RecordingSleep()
    with pytest.raises(FetchError, match=f"after {retries} attempts?: HTTP 503") as info:
        ensure_file(tmp_path / "m.onnx", server.url, MODEL_SHA256, retries=retries, backoff_s=0.01, sleep=sleep)
    assert server.requests == retries
    assert sleep.delays == pytest.approx([0.01 * 2**k for k in range(retries - 1)])
    assert ("1 attempt:" in str(info.value)) == (retries == 1)


def test_zero_retries_still_makes_one_attempt(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    ensure_file(dest, server.url, MODEL_SHA256, retries=0, sleep=RecordingSleep())
    assert server.requests == 1 and dest.read_bytes() == PAYLOAD


def test_a_failure_that_is_not_retried_does_not_wait(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(status=404, body=b"no")]
    sleep = RecordingSleep()
    with pytest.raises(FetchError, match="HTTP 404"):
        ensure_file(tmp_path / "m.onnx", server.url, MODEL_SHA256, retries=3, backoff_s=0.01, sleep=sleep)
    assert sleep.delays == []


def test_the_default_backoff_starts_at_one_second(server: Server, tmp_path: Path) -> None:
    # README: 3 attempts with exponential backoff. list.append records the delays without waiting.
    server.replies = [Reply(status=503, body=b"busy")]
    asked: list[float] = []
    with pytest.raises(FetchError, match="after 3 attempts"):
        ensure_file(tmp_path / "m.onnx", server.url, MODEL_SHA256, sleep=asked.append)
    assert asked == [1.0, 2.0]


def test_a_response_of_exactly_max_bytes_is_accepted(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply()]
    dest = tmp_path / "mnist-12.onnx"
    fetch(server, dest, max_bytes=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


def test_a_body_that_stalls_times_out_and_says_so(server: Server, tmp_path: Path) -> None:
    server.replies = [Reply(stall_s=1.0)]
    with pytest.raises(FetchError) as info:
        fetch(server, tmp_path / "m.onnx", timeout_s=0.3, retries=1)
    assert str(info.value) == f"{server.url}: download failed after 1 attempt: timed out after 0.3 s"


def test_a_configured_proxy_is_not_used_for_loopback(
    http_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy cannot reach this machine's loopback interface; port 9 (discard) on 127.0.0.1 refuses.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    http_server.replies = [Reply()]
    fetch(http_server, tmp_path / "m.onnx")
    assert http_server.requests == 1


def test_a_model_path_that_is_a_folder_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        sha256_of(tmp_path)
    assert str(info.value) == f"{tmp_path}: model file is a directory, expected a regular file"
