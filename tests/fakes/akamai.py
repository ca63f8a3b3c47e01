"""A loopback Akamai Fast Purge v3 API that checks EdgeGrid signatures the way Akamai does.

    api = FakeAkamai(client_token="akab-c", client_secret="s3cret", access_token="akab-a", edge=edge)
    api.url                                  # http://127.0.0.1:PORT, the layer's endpoint
    api.purges                               # accepted purges: [(action, kind, network, objects), ...]
    api.rate_limit_next(times=1, reset_in=0.2)   # 429 with X-RateLimit-* headers (no Retry-After)
    api.fail_next(503, times=2)              # 5xx flaps (problem JSON), from FakeServer

Endpoints: ``POST /ccu/v3/{invalidate|delete}/{url|tag|cpcode}/{production|staging}`` with
``{"objects": [...]}``. The signature is recomputed here from the EdgeGrid v1 spec (independently of the
``edgegrid-python`` client library): a wrong token, secret, body hash or a reused nonce answers 401 with
Akamai's problem JSON. A body of 50,000 bytes or more answers 413. Accepted purges answer 201 and, when an
``edge`` (``FakeEdge``) is attached, drop the matching objects from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from datetime import datetime, timezone

from tests.fakes.base import Answer, FakeEdge, FakeServer, Recorded, _Failure, json_answer

PURGE_PATH = re.compile(r"^/ccu/v3/(invalidate|delete)/(url|tag|cpcode)/(production|staging)$")
MAX_BODY = 50_000
AUTH_FIELDS = ("client_token", "access_token", "timestamp", "nonce", "signature")


def _b64_hmac(key: str, data: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), data.encode(), hashlib.sha256).digest()).decode()


def edgegrid_signature(
    *, client_secret: str, method: str, scheme: str, host: str, path_and_query: str, body: bytes,
    unsigned_header: str, timestamp: str,
) -> str:
    """EdgeGrid v1 (EG1-HMAC-SHA256): HMAC-SHA256 over the tab-joined request data, keyed by
    HMAC-SHA256(client_secret, timestamp); the content hash is base64 SHA-256 of a POST body, else empty.
    No headers are signed for Fast Purge (``headers_to_sign`` is empty)."""
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode() if method == "POST" and body else ""
    data = "\t".join([method, scheme, host, path_and_query, "", content_hash, unsigned_header])
    return _b64_hmac(_b64_hmac(client_secret, timestamp), data)


def problem(status: int, title: str, detail: str, path: str = "") -> Answer:
    return json_answer(status, {
        "type": f"https://problems.luna.akamaiapis.net/-/pep-authn/{'deny' if status == 401 else 'request-error'}",
        "title": title, "status": status, "detail": detail, "instance": f"https://fake.luna.akamaiapis.net{path}",
        "requestId": uuid.uuid4().hex[:12], "method": "POST",
        "requestTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }, {"Content-Type": "application/problem+json"})


class FakeAkamai(FakeServer):
    def __init__(self, *, client_token: str, client_secret: str, access_token: str,
                 edge: FakeEdge | None = None, estimated_seconds: int = 5, latency_seconds: float = 0.0):
        self.client_token = client_token
        self.client_secret = client_secret
        self.access_token = access_token
        self.edge = edge
        self.estimated_seconds = estimated_seconds
        self.purges: list[tuple[str, str, str, list[str]]] = []
        self.auth_failures: list[str] = []
        self._nonces: set[str] = set()
        super().__init__(latency_seconds=latency_seconds)

    # --- scripting ------------------------------------------------------------------------------------------

    def rate_limit_next(self, times: int = 1, reset_in: float = 0.2, retry_after: float | None = None) -> None:
        """The next ``times`` requests answer 429 with Akamai's rate-limit headers (no Retry-After unless given)."""
        reset = time.time() + reset_in
        headers = {"Content-Type": "application/problem+json", "X-RateLimit-Limit": "100",
                   "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.3f}"}
        body = problem(429, "Too many requests", "The rate limit for this purge type was exceeded")[2]
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(429, retry_after, body, dict(headers)))

    def failure_body(self, status: int) -> bytes:
        return problem(status, "Scripted failure", f"scripted HTTP {status}")[2]

    # --- the API ---------------------------------------------------------------------------------------------

    def check_signature(self, request: Recorded) -> str | None:
        """Why the request's EdgeGrid signature is not acceptable, or None."""
        header = request.headers.get("authorization", "")
        if not header.startswith("EG1-HMAC-SHA256 "):
            return "missing or malformed EG1-HMAC-SHA256 Authorization header"
        fields = dict(part.split("=", 1) for part in header[len("EG1-HMAC-SHA256 "):].split(";") if "=" in part)
        if any(name not in fields for name in AUTH_FIELDS):
            return "the Authorization header lacks a field"
        if fields["client_token"] != self.client_token or fields["access_token"] != self.access_token:
            return "Invalid client or access token"
        try:
            stamp = datetime.strptime(fields["timestamp"], "%Y%m%dT%H:%M:%S+0000").replace(tzinfo=timezone.utc)
        except ValueError:
            return "Invalid timestamp"
        if abs((datetime.now(timezone.utc) - stamp).total_seconds()) > 300:
            return "Timestamp is out of the allowed window"
        unsigned = header[: header.index("signature=")]
        expected = edgegrid_signature(
            client_secret=self.client_secret, method=request.method, scheme="http",
            host=request.headers.get("host", ""), path_and_query=request.path, body=request.body,
            unsigned_header=unsigned, timestamp=fields["timestamp"],
        )
        if not hmac.compare_digest(expected, fields["signature"]):
            return "The signature does not match"
        with self._lock:
            if fields["nonce"] in self._nonces:
                return "The nonce has already been used"
            self._nonces.add(fields["nonce"])
        return None

    def handle(self, request: Recorded) -> Answer:
        match = PURGE_PATH.match(request.path)
        if request.method != "POST" or not match:
            return problem(404, "Not Found", f"no such endpoint: {request.method} {request.path}", request.path)
        why = self.check_signature(request)
        if why is not None:
            with self._lock:
                self.auth_failures.append(why)
            return problem(401, "Not authorized", why, request.path)
        if len(request.body) >= MAX_BODY:
            return problem(413, "Request Entity Too Large",
                           f"The request body is {len(request.body)} bytes; it must be under {MAX_BODY}", request.path)
        action, kind, network = match.groups()
        objects = (request.json or {}).get("objects") if isinstance(request.json, dict) else None
        wanted_type = int if kind == "cpcode" else str  # Fast Purge takes CP codes as numbers, the rest as strings
        if not isinstance(objects, list) or not objects or not all(isinstance(o, wanted_type) and o for o in objects):
            return problem(400, "Bad Request", f"the body must be {{\"objects\": [non-empty {wanted_type.__name__}]}}",
                           request.path)
        if kind == "url" and not all(o.startswith(("http://", "https://")) for o in objects):
            return problem(400, "Bad Request", "url purges take absolute http(s) URLs", request.path)
        with self._lock:
            self.purges.append((action, kind, network, list(objects)))
        if self.edge is not None and network == "production":
            if kind == "url":
                wanted = {FakeEdge.key(o) for o in objects}
                self.edge.purge(lambda host, path, tags: (host, path) in wanted)
            elif kind == "tag":
                wanted_tags = set(objects)
                self.edge.purge(lambda host, path, tags: bool(wanted_tags & set(tags)))
        return json_answer(201, {
            "httpStatus": 201, "estimatedSeconds": self.estimated_seconds, "purgeId": str(uuid.uuid4()),
            "supportId": "17PY" + uuid.uuid4().hex[:20].upper(), "detail": "Request accepted",
        })
