"""The one small interface every cache backend implements.

Like FOSHttpCache's proxy clients: a backend says what it supports (``capabilities``), purges in batches under
its own concurrency limit with retries, and can observe what it serves for a URL so we can *verify* a purge
instead of trusting an HTTP 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import ClassVar, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict

from agent.config import LayerConfig
from agent.urls import UnsafePath, normalise, wire_path

T = TypeVar("T")
R = TypeVar("R")


class Capability(StrEnum):
    PURGE_URL = "purge_url"
    PURGE_TAG = "purge_tag"
    PURGE_PREFIX = "purge_prefix"  # every page under a path prefix: purge_prefixes()
    BAN = "ban"
    PURGE_ALL = "purge_all"
    VERIFY = "verify"


class LayerUnavailable(Exception):
    """The layer could not be reached or refused us; the message is safe to show a user."""


class RetryableStatus(Exception):
    """A 429/5xx answer that is worth another attempt, carrying the server's Retry-After if any."""

    def __init__(self, status_code: int, retry_after: float | None, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.retry_after = retry_after


@dataclass
class Outcome:
    """What the layer said about one purge target (URL, tag or key)."""

    status: Literal["purged", "not_cached", "failed", "skipped"]
    detail: str = ""
    attempts: int = 1


@dataclass
class Observation:
    """One look at what a layer (or the origin) serves for a URL."""

    reachable: bool
    status_code: int | None = None
    cache_status: str | None = None  # normalised: HIT, MISS, EXPIRED, STALE, BYPASS, ... or None if unknown
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    tags: tuple[str, ...] = ()
    error: str | None = None
    # a fetched body: how many bytes were read and hashed, and whether reading stopped at the byte cap
    # (agent.fetch: then body_hash covers only the first body_bytes)
    body_bytes: int | None = None
    body_capped: bool = False
    content_length: str | None = None

    @property
    def cached(self) -> bool | None:
        if not self.reachable or self.cache_status is None:
            return None
        return self.cache_status in {"HIT", "STALE", "UPDATING", "REVALIDATED"}


@dataclass
class Verification:
    verified: bool | None  # True fresh, False still stale, None could not tell
    evidence: str


class CacheLayer(ABC):
    """A cache backend. Subclasses set ``kind`` and ``capabilities`` and implement what they declare."""

    kind: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    # HTTP caches are verified by comparing what they serve with the origin; application caches that hold
    # their own keys are verified by looking at the keys, before anything refetches (and refills) them.
    verifies_against_origin: ClassVar[bool] = True

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: LayerConfig):
        self.config = config
        self.name = config.name
        self.options = self.Options.model_validate(config.options)
        # Identifies the run (thread and pass) for backends with idempotency keys; set by the execute node so
        # a resumed or retried run re-sends the same key instead of purging twice.
        self.run_id: str | None = None
        # One token bucket per layer instance: every API request a backend sends takes a token first.
        self.limiter = (
            AsyncLimiter(config.rate_limit_requests, config.rate_limit_period_seconds)
            if config.rate_limit_requests
            else None
        )

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        """Raise ``ValueError`` naming ``layers[index].<key>`` when the layer cannot work with ``config``."""
        if config.endpoint is None:
            raise ValueError(f"layers[{index}].endpoint: required for a {cls.kind} layer")

    def collapsed_prefixes(self, urls: Sequence[str]) -> dict[str, tuple[str, str]]:
        """URLs this layer would rather clear with one wildcard: url -> (prefix ``https://host/dir/*``, why).

        The planner turns these into prefix purges, shown and approved as such; a layer never widens a URL
        purge on its own when it sends it."""
        return {}

    def items_per_request(self, operation: str) -> int:
        """How many targets one API request carries for ``operation`` ("purge_url", "purge_tag", ...).

        The execution engine hands a layer whole multiples of this, so batches are never split short.
        """
        return self.config.max_batch

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def operation_for(self, tags: Sequence[str]) -> Capability:
        """The cheapest correct operation for a page: its tags if we can purge by tag, else its URL."""
        if tags and self.supports(Capability.PURGE_TAG):
            return Capability.PURGE_TAG
        return Capability.PURGE_URL

    @abstractmethod
    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]: ...

    async def purge_tags(self, tags: Sequence[str]) -> dict[str, Outcome]:
        raise NotImplementedError(f"{self.kind} cannot purge by tag")

    async def purge_all(self, hosts: Sequence[str]) -> Outcome:
        raise NotImplementedError(f"{self.kind} cannot purge everything")

    async def purge_prefixes(self, prefixes: Sequence[str]) -> dict[str, Outcome]:
        """Every page under each prefix, given as ``https://host/path*`` (see ``prefix_parts``)."""
        raise NotImplementedError(f"{self.kind} cannot purge by prefix")

    def prefix_problem(self, prefix: str) -> str | None:
        """Why this layer cannot purge ``prefix`` (said in the plan, and the layer is skipped), or None."""
        if not self.supports(Capability.PURGE_PREFIX):
            return f"{self.kind} cannot purge by prefix"
        try:
            prefix_parts(prefix)
        except ValueError as exc:
            return str(exc)
        return None

    async def verify_prefix(self, prefix: str) -> Verification:
        """After a prefix purge: is everything under it gone? Most layers cannot list the pages to look."""
        return Verification(None, f"{self.kind} cannot list the pages under a prefix to check them")

    @abstractmethod
    async def observe(self, url: str) -> Observation:
        """What this layer serves (or holds) for ``url`` right now. Never raises for an unreachable layer."""

    @abstractmethod
    async def verify(self, url: str, origin: Observation | None) -> Verification:
        """After a purge: does this layer now serve (or hold) fresh content for ``url``?"""

    async def aclose(self) -> None:
        return None


# --- helpers shared by backends -------------------------------------------------------------------------


def body_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def host_and_path(url: str) -> tuple[str, str]:
    """``https://Shop.example/a/../b?c=1`` -> (``shop.example``, ``/b?c=1``): what a cache keys a page on, as it
    goes on the wire — normalised once by ``agent.urls`` (no dot segments, percent-encoded ASCII), so neither
    the HTTP client nor the server can resolve it to another page. Raises ``UnsafePath`` saying why not."""
    return wire_path(url)


def wire_url(url: str) -> str:
    """The absolute URL a purge API is given for ``url`` (normalised, ASCII). Raises ``UnsafePath``."""
    wire_path(url)  # the same refusals as every other layer
    return normalise(url).removesuffix("?")


WILDCARD_REFUSAL = (
    "a URL with * names everything under a path (a prefix scope), not one page: it is never sent as a URL purge, "
    "where a cache could read it as a wildcard"
)


def purge_refusal(url: str) -> str | None:
    """Why a layer must not send a URL purge for ``url`` (a ``*`` scope, or a path that is not safe), or None.

    Screening already refuses these; layers check again so that nothing built later (a dependent page, a
    retry, a caller outside the graph) can purge more than one page through ``purge_urls``.
    """
    if "*" in url:
        return WILDCARD_REFUSAL
    try:
        wire_path(url)
    except UnsafePath as exc:
        return str(exc)
    return None


def refused(reason: str) -> Outcome:
    """The outcome of a purge that was never sent, because sending it could purge something else."""
    return Outcome("failed", f"not sent: {reason}", attempts=0)


def check_request_path(path: str, prefix: str = "/") -> None:
    """The last look before a request goes out: ``path`` (with any query) must start with ``prefix`` and hold no
    ``.``/``..`` segment, even once percent-decoded (``%2e%2e``, ``..%2F``), that a client or server could
    resolve out of the prefix. Raises ``UnsafePath``; never fires for a URL that passed screening."""
    only_path = path.split("?", 1)[0]
    if not only_path.startswith(prefix):
        raise UnsafePath(f"the request path {only_path[:80]!r} is not under {prefix!r}")
    decoded = unquote(only_path).replace("\\", "/")
    if any(segment in (".", "..") for segment in decoded.split("/")):
        raise UnsafePath(
            f"the request path {only_path[:80]!r} has a '.' or '..' segment that would resolve outside {prefix!r}"
        )


def prefix_parts(prefix: str) -> tuple[str, str]:
    """``https://Shop.example/products/*`` -> (``shop.example``, ``/products/``): the host and the path prefix.

    Raises ``ValueError`` (a message safe to show) unless the prefix is an absolute http(s) URL whose path ends
    in its only ``*``, with no query or fragment: nothing else says unambiguously what it covers. The path is the
    normalised one (``agent.urls.normalise``), so a prefix matches the keys the caches hold for the pages under it."""
    parts = urlsplit(prefix)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{prefix!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment or "?" in prefix or "#" in prefix:
        raise ValueError(f"{prefix!r}: a prefix purge takes no query string or fragment")
    if not parts.path.endswith("*") or prefix.count("*") != 1:
        raise ValueError(f"{prefix!r}: a prefix must end in its only '*' (like https://{parts.hostname}/products/*)")
    try:
        parts = urlsplit(normalise(prefix))
    except ValueError as exc:
        raise ValueError(f"{prefix!r}: {exc}") from None
    return parts.hostname.lower(), parts.path[:-1] or "/"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import datetime, timezone

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def raise_for_retryable(response: httpx.Response) -> None:
    """Turn 429 and 5xx into ``RetryableStatus`` so ``with_retries`` tries again (honouring Retry-After)."""
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableStatus(
            response.status_code,
            parse_retry_after(response.headers.get("Retry-After")),
            f"HTTP {response.status_code}",
        )


async def with_retries(
    attempt: Callable[[], Awaitable[httpx.Response]],
    *,
    retries: int,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
    max_retry_after: float = 60.0,
    limiter: AsyncLimiter | None = None,
) -> tuple[httpx.Response, int]:
    """Run ``attempt`` until it returns a non-retryable response; returns (response, attempts made).

    Retries on connection errors, timeouts, 429 and 5xx, with exponential backoff and full jitter, waiting
    at least the server's ``Retry-After`` — unless it asks for more than ``max_retry_after`` seconds, when we
    stop and say so rather than hold the whole run. Each attempt first takes a token from ``limiter``.
    Raises ``LayerUnavailable`` when every attempt failed.
    """
    last_error = ""
    for number in range(1, retries + 2):
        try:
            if limiter is not None:
                await limiter.acquire()
            response = await attempt()
            raise_for_retryable(response)
            return response, number
        except RetryableStatus as exc:
            last_error = str(exc)
            delay = exc.retry_after
            if delay is not None and delay > max_retry_after:
                raise LayerUnavailable(f"{exc} asking us to wait {delay:.0f} s (more than {max_retry_after:.0f} s)")
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            last_error = describe_transport_error(exc)
            delay = None
        if number > retries:
            break
        backoff = backoff_delay(number, base_delay, max_delay)
        await asyncio.sleep(max(backoff, delay or 0.0))
    raise LayerUnavailable(f"{last_error} after {retries + 1} attempts")


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter after the ``attempt``-th failure (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def describe_transport_error(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__


async def map_bounded(items: Sequence[T], concurrency: int, fn: Callable[[T], Awaitable[R]]) -> list[R]:
    """``fn`` over ``items`` with at most ``concurrency`` in flight; results in input order."""
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def run(item: T) -> R:
        async with semaphore:
            return await fn(item)

    return list(await asyncio.gather(*(run(item) for item in items)))


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]
