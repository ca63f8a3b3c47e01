"""The plumbing every fake shares: a threaded loopback HTTP server that records, delays and fails on demand.

    api = FakeCloudflare(latency_seconds=0.05)   # any FakeServer subclass
    api.url                      # http://127.0.0.1:PORT
    api.requests                 # [Recorded(method, path, headers, json, body, status, started, ended), ...]
    api.max_in_flight            # most requests seen being handled at the same time
    api.fail_next(429, times=2, retry_after=1)   # the next 2 requests answer 429 with Retry-After: 1
    api.close()                  # or use it as a context manager

``FakeEdge`` is a tiny CDN edge: it caches pages (MISS then HIT) until the API fake it is attached to records a
purge covering them; then it serves the current content again (MISS), or once more the stale copy after a soft
purge.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Recorded:
    """One request as the fake saw it. ``headers`` keys are lower-case; ``json`` is None if the body was not JSON."""

    method: str
    path: str  # raw path with query string, as sent
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int = 0  # what the fake answered
    started: float = 0.0  # time.monotonic()
    ended: float = 0.0


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, data: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a benchmark may open many connections at once
    fake: FakeServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's delayed ACK
    # (~40 ms on Linux) on every keep-alive request, which would look like latency of ours.
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.fake._dispatch(self.command, self.path, self.headers.items(), body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PURGE = do_PATCH = _any


class FakeServer:
    """Base of the fakes. Subclasses implement ``handle(request) -> (status, headers, body)``."""

    def __init__(self, *, latency_seconds: float = 0.0):
        self.latency_seconds = latency_seconds
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()

    # --- what tests use -----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(
        self, status: int, times: int = 1, retry_after: float | None = None, body: bytes | str | dict | None = None
    ) -> None:
        """The next ``times`` requests (any path) answer ``status`` (with ``Retry-After`` if given) and do nothing."""
        if isinstance(body, dict):
            payload, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
        elif body is None:
            payload, headers = self.failure_body(status), {"Content-Type": "application/json"}
        else:
            payload, headers = (body.encode() if isinstance(body, str) else body), {"Content-Type": "text/plain"}
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(status, retry_after, payload, headers))

    def failure_body(self, status: int) -> bytes:
        """The body of a scripted failure; subclasses answer in their API's error format."""
        return json.dumps({"error": f"scripted HTTP {status}"}).encode()

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix) and (method is None or r.method == method)]

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- subclasses -----------------------------------------------------------------------------------------

    def handle(self, request: Recorded) -> Answer:
        raise NotImplementedError

    # --- plumbing -------------------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes) -> Answer:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = Recorded(method, path, {k.lower(): v for k, v in headers}, body, parsed, started=time.monotonic())
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_seconds:
                time.sleep(self.latency_seconds)  # this connection's own thread: other requests go on
            with self._lock:
                failure = self._failures.pop(0) if self._failures else None
            if failure is not None:
                headers_out = dict(failure.headers)
                if failure.retry_after is not None:
                    headers_out["Retry-After"] = f"{failure.retry_after:g}"
                answer: Answer = (failure.status, headers_out, failure.body)
            else:
                answer = self.handle(request)
        except Exception as exc:  # noqa: BLE001 - a bug in a fake shows as a 599 in the test, not a hang
            answer = (599, {"Content-Type": "text/plain"}, f"fake error: {type(exc).__name__}: {exc}".encode())
        finally:
            with self._lock:
                self.in_flight -= 1
        request.status = answer[0]
        request.ended = time.monotonic()
        return answer


class FakeRecorder(FakeServer):
    """Answers every request 200 with an empty body and records it: the wire, for a layer (Varnish, nginx) whose
    real daemon does not show the request line it was sent."""

    def handle(self, request: Recorded) -> Answer:
        return 200, {"Content-Type": "text/plain"}, b""


# --- the CDN edge -------------------------------------------------------------------------------------------


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@dataclass
class _Page:
    body: bytes
    tags: tuple[str, ...]


@dataclass
class _Cached:
    body: bytes
    tags: tuple[str, ...]
    stale: bool = False


Match = Callable[[str, str, tuple[str, ...]], bool]  # (host, path, tags) -> is this object purged?


class FakeEdge(FakeServer):
    """A CDN node: ``GET path`` with ``Host`` serves the cached copy (HIT) or the current content (MISS, cached).

    ``set_page(url, body, tags)`` sets what the origin serves; ``edit(url, body)`` changes it without touching the
    cache (so the edge goes stale). The API fake it is attached to calls ``purge(match, soft)``.
    ``hit_value`` / ``miss_value`` are what the status header says (Fastly style: ``"MISS, HIT"``).
    """

    def __init__(
        self,
        *,
        status_header: str = "CF-Cache-Status",
        hit_value: str = "HIT",
        miss_value: str = "MISS",
        tag_header: str = "Cache-Tag",
        latency_seconds: float = 0.0,
    ):
        self.status_header = status_header
        self.hit_value = hit_value
        self.miss_value = miss_value
        self.tag_header = tag_header
        self.pages: dict[tuple[str, str], _Page] = {}
        self.cache: dict[tuple[str, str], _Cached] = {}
        super().__init__(latency_seconds=latency_seconds)

    @staticmethod
    def key(url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return (parts.hostname or "").lower(), path

    def set_page(self, url: str, body: str | bytes, tags: Iterable[str] = ()) -> None:
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self.pages[self.key(url)] = _Page(data, tuple(tags))

    def edit(self, url: str, body: str | bytes) -> None:
        with self._lock:
            page = self.pages[self.key(url)]
            page.body = body.encode() if isinstance(body, str) else body

    def warm(self, url: str) -> None:
        """Cache the current content for ``url`` as if a visitor had fetched it."""
        with self._lock:
            page = self.pages[self.key(url)]
            self.cache[self.key(url)] = _Cached(page.body, page.tags)

    def is_cached(self, url: str) -> bool:
        with self._lock:
            return self.key(url) in self.cache

    def origin_observation(self, url: str):  # -> agent.layers.base.Observation
        """What the origin serves for ``url`` now, as cachebot's origin fetch would observe it."""
        from agent.layers.base import Observation
        from agent.layers.probe import body_hash

        with self._lock:
            page = self.pages[self.key(url)]
        return Observation(True, 200, None, etag_of(page.body), None, body_hash(page.body), page.tags)

    def purge(self, match: Match, soft: bool = False) -> int:
        """Called by the API fakes: drop (or, soft, mark stale) every cached object ``match`` selects."""
        count = 0
        with self._lock:
            for key in list(self.cache):
                if match(key[0], key[1], self.cache[key].tags):
                    count += 1
                    if soft:
                        self.cache[key].stale = True
                    else:
                        del self.cache[key]
        return count

    def handle(self, request: Recorded) -> Answer:
        if request.method not in ("GET", "HEAD"):
            return 405, {"Content-Type": "text/plain"}, b"method not allowed"
        key = (request.headers.get("host", "").split(":")[0].lower(), request.path)
        with self._lock:
            cached = self.cache.get(key)
            page = self.pages.get(key)
            if cached is not None and cached.stale:
                del self.cache[key]  # served stale once while "revalidating"; the next request gets fresh content
                body, tags, status = cached.body, cached.tags, self.hit_value
            elif cached is not None:
                body, tags, status = cached.body, cached.tags, self.hit_value
            elif page is not None:
                self.cache[key] = _Cached(page.body, page.tags)
                body, tags, status = page.body, page.tags, self.miss_value
            else:
                return 404, {"Content-Type": "text/plain", self.status_header: "DYNAMIC"}, b"not found"
        headers = {"Content-Type": "text/html", "ETag": etag_of(body), self.status_header: status}
        if tags:
            headers[self.tag_header] = ("," if self.tag_header == "Cache-Tag" else " ").join(tags)
        return 200, headers, body
