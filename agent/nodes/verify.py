"""verify: ask every layer what it serves now, and turn purge answers into honest per-page results.

A purge is "done" only when the layer shows fresh content (or its keys are gone). Layers that keep their own
storage (application caches) are checked before anything fetches the page again, because fetching through the
origin refills them; HTTP caches are then compared with the origin's fresh answer.

Everything here keeps to what is left of the request's deadline (``deadline_at``, set by execute) and to the
fetch limits (``agent.layers.probe.FetchLimits``): a page that cannot be looked at in time is reported "unverified: timed
out", never waited for past the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import httpx
from langgraph.runtime import Runtime

from agent.layers.base import CacheLayer, Capability, Observation, Verification
from agent.layers.batching import map_bounded
from agent.layers.probe import FetchLimits, current_fetch_limits, fetch_limits, observe_http, seconds_left
from agent.layerset import open_layers
from agent.mapping import site_of
from agent.models import ItemResult, ItemStatus, Operation, PlanItem
from agent.nodes.execute import layer_tiers, request_deadline, stream_writer
from agent.state import AgentContext, PurgeState, context_of


T = TypeVar("T")
STILL_STALE = "but it still serves stale content"


async def verify_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    repairing = bool(state.get("repair"))
    items = [PlanItem.model_validate(item) for item in (state.get("repair") or state["plan"]["items"])]
    outcomes = {(o["layer"], o["target"]): o for o in state.get("purge_outcomes", [])}
    context = context_of(runtime)
    deadline_at = request_deadline(state, context)
    found = await verify_items(items, outcomes, context, deadline_at=deadline_at)
    results = [r.model_dump(mode="json") for r in found]
    if repairing:
        redone = {(r["url"], r["layer"]): r for r in results}
        results = [redone.get((r["url"], r["layer"]), r) for r in state.get("results", [])]
        return {"results": results, "repair": []}
    return {"results": results, "repair": stale_after_purge(items, results)}


def stale_after_purge(items: list[PlanItem], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plan items a layer accepted but still serves stale: an outer cache refilled from an inner one in the
    moment between their purges. These get one more purge; a second failure is reported as it is."""
    stale = {(r["url"], r["layer"]) for r in results if r["status"] == ItemStatus.FAILED and STILL_STALE in r["detail"]}
    return [item.model_dump(mode="json") for item in items if (item.url, item.layer) in stale]


def route_after_verify(state: PurgeState) -> Literal["execute", "report"]:
    return "execute" if state.get("repair") else "report"


async def verify_items(
    items: list[PlanItem], outcomes: dict[tuple[str, str], dict[str, Any]], context: AgentContext, *,
    deadline_at: float | None = None,
) -> list[ItemResult]:
    with fetch_limits(FetchLimits.from_config(context.config.limits, deadline_at)):
        return await verify_within_limits(items, outcomes, context)


async def verify_within_limits(
    items: list[PlanItem], outcomes: dict[tuple[str, str], dict[str, Any]], context: AgentContext
) -> list[ItemResult]:
    progress = stream_writer()
    to_verify = [i for i in items if outcomes.get((i.layer, i.target), {}).get("status") in ("purged", "not_cached")]
    verifications: dict[tuple[str, str], Verification] = {}
    async with open_layers(context, {i.layer for i in items}) as layers, httpx.AsyncClient(timeout=10) as client:
        own_storage = [i for i in to_verify if not layers[i.layer].verifies_against_origin]
        verifications |= await verify_group(own_storage, layers, {}, context)
        pages = [i.url for i in to_verify if not (i.operation == Operation.PURGE_PREFIX and i.url == i.target)]
        origin = await origin_observations(client, pages, context)
        for tier in layer_tiers(items, context):
            group = [i for i in to_verify if i.layer in tier and layers[i.layer].verifies_against_origin]
            verifications |= await verify_group(group, layers, origin, context)
            progress({"type": "progress", "phase": "verify", "done": len(verifications), "total": len(to_verify)})
    return [judge(item, outcomes.get((item.layer, item.target)), verifications.get((item.url, item.layer)))
            for item in items]


async def verify_group(
    items: list[PlanItem], layers: dict[str, CacheLayer], origin: dict[str, Observation], context: AgentContext
) -> dict[tuple[str, str], Verification]:
    async def one(item: PlanItem) -> Verification:
        layer = layers[item.layer]
        if not layer.supports(Capability.VERIFY):
            return Verification(None, f"{layer.kind} cannot be checked after a purge")
        try:
            if item.operation == Operation.PURGE_PREFIX and item.url == item.target:  # a scope, not one page
                return await within_deadline(layer.verify_prefix(item.target))
            verification = await within_deadline(layer.verify(item.url, origin.get(item.url)))
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


async def origin_observations(
    client: httpx.AsyncClient, urls: list[str], context: AgentContext
) -> dict[str, Observation]:
    """The origin's current answer per page: what "fresh" means for the HTTP caches in front of it."""
    wanted = [u for u in dict.fromkeys(urls) if site_of(u, context.config).origin]
    found = await map_bounded(
        wanted, 16, lambda url: observe_http(client, site_of(url, context.config).origin, url)
    )
    return {url: obs for url, obs in zip(wanted, found) if obs.reachable and obs.status_code == 200}


async def within_deadline(work: Awaitable[T]) -> T:
    """``work``, cut off (``TimeoutError``) when the request's deadline passes: layers whose looks do not go
    through ``observe_http`` (key stores, CDN APIs) are bounded too."""
    left = seconds_left(current_fetch_limits())
    if left is None:
        return await work
    async with asyncio.timeout(max(0.0, left)):
        return await work


def judge(item: PlanItem, outcome: dict[str, Any] | None, verification: Verification | None) -> ItemResult:
    base = dict(url=item.url, layer=item.layer, attempts=(outcome or {}).get("attempts", 0))
    if outcome is None:
        return ItemResult(status=ItemStatus.SKIPPED, detail="no purge was sent", **base)
    how = "tag " + item.target if item.operation == Operation.PURGE_TAG and item.target != item.url else ""
    if item.operation == Operation.PURGE_PREFIX and item.target != item.url:
        how = "with the wildcard " + item.target
    if outcome["status"] == "skipped":
        return ItemResult(status=ItemStatus.SKIPPED, detail=outcome["detail"], **base)
    if outcome["status"] == "failed":
        return ItemResult(status=ItemStatus.FAILED, detail=outcome["detail"], **base)
    if verification is None or verification.verified is None:
        why = verification.evidence if verification else "not checked"
        status = ItemStatus.PURGED_UNVERIFIED
        return ItemResult(status=status, detail=join("purge accepted", how, "but not confirmed"), evidence=why, **base)
    if verification.verified is False:
        detail = "layer said it held nothing" if outcome["status"] == "not_cached" else "purge accepted"
        return ItemResult(status=ItemStatus.FAILED, detail=f"{detail}, {STILL_STALE}",
                          evidence=verification.evidence, **base)
    if outcome["status"] == "not_cached":
        return ItemResult(status=ItemStatus.NOT_CACHED, detail="not cached (nothing to do)",
                          evidence=verification.evidence, **base)
    return ItemResult(status=ItemStatus.PURGED_VERIFIED, detail=join("purged", how),
                      evidence=verification.evidence, **base)


def unverified_results(
    items: list[PlanItem], outcomes: list[dict[str, Any]], why: str, *, unanswered: str | None = None
) -> list[ItemResult]:
    """What was sent, without verification (before it, or because the run stopped): an accepted purge is
    "purged, NOT verified" with ``why`` as its evidence. An item no layer answered for gets a FAILED row saying
    ``unanswered``, or no row at all when ``unanswered`` is None (still in flight)."""
    answered = {(o["layer"], o["target"]): o for o in outcomes}
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
