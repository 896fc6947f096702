"""HTTPS on 127.0.0.1 for the download tests (no machine here reaches the internet): a certificate and a file server.

The certificate is made by the openssl command (self-signed, for 127.0.0.1 and localhost); a client trusts it
through SSL_CERT_FILE, which OpenSSL reads when Python builds its default context for a connection, as it would
trust a company's CA. The fixture ``certificate`` (tests/conftest.py) makes one per test session.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def make_certificate(folder: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    openssl = shutil.which("openssl")
    assert openssl, "the download tests need the openssl command (Debian: openssl) to make a test certificate"
    made = Certificate(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(made.key), "-out", str(made.cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return made


def wrap_tls(httpd: http.server.HTTPServer, certificate: Certificate) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    # The handshake runs in each request's thread, so a client refusing the certificate cannot stall the server.
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)


@dataclass
class FileServer:
    url: str  # the folder's address, ending in "/"
    requested: list[str] = field(default_factory=list)  # request paths, in order


@contextlib.contextmanager
def serve_folder(folder: Path, certificate: Certificate) -> Iterator[FileServer]:
    """Serve the files of ``folder`` over HTTPS on 127.0.0.1 until the block ends."""
    state = FileServer(url="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requested.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    wrap_tls(httpd, certificate)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"https://127.0.0.1:{httpd.server_address[1]}/"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
