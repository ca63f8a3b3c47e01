"""A loopback Cloudflare API: ``POST /client/v4/zones/{zone_id}/purge_cache`` with the real envelope.

    cf = FakeCloudflare(token="cf-test-token", zone_id="zone1", max_items=100, latency_seconds=0.0)
    edge = cf.edge()                 # a FakeEdge (CF-Cache-Status) that this API purges
    cf.fail_items({"https://shop.example/bad": "Invalid url"})   # any request containing it answers 400
    cf.purges                        # [(kind, items), ...] accepted purges, kind in files/tags/prefixes/hosts/purge_everything

Checks, like the real API: ``Authorization: Bearer <token>`` (401 code 9106 missing, 403 code 10000 wrong), the zone
(400 code 7003), exactly one of files/tags/prefixes/hosts/purge_everything (400 code 1012), at most ``max_items``
items (400 code 1015), body size at most ``max_body_bytes`` (413, an HTML page as Cloudflare's front end sends).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes.base import Answer, FakeEdge, FakeServer, Recorded, json_answer

KINDS = ("files", "tags", "prefixes", "hosts", "purge_everything")
_ROUTE = re.compile(r"^/client/v4/zones/([^/?]+)/purge_cache/?$")


def envelope(success: bool, errors: list[tuple[int, str]] = (), result: Any = None) -> dict[str, Any]:
    return {
        "success": success,
        "errors": [{"code": code, "message": message} for code, message in errors],
        "messages": [],
        "result": result,
    }


class FakeCloudflare(FakeServer):
    def __init__(
        self,
        *,
        token: str = "cf-test-token-0123456789",
        zone_id: str = "023e105f4ecef8ad9ca31a8372d0c353",
        max_items: int = 100,
        max_body_bytes: int = 256 * 1024,
        latency_seconds: float = 0.0,
    ):
        self.token = token
        self.zone_id = zone_id
        self.max_items = max_items
        self.max_body_bytes = max_body_bytes
        self.purges: list[tuple[str, list[Any]]] = []
        self.edges: list[FakeEdge] = []
        self._bad_items: dict[str, tuple[int, str]] = {}
        super().__init__(latency_seconds=latency_seconds)

    def edge(self, **kwargs: Any) -> FakeEdge:
        edge = FakeEdge(status_header="CF-Cache-Status", tag_header="Cache-Tag", **kwargs)
        self.edges.append(edge)
        return edge

    def close(self) -> None:
        for edge in self.edges:
            edge.close()
        super().close()

    def fail_items(self, items: Mapping[str, str] | Iterable[str], code: int = 1016) -> None:
        """Any purge request containing one of ``items`` answers 400 with that item's message (per-item failure)."""
        messages = items if isinstance(items, Mapping) else {item: f"Invalid item: {item}" for item in items}
        with self._lock:
            for item, message in messages.items():
                self._bad_items[item] = (code, message)

    def failure_body(self, status: int) -> bytes:
        if status == 429:
            return json.dumps(envelope(False, [(971, "Please wait and consider throttling your request speed")])).encode()
        return json.dumps(envelope(False, [(10013 if status >= 500 else 1000, f"HTTP {status}")])).encode()

    def purged(self, kind: str) -> list[Any]:
        with self._lock:
            return [item for k, items in self.purges if k == kind for item in items]

    # --- the API ------------------------------------------------------------------------------------------

    def handle(self, request: Recorded) -> Answer:
        route = _ROUTE.match(request.path)
        if route is None or request.method not in ("POST", "DELETE"):
            return json_answer(404, envelope(False, [(7000, "No route for that URI")]))
        auth = request.headers.get("authorization")
        if not auth:
            return json_answer(401, envelope(False, [(9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")]))
        if auth != f"Bearer {self.token}":
            return json_answer(403, envelope(False, [(10000, "Authentication error")]))
        if route.group(1) != self.zone_id:
            return json_answer(400, envelope(False, [(7003, (f"Could not route to {request.path}, perhaps your object "
                                                             "identifier is invalid?"))]))
        if len(request.body) > self.max_body_bytes:
            return 413, {"Content-Type": "text/html"}, (
                b"<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity "
                b"Too Large</h1></center><hr><center>cloudflare</center></body></html>"
            )
        body = request.json
        if not isinstance(body, dict):
            return json_answer(400, envelope(False, [(6007, "Malformed JSON in request body")]))
        present = [k for k in KINDS if k in body]
        if len(present) != 1 or set(body) - set(KINDS):
            return json_answer(400, envelope(False, [(1012, ('Request must contain one of "purge_everything", "files", '
                                                             '"tags", "hosts" or "prefixes"'))]))
        kind = present[0]
        if kind == "purge_everything":
            if body[kind] is not True:
                return json_answer(400, envelope(False, [(1012, "purge_everything must be true")]))
            return self._accept(kind, [True])
        items = body[kind]
        if not isinstance(items, list) or not items:
            return json_answer(400, envelope(False, [(1012, f"{kind} must be a non-empty array")]))
        if len(items) > self.max_items:
            return json_answer(400, envelope(False, [(1015, (f"You can only purge up to {self.max_items} {kind} per "
                                                             f"request (got {len(items)})"))]))
        keys = [item.get("url") if isinstance(item, dict) else item for item in items]
        if not all(isinstance(k, str) and k for k in keys):
            return json_answer(400, envelope(False, [(1012, f"every item in {kind} must be a non-empty string")]))
        with self._lock:
            bad = [self._bad_items[k] for k in keys if k in self._bad_items]
        if bad:
            return json_answer(400, envelope(False, bad[:1]))
        return self._accept(kind, keys)

    def _accept(self, kind: str, items: list[Any]) -> Answer:
        with self._lock:
            self.purges.append((kind, items))
        for edge in self.edges:
            edge.purge(_matcher(kind, items))
        return json_answer(200, envelope(True, result={"id": uuid.uuid4().hex}))


def _matcher(kind: str, items: list[Any]):
    if kind == "purge_everything":
        return lambda host, path, tags: True
    if kind == "files":
        wanted = {FakeEdge.key(url) for url in items}
        return lambda host, path, tags: (host, path) in wanted
    if kind == "tags":
        wanted_tags = {t.lower() for t in items}
        return lambda host, path, tags: any(t.lower() in wanted_tags for t in tags)
    if kind == "hosts":
        hosts = {h.lower() for h in items}
        return lambda host, path, tags: host in hosts
    prefixes = [p.split("://", 1)[-1].lower() for p in items]  # prefixes
    return lambda host, path, tags: any((host + path).lower().startswith(p) for p in prefixes)
