"""verify: ask every layer what it serves now, and turn purge answers into honest per-page results.

A purge is "done" only when the layer shows fresh content (or its keys are gone). Layers that keep their own
storage (application caches) are checked before anything fetches the page again, because fetching through the
origin refills them; HTTP caches are then compared with the origin's fresh answer.

Everything here keeps to what is left of the request's deadline (``deadline_at``, set by execute) and to the
fetch limits (``agent.layers.probe.FetchLimits``): a page that cannot be looked at in time is reported "unverified: timed
out", never waited for past the deadline.
"""

from __future__ import annotations

from typing import Literal

import httpx
from langgraph.runtime import Runtime

from agent.layers.base import CacheLayer, Capability, Observation, Verification
from agent.layers.batching import map_bounded
from agent.config import SiteConfig
from agent.layers.probe import FetchLimits, fetch_limits, looking_as, observe_http, origin_client, variant_name
from agent.layerset import open_layers
from agent.models import ItemResult, Operation, PlanItem, PurgeOutcome
from agent.nodes.common import (
    accepted, judge, layer_tiers, origin_observations, request_deadline, stream_writer, within_deadline,
)
from agent.state import AgentContext, PurgeState, context_of


async def verify_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    repair = state.get("repair") or []
    items = repair or state["plan"].items
    outcomes = {(o.layer, o.target): o for o in state.get("purge_outcomes", [])}
    context = context_of(runtime)
    deadline_at = request_deadline(state, context)
    results = await verify_items(items, outcomes, context, deadline_at=deadline_at)
    if repair:
        redone = {(r.url, r.layer): r for r in results}
        return {"results": [redone.get((r.url, r.layer), r) for r in state.get("results", [])], "repair": []}
    return {"results": results, "repair": items_to_repair(items, results)}


def items_to_repair(items: list[PlanItem], results: list[ItemResult]) -> list[PlanItem]:
    """Plan items a layer accepted but still serves stale: an outer cache refilled from an inner one in the
    moment between their purges. These get one more purge; a second failure is reported as it is."""
    stale = {(r.url, r.layer) for r in results if r.stale_after_purge}
    return [item for item in items if (item.url, item.layer) in stale]


def route_after_verify(state: PurgeState) -> Literal["execute", "report"]:
    return "execute" if state.get("repair") else "report"


async def verify_items(
    items: list[PlanItem], outcomes: dict[tuple[str, str], PurgeOutcome], context: AgentContext, *,
    deadline_at: float | None = None,
) -> list[ItemResult]:
    with fetch_limits(FetchLimits.from_config(context.config.limits, deadline_at)):
        return await verify_within_limits(items, outcomes, context)


async def verify_within_limits(
    items: list[PlanItem], outcomes: dict[tuple[str, str], PurgeOutcome], context: AgentContext
) -> list[ItemResult]:
    progress = stream_writer()
    to_verify = [i for i in items if accepted(outcomes.get((i.layer, i.target)))]
    verifications: dict[tuple[str, str], Verification] = {}
    async with open_layers(context, {i.layer for i in items}) as layers, origin_client(timeout=10) as client:
        own_storage = [i for i in to_verify if not layers[i.layer].verifies_against_origin]
        verifications |= await verify_group(own_storage, layers, {}, context)
        pages = [i.url for i in to_verify if not (i.operation == Operation.PURGE_PREFIX and i.url == i.target)]
        origin = await origin_observations(client, pages, context, any_status=True)
        for tier in layer_tiers(items, context):
            group = [i for i in to_verify if i.layer in tier and layers[i.layer].verifies_against_origin]
            verifications |= await verify_group(group, layers, origin, context, client)
            progress({"type": "progress", "phase": "verify", "done": len(verifications), "total": len(to_verify)})
    return [judge(item, outcomes.get((item.layer, item.target)), verifications.get((item.url, item.layer)))
            for item in items]


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
