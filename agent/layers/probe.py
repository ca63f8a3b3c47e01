"""Probing a page over HTTP: what a server answers for it, the origin (to learn tags and the fresh content) or a
cache.

We always connect to a *configured* endpoint and send the page's host in the ``Host`` header; the URL's own
host is never resolved or contacted, so a URL can never make cachebot fetch something outside its sites.

Every look is bounded (``FetchLimits``): the body is streamed and hashed as it arrives, never held whole, and
reading stops at ``max_body_bytes`` (the observation then says it was capped); the whole fetch, connect to last
byte, has one time limit that never reaches past the request's deadline. The verify and check nodes set the
limits for everything they run (``fetch_limits``); a per-read timeout alone would let an origin that drips a byte
at a time hold a run forever.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from agent.layers.base import Observation
from agent.layers.retry import describe_transport_error
from agent.layers.wire import host_and_path
from agent.urls import UnsafePath

# httpx (91 modules) is imported by the functions that send, not here: `cachebot history` checks every layer's
# options, which imports the layers, and never sends anything (issue #13: start-up).
if TYPE_CHECKING:
    import httpx

# Cache status words we recognise, in the spelling we report (Observation.cache_status).
KNOWN_STATUSES = ("HIT", "MISS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED", "BYPASS", "PASS", "DYNAMIC")
_STATUS_WORD = re.compile(r"(?<![A-Z])(" + "|".join(KNOWN_STATUSES) + r")(?![A-Z])")
TAG_HEADERS = ("xkey", "Surrogate-Key", "Cache-Tag", "X-Magento-Tags")
_TAG_SPLIT = re.compile(r"[\s,]+")


def origin_client(timeout: float) -> httpx.AsyncClient:
    """A client for looking at origins (tag discovery, verification, checks): httpx's defaults, with the TLS
    trust store loaded once per process (``tls_context``) instead of once per client."""
    import httpx

    return httpx.AsyncClient(timeout=timeout, verify=tls_context())


@cache
def tls_context() -> ssl.SSLContext:
    """The certificates an origin's TLS is checked against, as httpx chooses them by default (certifi, or
    $SSL_CERT_FILE / $SSL_CERT_DIR). Loading them takes 20–40 ms, several times that on a busy machine, and every
    ``httpx.AsyncClient()`` does it again: the plan and verify steps each opened one, which was most of the time
    a one-URL request took (bench/one_url.py). An SSLContext is safe to share between clients and threads."""
    import httpx

    return httpx.create_ssl_context()


def body_hash(content: bytes) -> str:
    """A page's body in short: what observations compare (``Observation.body_hash``)."""
    return hashlib.sha256(content).hexdigest()[:16]


def normalise_cache_status(value: str | None) -> str | None:
    """``"HIT"``, ``"hit"``, ``"TCP_HIT"``, ``"MISS, HIT"`` (Fastly shielding: the last node is the one that
    answered us) -> one of ``KNOWN_STATUSES``; an unrecognised value is kept upper-cased; absent -> None."""
    if value is None or not value.strip():
        return None
    last = value.split(",")[-1].strip().upper()
    if last in KNOWN_STATUSES:
        return last
    match = _STATUS_WORD.search(last.replace("_", " "))
    return match.group(1) if match else last


def parse_tags(headers: httpx.Headers) -> tuple[str, ...]:
    """Tags from ``xkey`` / ``Surrogate-Key`` (space separated) and ``Cache-Tag`` (comma separated)."""
    seen: dict[str, None] = {}
    for name in TAG_HEADERS:
        for value in headers.get_list(name):
            for tag in _TAG_SPLIT.split(value.strip()):
                if tag:
                    seen.setdefault(tag, None)
    return tuple(seen)


# --- limits -------------------------------------------------------------------------------------------------

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # agent.config.LimitsConfig's defaults
DEFAULT_FETCH_SECONDS = 30.0


@dataclass(frozen=True)
class FetchLimits:
    """How much one look may read and how long it may take. ``deadline`` is a ``time.time()`` by which the whole
    request must be done (None: no request deadline, only ``seconds`` per fetch)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    seconds: float = DEFAULT_FETCH_SECONDS
    deadline: float | None = None

    @classmethod
    def from_config(cls, limits, deadline: float | None) -> FetchLimits:
        """From ``agent.config.LimitsConfig`` and the request's deadline."""
        return cls(max_body_bytes=limits.max_body_bytes, seconds=limits.fetch_timeout_seconds, deadline=deadline)

    def budget(self) -> tuple[float, str]:
        """(seconds this fetch may take from now, what sets that bound: said when it runs out)."""
        if self.deadline is not None and self.deadline - time.time() < self.seconds:
            return self.deadline - time.time(), "the request's deadline (limits.deadline_seconds)"
        return self.seconds, "limits.fetch_timeout_seconds"


_limits: ContextVar[FetchLimits] = ContextVar("cachebot_fetch_limits", default=FetchLimits())


@contextmanager
def fetch_limits(limits: FetchLimits) -> Iterator[FetchLimits]:
    """Every ``observe_http`` in this context (and in the tasks it starts) keeps to ``limits``."""
    token = _limits.set(limits)
    try:
        yield limits
    finally:
        _limits.reset(token)


def current_fetch_limits() -> FetchLimits:
    return _limits.get()


# A page's variant being looked at (sites[].variants: e.g. {"Accept-Encoding": "gzip"}): its headers go with
# every look in this context, at the origin and at the layer alike, so they compare the same variant.
_variant: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("cachebot_variant", default=())


@contextmanager
def looking_as(variant: dict[str, str]) -> Iterator[None]:
    """Every ``observe_http`` in this context sends ``variant``'s headers (they cannot replace ``Host``)."""
    token = _variant.set(tuple((k, v) for k, v in variant.items() if k.lower() != "host"))
    try:
        yield
    finally:
        _variant.reset(token)


def variant_name(variant: dict[str, str]) -> str:
    """``{"Accept-Encoding": "gzip"}`` -> ``Accept-Encoding: gzip``: how a report names a variant."""
    return ", ".join(f"{name}: {value}" for name, value in variant.items())


def seconds_left(limits: FetchLimits | None = None) -> float | None:
    """Time left before the request's deadline (None: no deadline set)."""
    deadline = (limits or current_fetch_limits()).deadline
    return None if deadline is None else deadline - time.time()


def size_words(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


# --- one look -----------------------------------------------------------------------------------------------


async def observe_http(
    client: httpx.AsyncClient,
    base_url: str,
    url: str,
    *,
    cache_status_header: str | None = None,
    method: str = "GET",
) -> Observation:
    """``method`` ``url``'s path at ``base_url`` with the page's Host header, within the current
    ``FetchLimits``. Never raises for network errors, time running out, or a request that cannot be built."""
    import httpx

    try:
        host, path = host_and_path(url)
    except UnsafePath as exc:
        return Observation(reachable=False, error=f"not fetched: {exc}")
    limits = current_fetch_limits()
    seconds, bound = limits.budget()
    if seconds <= 0:
        return Observation(reachable=False, error=f"timed out: {bound} had passed before this look")
    try:
        async with asyncio.timeout(seconds):
            variant = dict(_variant.get())
            headers = {"Accept-Encoding": "identity", **variant, "Host": host}
            async with client.stream(method, base_url.rstrip("/") + path, headers=headers) as response:
                return await read_observation(response, cache_status_header, limits.max_body_bytes,
                                              decoded="Accept-Encoding" in variant)
    except TimeoutError:
        return Observation(reachable=False, error=f"timed out: no complete answer within {seconds:.3g} s ({bound})")
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        return Observation(reachable=False, error=describe_transport_error(exc))
    except httpx.HTTPError as exc:
        return Observation(reachable=False, error=type(exc).__name__)
    except UnsafePath as exc:
        return Observation(reachable=False, error=f"not fetched: {exc}")
    except (httpx.InvalidURL, httpx.StreamError, ValueError) as exc:
        # e.g. "URL too long", a header that cannot be encoded: this page cannot be looked at, the run goes on
        return Observation(reachable=False, error=f"could not send the request: {str(exc)[:200] or type(exc).__name__}")


async def read_observation(
    response: httpx.Response, cache_status_header: str | None, max_body_bytes: int, *, decoded: bool = False
) -> Observation:
    """Headers, and the body hashed as it streams in: at most ``max_body_bytes`` are read, so memory stays
    bounded whatever the server sends. Raw, as sent, unless ``decoded`` (a variant that asked for gzip/br:
    the origin and a cache may compress the same content differently, so the content is what is compared;
    inflating stops at the same cap)."""
    hashed, read, capped = None, None, False
    if response.request.method != "HEAD":
        digest, read = hashlib.sha256(), 0
        async for chunk in (response.aiter_bytes() if decoded else response.aiter_raw()):
            room = max_body_bytes - read
            digest.update(chunk[:room])
            read += min(len(chunk), room)
            if len(chunk) > room:
                capped = True  # stop here: leaving the block closes the connection, the rest is never read
                break
        hashed = digest.hexdigest()[:16]  # what body_hash() gives for the same bytes
    return Observation(
        reachable=True,
        status_code=response.status_code,
        cache_status=normalise_cache_status(response.headers.get(cache_status_header)) if cache_status_header else None,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        body_hash=hashed,
        tags=parse_tags(response.headers),
        body_bytes=read,
        body_capped=capped,
        content_length=response.headers.get("content-length"),
        location=response.headers.get("location"),
    )
