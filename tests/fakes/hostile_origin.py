"""An origin (and cache) that misbehaves the way a hostile or broken server does, on a loopback port.

    with HostileOrigin() as server:
        server.url                       # http://127.0.0.1:PORT
        GET /big        -> BIG_BODY_BYTES of a known pattern, with Content-Length, ETag and Last-Modified
        GET /endless    -> a chunked body that never ends (until the client goes away)
        GET /drip       -> headers at once, then one byte every ``drip_seconds``, for ever
        GET /purge/...  -> 200 "purged" (so the server can stand in as an nginx cache_purge layer too)
        anything else   -> a small page
        server.requests  # [(method, path)] as received
        server.bytes_sent[path]  # body bytes written so far for that path

Every answer carries ``X-Cache-Status: HIT``. A body the client stops reading ends with a broken pipe on our side,
which ends that connection's thread: nothing keeps running after a test.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

BIG_BODY_BYTES = 3 * 1024 * 1024
PATTERN = bytes(range(256))
CHUNK = PATTERN * 256  # 64 KiB


def pattern_bytes(count: int) -> bytes:
    """The first ``count`` bytes every body here is made of."""
    whole, rest = divmod(count, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    origin: HostileOrigin


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        origin = self.server.origin
        origin.saw(self.command, self.path)
        try:
            if self.path.startswith("/purge/"):
                self._small(b"purged")
            elif self.path == "/big":
                self._big()
            elif self.path == "/endless":
                self._endless()
            elif self.path == "/drip":
                self._drip()
            else:
                self._small(b"<html>an ordinary page</html>")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading: exactly what a capped reader does

    do_HEAD = do_GET

    def _head(self, extra: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("X-Cache-Status", "HIT")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()

    def _write(self, data: bytes) -> None:
        if self.command == "HEAD":
            return
        self.wfile.write(data)
        self.wfile.flush()
        self.server.origin.count(self.path, len(data))

    def _small(self, body: bytes) -> None:
        self._head({"Content-Length": str(len(body))})
        self._write(body)

    def _big(self) -> None:
        self._head({"Content-Length": str(BIG_BODY_BYTES), "ETag": '"big-v1"',
                    "Last-Modified": "Wed, 25 Nov 2026 12:00:00 GMT"})
        left = BIG_BODY_BYTES
        while left > 0:
            piece = CHUNK[: min(left, len(CHUNK))]
            self._write(piece)
            left -= len(piece)

    def _endless(self) -> None:
        self._head({"Transfer-Encoding": "chunked"})
        while self.command != "HEAD" and not self.server.origin.closing.is_set():
            self._write(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")

    def _drip(self) -> None:
        self._head({"Content-Length": "100000"})
        while self.command != "HEAD" and not self.server.origin.closing.wait(self.server.origin.drip_seconds):
            self._write(b"x")


class HostileOrigin:
    def __init__(self, *, drip_seconds: float = 0.5):
        self.drip_seconds = drip_seconds
        self.requests: list[tuple[str, str]] = []
        self.bytes_sent: Counter[str] = Counter()
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.origin = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="HostileOrigin", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def saw(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def count(self, path: str, sent: int) -> None:
        with self._lock:
            self.bytes_sent[path] += sent

    def close(self) -> None:
        self.closing.set()  # endless and dripping answers stop writing
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

