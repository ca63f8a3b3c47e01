"""What several nodes share: the request's deadline and progress channel, the layers' order from the origin,
looking at the origin within the deadline, and turning a layer's purge answer plus what verification saw into a
per-page verdict (execute, verify and check use these; the service uses ``unverified_results`` for a run that
stopped). No node imports another node: what two of them need lives here."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from langgraph.config import get_config, get_stream_writer

from agent.layers.base import Observation, Verification
from agent.layers.batching import map_bounded
from agent.layers.probe import current_fetch_limits, observe_http, seconds_left
from agent.mapping import site_of
from agent.models import ItemResult, ItemStatus, Operation, PlanItem, PurgeOutcome, PurgeStatus, item_status
from agent.state import AgentContext, PurgeState



Progress = Callable[[dict[str, Any]], None]


def request_deadline(state: PurgeState, context: AgentContext) -> float:
    """When this request must be done (``time.time()``): set by the first execute pass; a state from before
    that existed gets a full deadline from now."""
    return state.get("deadline_at") or time.time() + context.config.limits.deadline_seconds


def thread_id() -> str:
    try:
        return str(get_config()["configurable"].get("thread_id", ""))
    except RuntimeError:  # outside a graph run
        return ""


def stream_writer() -> Progress:
    try:
        return get_stream_writer()
    except RuntimeError:  # called outside a graph run (tests of the function itself)
        return lambda event: None


def layer_tiers(items: list[PlanItem], context: AgentContext) -> list[list[str]]:
    """Layer names grouped by their distance from the origin (position in the site's ``layers`` list)."""
    depth: dict[str, int] = {}
    for item in items:
        site = context.config.site_named(item.site)
        depth[item.layer] = min(depth.get(item.layer, 99), site.layers.index(item.layer))
    tiers: dict[int, list[str]] = defaultdict(list)
    for name, level in depth.items():
        tiers[level].append(name)
    return [sorted(tiers[level]) for level in sorted(tiers)]


T = TypeVar("T")


STILL_STALE = "but it still serves stale content"  # words for people: what counts is ItemResult.stale_after_purge


async def origin_observations(
    client: httpx.AsyncClient, urls: list[str], context: AgentContext, *, any_status: bool = False
) -> dict[str, Observation]:
    """The origin's current answer per page: what "fresh" means for the HTTP caches in front of it. Only 200
    answers, unless ``any_status``: then every answer, a 404, a redirect, a 502 or no answer at all, because
    verification compares whatever the origin says now (a deleted page is fresh when the caches say 404 too)."""
    wanted = [u for u in dict.fromkeys(urls) if site_of(u, context.config).origin]
    found = await map_bounded(
        wanted, 16, lambda url: observe_http(client, site_of(url, context.config).origin, url)
    )
    return {url: obs for url, obs in zip(wanted, found) if any_status or (obs.reachable and obs.status_code == 200)}


async def within_deadline(work: Awaitable[T]) -> T:
    """``work``, cut off (``TimeoutError``) when the request's deadline passes: layers whose looks do not go
    through ``observe_http`` (key stores, CDN APIs) are bounded too."""
    left = seconds_left(current_fetch_limits())
    if left is None:
        return await work
    async with asyncio.timeout(max(0.0, left)):
        return await work


def accepted(outcome: PurgeOutcome | None) -> bool:
    """The layer took the purge (or said it held nothing): there is something to verify."""
    return outcome is not None and outcome.status in (PurgeStatus.PURGED, PurgeStatus.NOT_CACHED)


def judge(item: PlanItem, outcome: PurgeOutcome | None, verification: Verification | None) -> ItemResult:
    base = dict(url=item.url, layer=item.layer, attempts=outcome.attempts if outcome else 0)
    if outcome is None:
        return ItemResult(status=ItemStatus.SKIPPED, detail="no purge was sent", **base)
    if not accepted(outcome):  # skipped or failed: the layer's own words
        return ItemResult(status=item_status(outcome.status, None), detail=outcome.detail, **base)
    fresh = verification.verified if verification else None
    status = item_status(outcome.status, fresh)
    evidence = verification.evidence if verification else "not checked"
    return ItemResult(status=status, detail=verdict_words(item, outcome, status), evidence=evidence,
                      stale_after_purge=fresh is False,
                      origin_status=verification.origin_status if verification else None,
                      origin_problem=verification.origin_problem if verification and fresh is None else None, **base)


def verdict_words(item: PlanItem, outcome: PurgeOutcome, status: ItemStatus) -> str:
    """What a report says about an accepted purge, by its verdict."""
    how = "tag " + item.target if item.operation == Operation.PURGE_TAG and item.target != item.url else ""
    if item.operation == Operation.PURGE_PREFIX and item.target != item.url:
        how = "with the wildcard " + item.target
    if status == ItemStatus.PURGED_UNVERIFIED:
        return join("purge accepted", how, "but not confirmed")
    if status == ItemStatus.FAILED:
        said = "layer said it held nothing" if outcome.status == PurgeStatus.NOT_CACHED else "purge accepted"
        return f"{said}, {STILL_STALE}"
    if status == ItemStatus.NOT_CACHED:
        return "not cached (nothing to do)"
    return join("purged", how)


def unverified_results(
    items: list[PlanItem], outcomes: list[PurgeOutcome], why: str, *, unanswered: str | None = None
) -> list[ItemResult]:
    """What was sent, without verification (before it, or because the run stopped): an accepted purge is
    "purged, NOT verified" with ``why`` as its evidence. An item no layer answered for gets a FAILED row saying
    ``unanswered``, or no row at all when ``unanswered`` is None (still in flight)."""
    answered = {(o.layer, o.target): o for o in outcomes}
    results = []
    for item in items:
        outcome = answered.get((item.layer, item.target))
        if outcome is not None:
            results.append(judge(item, outcome, Verification(None, why)))
        elif unanswered is not None:
            results.append(ItemResult(url=item.url, layer=item.layer, status=ItemStatus.FAILED, detail=unanswered))
    return results


def join(*parts: str) -> str:
    return " ".join(p for p in parts if p)
