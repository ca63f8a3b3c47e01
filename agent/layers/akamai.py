"""Akamai Fast Purge (CCU v3): ``POST /ccu/v3/{invalidate|delete}/{url|tag}/{network}`` with ``{"objects": [...]}``.

* **Signing.** Every request is EdgeGrid-signed (``EG1-HMAC-SHA256``) with the ``client_token``,
  ``client_secret`` and ``access_token`` from ``credentials``. The signature is computed by Akamai's own library
  (``edgegrid-python``'s ``EdgeGridAuthHeaders``); ``EdgeGridAuth`` itself is a *requests* auth, so a small
  ``httpx.Auth`` adapter hands it the httpx request. Every attempt is signed afresh (new timestamp and nonce:
  Akamai refuses a nonce it has seen), which an ``httpx.Auth`` flow does for free on each send.
* **Batching.** One kind (urls or tags) per request, and the JSON body must stay under 50,000 bytes: batches are
  cut by encoded size (and by ``max_batch`` only when it is set explicitly).
* **Answers.** 201 = accepted (``purgeId``, ``estimatedSeconds``); 429 (token bucket empty) and 5xx are retried
  with backoff, honouring ``Retry-After`` or else ``X-RateLimit-Reset``; 401/403 fail without echoing
  credentials.
* **Verification.** Fast Purge v3 has no status call: accepted is all Akamai tells us. With
  ``verify_endpoint`` (an address that reaches the edge, e.g. the site's edge hostname) the page is fetched
  through the edge and compared with the origin, like any HTTP cache, for up to ``estimatedSeconds``
  (bounded by ``verify_wait_seconds``); without it a purge is reported accepted but unverified.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Generator, Sequence
from ipaddress import ip_address
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from akamai.edgegrid.edgegrid import EdgeGridAuthHeaders, eg_timestamp, new_nonce
from pydantic import Field, field_validator

from agent.config import LayerConfig
from agent.layers.api import validate_verify_endpoint
from agent.layers.base import Capability, LayerUnavailable, Observation, Outcome, Verification, refused
from agent.layers.batching import map_bounded
from agent.layers.http import HttpCacheLayer, judge
from agent.layers.probe import observe_http
from agent.layers.retry import RetryableStatus, parse_retry_after, with_retries
from agent.layers.wire import purge_refusal, wire_url
from agent.urls import UnsafePath

MAX_BODY_BYTES = 50_000  # Fast Purge refuses a body of 50,000 bytes or more
CREDENTIALS = ("client_token", "client_secret", "access_token")
EDGE_DEBUG_PRAGMA = "akamai-x-cache-on, akamai-x-get-cache-key"


class _SignableRequest:
    """What ``EdgeGridAuthHeaders`` reads from a requests.PreparedRequest, taken from an httpx request."""

    def __init__(self, request: httpx.Request):
        self.method = request.method
        self.url = str(request.url)
        self.headers = request.headers  # case-insensitive, like requests' headers
        self.body = request.content


class EdgeGridHttpxAuth(httpx.Auth):
    """EdgeGrid v1 signing for httpx, using the reference implementation's signer."""

    requires_request_body = True

    def __init__(self, client_token: str, client_secret: str, access_token: str):
        self._signer = EdgeGridAuthHeaders(client_token, client_secret, access_token, max_body=MAX_BODY_BYTES * 4)

    def sign(self, request: httpx.Request, timestamp: str, nonce: str) -> str:
        return self._signer.make_auth_header(_SignableRequest(request), timestamp, nonce)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.sign(request, eg_timestamp(), str(new_nonce()))
        yield request


def encoded_body(objects: Sequence[str], kind: str = "url") -> bytes:
    values = [int(o) for o in objects] if kind == "cpcode" else list(objects)  # CP codes are numbers in the API
    return json.dumps({"objects": values}, separators=(",", ":"), ensure_ascii=False).encode()


def split_by_size(objects: Sequence[str], limit: int, max_count: int | None = None) -> tuple[list[list[str]], list[str]]:
    """Greedy batches whose encoded body is < ``limit`` bytes (and ≤ ``max_count`` objects); plus the objects
    too long to fit in any body on their own."""
    empty = len(encoded_body([]))
    chunks: list[list[str]] = []
    too_big: list[str] = []
    current: list[str] = []
    size = empty
    for obj in objects:
        item = len(json.dumps(obj, ensure_ascii=False).encode())
        if empty + item >= limit:
            too_big.append(obj)
            continue
        if current and (size + 1 + item >= limit or (max_count is not None and len(current) >= max_count)):
            chunks.append(current)
            current, size = [], empty
        size += item + (1 if current else 0)  # the comma before every object but the first
        current.append(obj)
    if current:
        chunks.append(current)
    return chunks, too_big


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class AkamaiLayer(HttpCacheLayer):
    kind = "akamai"
    capabilities = frozenset({Capability.PURGE_URL, Capability.PURGE_TAG, Capability.VERIFY})
    verifies_against_origin = True  # with a verify_endpoint; instances without one set False

    # (api endpoint, url or tag) -> (purgeId, estimatedSeconds, accepted at monotonic time): execute and verify
    # run on different layer instances in one process.
    _accepted: ClassVar[OrderedDict[tuple[str, str], tuple[str, float, float]]] = OrderedDict()
    _ACCEPTED_MAX = 50_000

    class Options(HttpCacheLayer.Options):
        action: Literal["invalidate", "delete"] = "invalidate"
        network: Literal["production", "staging"] = "production"
        verify_endpoint: str | None = Field(default=None, description="fetch pages through the edge here to verify")
        verify_wait_seconds: float = Field(default=10.0, ge=0, le=120)
        max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1_000, le=MAX_BODY_BYTES)
        cp_codes: list[int] = Field(default_factory=list, description="the site's CP codes: purge everything by them")

        @field_validator("verify_endpoint")
        @classmethod
        def _verify_endpoint(cls, value: str | None) -> str | None:
            return validate_verify_endpoint(value, example="https://www.shop.example.edgesuite.net")

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        creds = config.credentials
        self.auth = EdgeGridHttpxAuth(*(creds[name].get_secret_value() if name in creds else "" for name in CREDENTIALS))
        self._secrets = [creds[n].get_secret_value() for n in CREDENTIALS if n in creds and creds[n].get_secret_value()]
        self.verifies_against_origin = self.options.verify_endpoint is not None
        if self.options.cp_codes:  # purging a whole site is only possible by its CP codes
            self.capabilities = frozenset(type(self).capabilities | {Capability.PURGE_ALL})  # type: ignore[misc]
        self._edge_client: httpx.AsyncClient | None = None

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        super().check_config(index, config)
        parts = urlsplit(config.endpoint or "")
        if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
            raise ValueError(
                f"layers[{index}].endpoint: the Fast Purge API is https://<host>.luna.akamaiapis.net "
                "(plain http only for a loopback test server)"
            )
        if parts.path not in ("", "/"):
            raise ValueError(f"layers[{index}].endpoint: just the API host, e.g. https://akab-xxxx.luna.akamaiapis.net")
        for name in CREDENTIALS:
            if name not in config.credentials or not config.credentials[name].get_secret_value():
                raise ValueError(
                    f"layers[{index}].credentials.{name}: required for an akamai layer (from the API client's .edgerc)"
                )

    # --- plumbing ---------------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def purge_path(self, kind: Literal["url", "tag", "cpcode"]) -> str:
        return f"/ccu/v3/{self.options.action}/{kind}/{self.options.network}"

    def items_per_request(self, operation: str) -> int:
        # bodies are cut by size (< 50,000 bytes); ~100 bytes an object is a fair count for chunking work
        return self.max_count or 400

    @property
    def max_count(self) -> int | None:
        return self.config.max_batch if "max_batch" in self.config.model_fields_set else None

    async def _post(self, path: str, body: bytes) -> tuple[httpx.Response, int]:
        async def attempt() -> httpx.Response:
            response = await self.client.post(
                self.target(path), content=body, auth=self.auth,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            if response.status_code == 429 and not response.headers.get("Retry-After"):
                raise RetryableStatus(429, rate_limit_wait(response.headers), "HTTP 429 (rate limited)")
            return response

        extra = {"limiter": self.limiter} if getattr(self, "limiter", None) is not None else {}
        return await with_retries(attempt, retries=self.config.retries, limiter=self.limiter, **extra)

    def _refused(self, response: httpx.Response) -> str:
        what = problem_text(response)
        if response.status_code in (401, 403):
            return self.scrub(
                f"Akamai refused our credentials (HTTP {response.status_code}{': ' + what if what else ''}); "
                "check the API client's tokens and its Fast Purge access"
            )
        return self.scrub(f"Akamai answered HTTP {response.status_code}" + (f": {what}" if what else ""))

    async def _purge(self, kind: Literal["url", "tag", "cpcode"], objects: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(objects))
        chunks, too_big = split_by_size(unique, self.options.max_body_bytes, self.max_count)
        results: dict[str, Outcome] = {
            obj: Outcome("failed", f"too long for one Fast Purge request (body must stay under "
                                   f"{self.options.max_body_bytes:,} bytes)", 0)
            for obj in too_big
        }

        async def send(chunk: list[str]) -> None:
            body = encoded_body(chunk, kind)
            try:
                response, made = await self._post(self.purge_path(kind), body)
            except LayerUnavailable as exc:
                outcome = self.unreachable(exc)
                results.update({obj: Outcome(outcome.status, outcome.detail, outcome.attempts) for obj in chunk})
                return
            except Exception as exc:  # noqa: BLE001 - a purge reports, never raises
                results.update({obj: Outcome("failed", f"akamai purge failed unexpectedly: {type(exc).__name__}")
                                for obj in chunk})
                return
            if response.status_code != 201:
                detail = self._refused(response)
                results.update({obj: Outcome("failed", detail, made) for obj in chunk})
                return
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            purge_id = str(answer.get("purgeId") or "?")
            estimated = float(answer.get("estimatedSeconds") or 5)
            detail = (f"Akamai accepted {self.options.action} of {len(chunk)} {kind}"
                      f"{'' if len(chunk) == 1 else 's'} on {self.options.network} "
                      f"(purgeId {purge_id}, estimated {estimated:g} s)")
            now = time.monotonic()
            for obj in chunk:
                self._remember(obj, purge_id, estimated, now)
                results[obj] = Outcome("purged", detail, made)

        await map_bounded(chunks, self.slots, send)
        return {obj: results[obj] for obj in unique}

    def _remember(self, target: str, purge_id: str, estimated: float, when: float) -> None:
        key = (self.endpoint, target)
        self._accepted[key] = (purge_id, estimated, when)
        self._accepted.move_to_end(key)
        while len(self._accepted) > self._ACCEPTED_MAX:
            self._accepted.popitem(last=False)

    # --- purging ------------------------------------------------------------------------------------------

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        """Pages by their normalised URL; a URL with ``*`` or an unsafe path is refused, never sent."""
        unique = list(dict.fromkeys(urls))
        results = {url: refused(reason) for url in unique if (reason := purge_refusal(url))}
        sent = {url: wire_url(url) for url in unique if url not in results}
        outcomes = await self._purge("url", list(dict.fromkeys(sent.values())))
        results.update({url: outcomes[wire] for url, wire in sent.items()})
        return {url: results[url] for url in unique}

    async def purge_tags(self, tags: Sequence[str]) -> dict[str, Outcome]:
        return await self._purge("tag", tags)

    async def purge_all(self, hosts: Sequence[str]) -> Outcome:
        """Everything on the site, by its CP codes (Fast Purge has no per-host purge)."""
        if not self.options.cp_codes:
            return Outcome("skipped", "no cp_codes configured: Akamai can only purge everything by CP code", 0)
        outcomes = await self._purge("cpcode", [str(code) for code in self.options.cp_codes])
        failed = [o for o in outcomes.values() if o.status == "failed"]
        attempts = max(o.attempts for o in outcomes.values())
        return failed[0] if failed else Outcome("purged", next(iter(outcomes.values())).detail, attempts)

    # --- observe / verify ---------------------------------------------------------------------------------

    @property
    def edge_client(self) -> httpx.AsyncClient:
        """Like ``client``: made on first use, closed by ``aclose``."""
        if self._edge_client is None or self._edge_client.is_closed:
            self._edge_client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_seconds), follow_redirects=False, trust_env=False,
                headers={"Pragma": EDGE_DEBUG_PRAGMA},  # asks the edge for X-Cache: TCP_HIT / TCP_MISS
            )
        return self._edge_client

    async def aclose(self) -> None:
        client, self._edge_client = self._edge_client, None
        if client is not None and not client.is_closed:
            await client.aclose()
        await super().aclose()

    async def observe(self, url: str) -> Observation:
        if self.options.verify_endpoint is None:
            return Observation(reachable=False, error="no verify_endpoint configured to look through the Akamai edge")
        return await observe_http(self.edge_client, self.options.verify_endpoint, url,
                                  cache_status_header=self.options.cache_status_header)

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        try:
            accepted = self._accepted.get((self.endpoint, wire_url(url)))
        except UnsafePath as exc:
            return Verification(None, f"never purged: {exc}")
        said = (f"Akamai accepted purge {accepted[0]}, estimated {accepted[1]:g} s" if accepted
                else "Akamai does not report when a purge has reached every edge server")
        if self.options.verify_endpoint is None:
            return Verification(None, f"{said}; no verify_endpoint to confirm")
        loop = asyncio.get_running_loop()
        # Keep looking while the edge may still be propagating the purge (bounded).
        settle = 0.0
        if accepted:
            settle = min(self.options.verify_wait_seconds, max(0.0, accepted[1] - (time.monotonic() - accepted[2])))
        deadline = loop.time() + settle
        while True:
            result = judge(self.name, await self.observe(url), origin)
            if result.verified is not False or loop.time() >= deadline:
                if result.verified is False and accepted:
                    result.evidence += f" ({said})"
                return result
            await asyncio.sleep(0.5)


def rate_limit_wait(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``X-RateLimit-Reset``-style headers: an epoch time, seconds, or an HTTP date."""
    for name in ("X-RateLimit-Reset", "X-Ratelimit-Next"):
        value = headers.get(name)
        if not value:
            continue
        try:
            number = float(value)
        except ValueError:
            return parse_retry_after(value)
        return max(0.0, number - time.time()) if number > 1e9 else max(0.0, number)
    return None


def problem_text(response: httpx.Response) -> str:
    """Akamai's problem-JSON ``title: detail``, short; never the request (which carries the signature)."""
    try:
        problem = response.json()
    except ValueError:
        return ""
    if not isinstance(problem, dict):
        return ""
    parts = [str(problem[k]) for k in ("title", "detail") if problem.get(k)]
    return ": ".join(dict.fromkeys(parts))[:300]
