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

from langgraph.runtime import Runtime

from agent.layers.base import CacheLayer, Observation, Verification
from agent.layers.probe import FetchLimits, fetch_limits, origin_client
from agent.layerset import open_layers
from agent.models import ItemResult, PlanItem, PurgeOutcome
from agent.nodes.common import (
    accepted, judge, layer_tiers, origin_observations, pages_of, request_deadline, stream_writer, thread_id,
    verify_group, within_deadline,
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
        verifications |= seen_fresh_before(own_storage, outcomes)
        own_storage = [i for i in own_storage if (i.url, i.layer) not in verifications]
        verifications |= await verify_group(own_storage, layers, {}, context)
        origin = await origin_observations(client, pages_of(to_verify), context, any_status=True)
        if thread_id() in context.taken_over:
            verifications |= await written_again_since_the_purge(own_storage, verifications, outcomes, layers, origin)
        for tier in layer_tiers(items, context):
            group = [i for i in to_verify if i.layer in tier and layers[i.layer].verifies_against_origin]
            verifications |= await verify_group(group, layers, origin, context, client)
            progress({"type": "progress", "phase": "verify", "done": len(verifications), "total": len(to_verify)})
    return [judge(item, outcomes.get((item.layer, item.target)), verifications.get((item.url, item.layer)))
            for item in items]


def seen_fresh_before(
    items: list[PlanItem], outcomes: dict[tuple[str, str], PurgeOutcome]
) -> dict[tuple[str, str], Verification]:
    """Key-store items a run picked up after a kill found fresh and did not send again (``agent/nodes/resend.py``):
    their keys were seen gone then, and may have been refilled since by the looks at the HTTP caches in front
    (the origin writes them again, fresh). Looking again would call those new keys stale and purge them twice."""
    found = {}
    for item in items:
        outcome = outcomes.get((item.layer, item.target))
        if outcome is not None and outcome.seen_fresh:
            found[(item.url, item.layer)] = Verification(True, f"{outcome.seen_fresh} when looked at after the restart")
    return found


async def written_again_since_the_purge(
    items: list[PlanItem], verifications: dict[tuple[str, str], Verification],
    outcomes: dict[tuple[str, str], PurgeOutcome], layers: dict[str, CacheLayer], origin: dict[str, Observation],
) -> dict[tuple[str, str], Verification]:
    """A run picked up after a kill verifies again what its previous holder may have verified already, and that
    look fetched the pages from the origin, which writes its key store again. A key there now, on a layer whose
    answer is recorded (the keys were deleted, or there were none), was written since the purge: it is fresh
    when it holds what the origin serves now. Without this, it is called stale and purged a second time."""
    found = {}
    for item in items:
        verdict = verifications.get((item.url, item.layer))
        fresh = origin.get(item.url)
        if verdict is None or verdict.verified is not False or not accepted(outcomes.get((item.layer, item.target))):
            continue
        if fresh is None or not fresh.reachable or fresh.body_hash is None:
            continue
        try:
            held = await within_deadline(layers[item.layer].observe(item.url))
        except TimeoutError:
            continue
        if held.reachable and held.body_hash == fresh.body_hash:
            found[(item.url, item.layer)] = Verification(
                True, "written again since the purge recorded before the restart: it holds what the origin serves",
                origin_status=fresh.status_code)
    return found
