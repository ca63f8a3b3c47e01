"""The one small interface every cache backend implements.

Like FOSHttpCache's proxy clients: a backend says what it supports (``capabilities``), purges in batches under
its own concurrency limit with retries, and can observe what it serves for a URL so we can *verify* a purge
instead of trusting an HTTP 200. The helpers backends share live beside it: ``retry`` (backoff, Retry-After),
``batching`` (batches, bounded concurrency), ``wire`` (what may be sent for a page) and ``probe`` (looking at a
page over HTTP).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict

from agent.config import LayerConfig
from agent.layers.wire import prefix_parts
from agent.models import PurgeStatus


class Capability(StrEnum):
    PURGE_URL = "purge_url"
    PURGE_TAG = "purge_tag"
    PURGE_PREFIX = "purge_prefix"  # every page under a path prefix: purge_prefixes()
    BAN = "ban"
    PURGE_ALL = "purge_all"
    VERIFY = "verify"


class LayerUnavailable(Exception):
    """The layer could not be reached or refused us; the message is safe to show a user."""


@dataclass
class Outcome:
    """What the layer said about one purge target (URL, tag or key). Backends write the status as its word
    ("purged", "failed", ...); it is held as a ``PurgeStatus``, so a misspelt word fails where it is written."""

    status: PurgeStatus
    detail: str = ""
    attempts: int = 1

    def __post_init__(self) -> None:
        self.status = PurgeStatus(self.status)


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
    # (agent.layers.probe: then body_hash covers only the first body_bytes)
    body_bytes: int | None = None
    body_capped: bool = False
    content_length: str | None = None
    location: str | None = None  # a redirect's target, as sent: verification compares it with the origin's

    @property
    def cached(self) -> bool | None:
        if not self.reachable or self.cache_status is None:
            return None
        return self.cache_status in {"HIT", "STALE", "UPDATING", "REVALIDATED"}


@dataclass
class Verification:
    verified: bool | None  # True fresh, False still stale, None could not tell
    evidence: str
    origin_status: int | None = None  # what the origin answered when this was judged (404: a deleted page)
    # the origin itself could not give an answer to compare with ("failing: 502", "unreachable (…)"): the page is
    # unverified through no fault of the purge (the CLI's exit code 3)
    origin_problem: str | None = None


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
        # Header sets each host's pages are also cached under (sites[].variants, by host), for backends whose purge
        # removes only the variant its own request names (nginx): set by the execute node, like run_id.
        self.variants: dict[str, list[dict[str, str]]] = {}
        # The concurrency cap, shared by every call on this layer instance: the execution engine overlaps its
        # batches (the next one queues here while the last answers of the one before are awaited), and the cap
        # holds across them. Backends pass it to ``map_bounded`` for the requests they send.
        self.slots = asyncio.Semaphore(max(1, config.concurrency))
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


def refused(reason: str) -> Outcome:
    """The outcome of a purge that was never sent, because sending it could purge something else."""
    return Outcome("failed", f"not sent: {reason}", attempts=0)
