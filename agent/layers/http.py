"""What every HTTP cache (Varnish, nginx, ...) shares: one client per layer, observing and verifying a page.

Requests go to the layer's ``endpoint`` with the page's host in the ``Host`` header; we never connect to the
URL's own host (that would go through DNS to whatever is in front of the site, not to this layer).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.config import LayerConfig
from agent.layers.base import CacheLayer, LayerUnavailable, Observation, Outcome, Verification, refused
from agent.layers.probe import normalise_cache_status, observe_http, size_words
from agent.layers.retry import with_retries
from agent.layers.wire import check_request_path, plain
from agent.urls import UnsafePath

if TYPE_CHECKING:  # httpx and aiohttp are imported when a layer first sends (agent/cli/test_startup.py)
    import httpx

    from agent.layers.transport import AiohttpTransport


def refuse_userinfo(key: str, address: str) -> None:
    """A ``user:password@`` in an HTTP layer's address is refused: the client would send it as well as any
    credentials of ours (every request then fails), and it would show wherever the address is logged."""
    if "@" in urlsplit(address).netloc:
        raise ValueError(
            f"{key}: must not contain a user name or password (user:password@); put them in the layer's "
            "credentials (username and password, or a header that uses {credentials.NAME})"
        )


def strong_etag(value: str | None) -> str | None:
    if not value or value.startswith("W/"):
        return None
    return value


class HttpCacheLayer(CacheLayer):
    """Base for caches spoken to over HTTP. Subclasses add purging; observe/verify live here."""

    class Options(CacheLayer.Options):
        cache_status_header: str = "X-Cache"

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        #: how long ``verify`` keeps looking while the layer may still serve the old copy (soft purge); 0 = once
        self.verify_settle_seconds = 0.0
        self.endpoint = (config.endpoint or "").rstrip("/")
        self._client: httpx.AsyncClient | None = None
        self._wire: AiohttpTransport | None = None  # the client's transport: ``exchange`` sends purges on it

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        super().check_config(index, config)
        parts = urlsplit(config.endpoint or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"layers[{index}].endpoint: a {cls.kind} layer needs an http:// or https:// address "
                f"such as http://127.0.0.1:6081"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"layers[{index}].endpoint: must not have a query string or fragment")
        refuse_userinfo(f"layers[{index}].endpoint", config.endpoint or "")

    # --- plumbing ---------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` of the endpoint, without any credentials: safe for messages."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{host}:{port}"

    @property
    def client(self) -> httpx.AsyncClient:
        """One client per layer, made on first use and closed by ``aclose``. A layer lives on one event loop: a
        step of a run opens and closes it there (``agent.layerset.open_layers``)."""
        if self._client is None or self._client.is_closed:
            # aiohttp (the heaviest import of a layer) loads with the first client, not with the Options a
            # config is checked against (`cachebot history` checks the config and never sends a request)
            import httpx

            from agent.layers.transport import AiohttpTransport

            auth = None
            creds = self.config.credentials
            if "username" in creds and "password" in creds:
                auth = httpx.BasicAuth(creds["username"].get_secret_value(), creds["password"].get_secret_value())
            concurrency = self.config.concurrency
            self._wire = AiohttpTransport(connections=concurrency, timeout=self.config.timeout_seconds)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_seconds),
                transport=self._wire,
                follow_redirects=False,
                auth=auth,
                trust_env=False,  # never route purges to a layer through an environment proxy
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            await client.aclose()

    def target(self, path: str, prefix: str = "/") -> str:
        """The endpoint plus ``path``, which must stay under ``prefix`` (``check_request_path``), so nothing can
        resolve out of it; the aiohttp transport looks at every request once more. Raises ``UnsafePath``."""
        path = path if path.startswith("/") else "/" + path
        check_request_path(path, prefix)
        return self.endpoint + path

    async def send(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, *, prefix: str = "/"
    ) -> tuple[httpx.Response, int]:
        """One request to the layer with retries (429/5xx/transport errors). Raises ``LayerUnavailable``, or
        ``UnsafePath`` (before sending anything) when ``path`` is not safely under ``prefix``."""
        url = self.target(path, prefix)

        async def attempt() -> httpx.Response:
            return await self.exchange(method, url, headers or {})

        return await with_retries(attempt, retries=self.config.retries, limiter=self.limiter)

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None = None
    ) -> httpx.Response:
        """One purge request, its answer read whole: what ``self.client.request`` sends (the client's default
        headers, the layer's basic auth), straight onto the aiohttp pool (``AiohttpTransport.exchange``: a
        third of the CPU per purge). Anything else (a URL to encode, another auth flow) goes through httpx."""
        import httpx  # loaded by now (self.client): a dictionary lookup

        client = self.client
        auth = client.auth  # a subclass may have taken it off (webhook)
        basic = self._basic_auth if isinstance(auth, httpx.BasicAuth) else None
        if self._wire is None or not plain(url) or (auth is not None and basic is None):
            return await client.request(method, url, content=content, headers=dict(headers))
        merged = {name.lower(): value for name, value in client.headers.items()}
        if basic is not None:
            merged["authorization"] = basic
        merged.update((name.lower(), value) for name, value in headers.items())
        return await self._wire.exchange(method, url, merged, content)

    @property
    def _basic_auth(self) -> str | None:
        """The Authorization header httpx.BasicAuth sends for the layer's username and password, if any."""
        creds = self.config.credentials
        if "username" not in creds or "password" not in creds:
            return None
        pair = f"{creds['username'].get_secret_value()}:{creds['password'].get_secret_value()}"
        return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")

    def unreachable(self, exc: LayerUnavailable) -> Outcome:
        """A failed Outcome for a layer that never gave a usable answer."""
        message = str(exc)
        if message.startswith("HTTP "):
            detail = f"{self.kind} at {self.address} kept answering {message}"
        else:
            detail = f"could not reach {self.kind} at {self.address}: {message}"
        return Outcome("failed", detail, attempts=self.config.retries + 1)

    async def guarded(self, key: str, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
        """Run one purge; whatever goes wrong becomes a failed Outcome, never an exception."""
        try:
            return await work()
        except Exception as exc:  # noqa: BLE001 - a purge must report, not raise
            return self.failure(key, exc)

    def failure(self, key: str, exc: Exception) -> Outcome:
        if isinstance(exc, LayerUnavailable):
            return self.unreachable(exc)
        if isinstance(exc, UnsafePath):
            return refused(str(exc))
        return Outcome("failed", f"{self.kind} purge of {key} failed unexpectedly: {type(exc).__name__}: {exc}")

    def cache_status_of(self, response: httpx.Response) -> str | None:
        return normalise_cache_status(response.headers.get(self.options.cache_status_header))

    # --- observe / verify ---------------------------------------------------------------------------------

    async def observe(self, url: str) -> Observation:
        return await observe_http(self.client, self.endpoint, url, cache_status_header=self.options.cache_status_header)

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        deadline = asyncio.get_running_loop().time() + self.verify_settle_seconds
        while True:
            result = judge(self.name, await self.observe(url), origin)
            if result.verified is not False or asyncio.get_running_loop().time() >= deadline:
                return result
            await asyncio.sleep(0.25)


GONE = (404, 410)


def judge(layer: str, seen: Observation, origin: Observation | None) -> Verification:
    """Compare what a layer serves with what the origin serves now, whatever the status; the evidence is one
    short human line. A deleted page (404/410 at the origin) is fresh when the layer answers the same; a
    redirect when status and Location match; a failing origin (5xx, unreachable) leaves it unverified, never
    stale: the purge did its part, there is just nothing true to compare with."""
    verdict = judge_statuses(layer, seen, origin)
    if origin is not None and origin.reachable:
        verdict.origin_status = origin.status_code
    if verdict.verified is None and seen.reachable:
        verdict.origin_problem = origin_problem(origin)
    return verdict


def origin_problem(origin: Observation | None) -> str | None:
    """What is wrong with the origin itself, in the words "the origin itself is …" ends with: "failing: 502",
    "unreachable (connection refused)"; None when it answered something to compare with (or was not asked)."""
    if origin is None:
        return None
    if not origin.reachable:
        return f"unreachable ({origin.error or 'no answer'})"
    if origin.status_code is not None and origin.status_code >= 500:
        return f"failing: {origin.status_code}"
    return None


def judge_statuses(layer: str, seen: Observation, origin: Observation | None) -> Verification:
    if not seen.reachable:
        if (seen.error or "").startswith("timed out"):
            return Verification(None, f"unverified: {layer} {seen.error}")
        return Verification(None, f"could not reach {layer}: {seen.error or 'no answer'}")
    status = seen.cache_status or "no cache status"
    if problem := origin_problem(origin):
        return Verification(None, f"unverified: the origin itself is {problem}")
    if seen.status_code is not None and seen.status_code >= 500:
        return Verification(None, f"{layer} answered HTTP {seen.status_code}, cannot compare")
    if origin is not None and origin.status_code is not None and not 200 <= origin.status_code < 300:
        return judge_other_status(layer, status, seen, origin)
    if seen.status_code is None or not 200 <= seen.status_code < 300:
        if origin is not None:  # the origin serves the page (2xx), the layer something else: an old answer
            return Verification(False, f"still stale: {status}, serves HTTP {seen.status_code}, the origin "
                                       f"HTTP {origin.status_code}")
        return Verification(None, f"{layer} answered HTTP {seen.status_code}, cannot compare")
    if origin is not None:
        return judge_bodies(status, seen, origin)
    if seen.cache_status in {"MISS", "EXPIRED", "BYPASS", "PASS", "DYNAMIC"}:
        return Verification(True, f"{status}→fetched from origin (no origin copy to compare)")
    return Verification(None, f"{status}, no origin copy to compare: cannot tell if fresh")


def judge_other_status(layer: str, status: str, seen: Observation, origin: Observation) -> Verification:
    """The origin answers neither 2xx nor 5xx: a deleted page, a redirect, a refusal. The layer must answer the
    same status (and, for a redirect, send visitors to the same place)."""
    code = origin.status_code
    if seen.status_code != code:
        what = f"deleted page (HTTP {code} at the origin)" if code in GONE else f"the origin answers HTTP {code}"
        return Verification(False, f"still stale: {status}, serves HTTP {seen.status_code}; {what}")
    if code in GONE:
        return Verification(True, f"deleted page: gone from {layer} (HTTP {code}, as at the origin)")
    if 300 <= code < 400:
        if seen.location != origin.location:
            return Verification(False, f"still stale: {status}, redirects to {seen.location or 'nowhere'}; the "
                                       f"origin to {origin.location or 'nowhere'}")
        return Verification(True, f"redirect matches origin (HTTP {code} to {origin.location or 'nowhere'})")
    return Verification(True, f"{status}, HTTP {code} as the origin answers")


def judge_bodies(status: str, seen: Observation, origin: Observation) -> Verification:
    """Both answer 2xx: the content must match (body hash, else a strong ETag, else Last-Modified)."""
    if seen.body_capped or origin.body_capped:
        return judge_capped(status, seen, origin)
    tag = strong_etag(seen.etag)
    etags_match = tag is not None and tag == strong_etag(origin.etag)
    if seen.body_hash is not None and seen.body_hash == origin.body_hash:
        reason = f"ETag {seen.etag} matches origin" if etags_match else "body matches origin"
        return Verification(True, f"{status}→fresh ({reason})")
    if etags_match:
        return Verification(True, f"{status}→fresh (ETag {seen.etag} matches origin)")
    if seen.etag and origin.etag and seen.etag != origin.etag:
        return Verification(False, f"still stale: {status}, ETag {seen.etag}≠{origin.etag}")
    if seen.last_modified and origin.last_modified and seen.last_modified != origin.last_modified:
        return Verification(False, f"still stale: {status}, Last-Modified {seen.last_modified}≠{origin.last_modified}")
    return Verification(False, f"still stale: {status}, body differs from origin")


def judge_capped(status: str, seen: Observation, origin: Observation) -> Verification:
    """A body over the byte cap (``limits.max_body_bytes``) was hashed only up to the cap: compare what is
    known — the first bytes, ETag, Last-Modified, Content-Length — and say that the rest was not compared."""
    cap = size_words(max(seen.body_bytes or 0, origin.body_bytes or 0))
    caveat = f"only the first {cap} compared (limits.max_body_bytes)"
    if seen.body_capped != origin.body_capped:
        return Verification(False, f"still stale: {status}, body size differs from origin ({caveat})")
    if seen.body_hash != origin.body_hash:
        return Verification(False, f"still stale: {status}, the first {cap} differ from origin")
    # A weak ETag says nothing here: a cache that transformed the body (Varnish gunzipping a gzip object for a
    # client that asked for identity) weakens the tag of the representation it started from ("…-gzip").
    headers = (("ETag", strong_etag(seen.etag), strong_etag(origin.etag)),
               ("Last-Modified", seen.last_modified, origin.last_modified),
               ("Content-Length", seen.content_length, origin.content_length))
    for header, mine, theirs in headers:
        if mine and theirs and mine != theirs:
            return Verification(False, f"still stale: {status}, {header} {mine}≠{theirs} ({caveat})")
    agreeing = [header for header, mine, theirs in headers if mine and mine == theirs]
    if not agreeing:
        return Verification(None, f"{status}, the first {cap} match origin but no ETag, Last-Modified or "
                                  f"Content-Length to compare the rest: cannot tell if fresh ({caveat})")
    return Verification(True, f"{status}→fresh (the first {cap} and {', '.join(agreeing)} match origin; {caveat})")
