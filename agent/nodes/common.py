"""What several nodes share: the request's deadline and progress channel, the layers' order from the origin,
looking at the origin and at a layer (``verify_group``) within the deadline, and turning a layer's purge answer
plus what verification saw into a per-page verdict (execute, verify and check use these; the service uses
``unverified_results`` for a run that stopped). No node imports another node: what two of them need lives here."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from langgraph.config import get_config, get_stream_writer

from agent.config import SiteConfig
from agent.layers.base import CacheLayer, Capability, Observation, Verification
from agent.layers.batching import map_bounded
from agent.layers.probe import current_fetch_limits, looking_as, observe_http, seconds_left, variant_name
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


def pages_of(items: list[PlanItem]) -> list[str]:
    """The pages to fetch from the origin for ``items``: a prefix purged as a scope is no page of its own."""
    return [i.url for i in items if not (i.operation == Operation.PURGE_PREFIX and i.url == i.target)]


async def verify_group(
    items: list[PlanItem], layers: dict[str, CacheLayer], origin: dict[str, Observation], context: AgentContext,
    client: httpx.AsyncClient | None = None,
) -> dict[tuple[str, str], Verification]:
    async def one(item: PlanItem) -> Verification:
        layer = layers[item.layer]
        if not layer.supports(Capability.VERIFY):
            return Verification(None, f"{layer.kind} cannot be checked after a purge")
        try:
            if item.operation == Operation.PURGE_PREFIX and item.url == item.target:  # a scope, not one page
                return await within_deadline(layer.verify_prefix(item.target))
            verification = await within_deadline(layer.verify(item.url, origin.get(item.url)))
            site = context.config.site_named(item.site)
            if client is not None and site is not None and site.variants and layer.verifies_against_origin:
                verification = await within_deadline(verify_variants(layer, item.url, verification, site, client))
            if item.operation == Operation.PURGE_ALL:  # the home page stands in for the whole site
                verification.evidence = f"home page {verification.evidence}"
            return verification
        except TimeoutError:
            return Verification(None, f"unverified: timed out ({item.layer} had no answer before the request's "
                                      f"{context.config.limits.deadline_seconds:g} s deadline)")
        except Exception as exc:  # never let one broken check turn into a reported success elsewhere
            return Verification(None, f"check failed: {type(exc).__name__}")

    concurrency = max((layers[i.layer].config.concurrency for i in items), default=1)
    found = await map_bounded(items, concurrency, one)
    return {(item.url, item.layer): verification for item, verification in zip(items, found)}


async def verify_variants(
    layer: CacheLayer, url: str, plain: Verification, site: SiteConfig, client: httpx.AsyncClient
) -> Verification:
    """The page as each configured variant asks for it (``sites[].variants``), at the origin and at the layer:
    a variant left stale makes the page stale, named, so it is purged once more and reported by its name."""
    stale, unsure, problems = [], [], []
    for variant in site.variants:
        with looking_as(variant):
            origin = await observe_http(client, site.origin, url) if site.origin else None
            verdict = await layer.verify(url, origin)
        if verdict.verified is False:
            stale.append(f"variant {variant_name(variant)} {verdict.evidence}")
        elif verdict.verified is None:
            unsure.append(f"variant {variant_name(variant)}: {verdict.evidence}")
            problems.append(verdict.origin_problem)
    names = "; ".join(variant_name(v) for v in site.variants)
    # only when the origin is what left every unsure variant unverified is the page "unverified: origin failing"
    problem = problems[0] if problems and all(problems) else None
    if stale:
        also = [plain.evidence] if plain.verified is False else []
        return Verification(False, "; ".join(also + stale), origin_status=plain.origin_status)
    if plain.verified is True and unsure:
        return Verification(None, f"{plain.evidence}; but {'; '.join(unsure)}", origin_status=plain.origin_status,
                            origin_problem=problem)
    if plain.verified is True:
        return Verification(True, f"{plain.evidence} (variants {names} too)", origin_status=plain.origin_status)
    return plain
