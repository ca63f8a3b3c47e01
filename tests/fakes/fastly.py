"""A loopback Fastly API: URL purge, surrogate-key bulk purge, purge_all; ``Fastly-Key`` auth, soft purge.

    fastly = FakeFastly(key="fastly-test-key", service_id="SU1Z0isxPaozGVKXdv0eY", latency_seconds=0.0)
    edge = fastly.edge()             # a FakeEdge with X-Cache "MISS, MISS" / "HIT, HIT" (shielding) it purges
    fastly.fail_items({"https://shop.example/bad": 400})  # that URL's purge answers 400; a key is left out of the map
    fastly.purges                    # [(kind, item, soft), ...] kind in url/key/all

Routes, like the real API:
- ``POST /purge/{host}{path}``                         -> ``{"status": "ok", "id": "…"}``
- ``POST /service/{id}/purge`` ``{"surrogate_keys": [...]}`` (at most ``max_keys``) -> ``{key: purge_id, ...}``
- ``POST /service/{id}/purge_all``                     -> ``{"status": "ok"}``
``Fastly-Soft-Purge: 1`` marks objects stale (the edge serves the old copy once more). Missing/wrong key: 401
``{"msg": "Provided credentials are missing or invalid"}``; unknown service: 404.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes.base import Answer, FakeEdge, FakeServer, Recorded, json_answer

_SERVICE = re.compile(r"^/service/([^/?]+)/(purge|purge_all)/?$")


def _purge_id() -> str:
    return f"{uuid.uuid4().int % 1000}-{uuid.uuid4().int % 10**10}-{uuid.uuid4().int % 10**6}"


class FakeFastly(FakeServer):
    def __init__(
        self,
        *,
        key: str = "fastly-test-key-0123456789",
        service_id: str = "SU1Z0isxPaozGVKXdv0eY",
        max_keys: int = 256,
        latency_seconds: float = 0.0,
    ):
        self.key = key
        self.service_id = service_id
        self.max_keys = max_keys
        self.purges: list[tuple[str, str, bool]] = []
        self.edges: list[FakeEdge] = []
        self._bad_items: dict[str, int] = {}
        super().__init__(latency_seconds=latency_seconds)

    def edge(self, **kwargs: Any) -> FakeEdge:
        kwargs.setdefault("hit_value", "HIT, HIT")
        kwargs.setdefault("miss_value", "MISS, MISS")
        edge = FakeEdge(status_header="X-Cache", tag_header="Surrogate-Key", **kwargs)
        self.edges.append(edge)
        return edge

    def close(self) -> None:
        for edge in self.edges:
            edge.close()
        super().close()

    def fail_items(self, items: Mapping[str, int] | Iterable[str]) -> None:
        """A URL here answers its status (default 400) when purged; a surrogate key is missing from the bulk answer."""
        statuses = items if isinstance(items, Mapping) else {item: 400 for item in items}
        with self._lock:
            self._bad_items.update(statuses)

    def failure_body(self, status: int) -> bytes:
        if status == 429:
            return json.dumps({"msg": "Too many requests", "detail": "Rate limit exceeded"}).encode()
        return json.dumps({"msg": f"HTTP {status}", "detail": "scripted failure"}).encode()

    def purged(self, kind: str) -> list[str]:
        with self._lock:
            return [item for k, item, _ in self.purges if k == kind]

    # --- the API ------------------------------------------------------------------------------------------

    def handle(self, request: Recorded) -> Answer:
        if request.method != "POST":
            return json_answer(405, {"msg": "Method not allowed"})
        if request.headers.get("fastly-key") != self.key:
            return json_answer(401, {"msg": "Provided credentials are missing or invalid"})
        soft = request.headers.get("fastly-soft-purge") == "1"
        if request.path.startswith("/purge/"):
            return self._purge_url(request.path[len("/purge/"):], soft)
        route = _SERVICE.match(request.path)
        if route is None:
            return json_answer(404, {"msg": "Record not found", "detail": f"No route for {request.path}"})
        if route.group(1) != self.service_id:
            return json_answer(404, {"msg": "Record not found", "detail": f"Cannot find service '{route.group(1)}'"})
        if route.group(2) == "purge_all":
            self._record("all", "*", False, lambda host, path, tags: True)
            return json_answer(200, {"status": "ok"})
        return self._purge_keys(request, soft)

    def _purge_url(self, rest: str, soft: bool) -> Answer:
        host, _, path = rest.partition("/")
        path = "/" + path
        url = f"https://{host}{path}"
        with self._lock:
            bad = self._bad_items.get(url) or self._bad_items.get(f"http://{host}{path}")
        if bad:
            return json_answer(bad, {"msg": "Bad request", "detail": f"cannot purge {host}{path}"})
        target = (host.lower(), path)
        self._record("url", f"{host}{path}", soft, lambda h, p, tags: (h, p) == target)
        return json_answer(200, {"status": "ok", "id": _purge_id()})

    def _purge_keys(self, request: Recorded, soft: bool) -> Answer:
        body = request.json
        keys = body.get("surrogate_keys") if isinstance(body, dict) else None
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            return json_answer(400, {"msg": "Bad request", "detail": "surrogate_keys must be a non-empty array of strings"})
        if len(keys) > self.max_keys:
            return json_answer(400, {"msg": "Bad request", "detail": f"at most {self.max_keys} surrogate keys per request"})
        with self._lock:
            good = [k for k in keys if k not in self._bad_items]
        answer = {}
        for key in good:
            self._record("key", key, soft, lambda h, p, tags, key=key: key in tags)
            answer[key] = _purge_id()
        return json_answer(200, answer)

    def _record(self, kind: str, item: str, soft: bool, match) -> None:
        with self._lock:
            self.purges.append((kind, item, soft))
        for edge in self.edges:
            edge.purge(match, soft=soft)
