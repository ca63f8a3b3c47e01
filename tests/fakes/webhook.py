"""A loopback in-house invalidation hook, for the generic ``webhook`` layer.

    hook = FakeWebhook(token="hook-secret", header="X-Api-Key", status=202, latency_seconds=0.0)
    edge = hook.edge()               # a FakeEdge (X-Cache) that this hook purges
    hook.invalidated                 # URLs purged, in order

Any method and path: the URLs come from the query parameter ``url``, or the JSON body's ``url`` / ``urls``.
A wrong or missing ``header`` answers 401; ``fail_items`` makes a request naming that URL answer 422.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.base import Answer, FakeEdge, FakeServer, Recorded, json_answer


class FakeWebhook(FakeServer):
    def __init__(self, *, token: str | None = "hook-secret-0123456789", header: str = "X-Api-Key", status: int = 202,
                 latency_seconds: float = 0.0):
        self.token = token
        self.header = header.lower()
        self.status = status
        self.invalidated: list[str] = []
        self.edges: list[FakeEdge] = []
        self._bad: set[str] = set()
        super().__init__(latency_seconds=latency_seconds)

    def edge(self, **kwargs: Any) -> FakeEdge:
        edge = FakeEdge(status_header="X-Cache", **kwargs)
        self.edges.append(edge)
        return edge

    def close(self) -> None:
        for edge in self.edges:
            edge.close()
        super().close()

    def fail_items(self, items: Iterable[str]) -> None:
        with self._lock:
            self._bad.update(items)

    def handle(self, request: Recorded) -> Answer:
        if self.token is not None and request.headers.get(self.header) != self.token:
            return json_answer(401, {"error": "bad or missing API key"})
        urls = parse_qs(urlsplit(request.path).query).get("url", [])
        if isinstance(request.json, dict):
            if isinstance(request.json.get("url"), str):
                urls.append(request.json["url"])
            urls.extend(u for u in request.json.get("urls") or [] if isinstance(u, str))
        if not urls:
            return json_answer(400, {"error": "no url given"})
        with self._lock:
            bad = [u for u in urls if u in self._bad]
        if bad:
            return json_answer(422, {"error": f"cannot invalidate {bad[0]}"})
        with self._lock:
            self.invalidated.extend(urls)
        wanted = {FakeEdge.key(u) for u in urls}
        for edge in self.edges:
            edge.purge(lambda host, path, tags: (host, path) in wanted)
        return self.status, {}, b""
