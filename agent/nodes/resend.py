"""Batches a run's previous holder may have sent: look at them before sending them again.

A process killed while sending purges leaves batches a layer may have taken, whose answers the audit trail had not
recorded yet: the journal of purges in flight (``agent.storage.in_flight``) names them, the Agent hands them to the
run's new holder (``AgentContext.maybe_sent``), and execute asks here before it sends them. Sending them again
blindly purges a page twice for one decision.

"Fresh" is what verification means by it (``verify_group``, the layers' own ``verify``):

- an application cache (Redis, memcached) is fresh when the page's keys are gone. A key that is there is sent
  again: the origin answers from that very key, so comparing it with the origin cannot tell a key written since
  the purge from one never deleted (the layers' "re-filled since the purge" needs to have seen the keys go);
- an HTTP cache is fresh when it serves what the origin serves now (body, ETag, status, redirect; every configured
  variant). Looking fetches the page through the cache, and a cache that was purged refills from the layer
  behind it. So layers are looked at from the origin outwards, and a layer whose page goes out again on a layer
  behind it (still stale there, or never sent) is looked at only after that purge was answered (``later``):
  looked at sooner, it would refill from the stale inner copy and need a purge of its own.

A target is done only when every page it covers is fresh; anything stale, or that could not be looked at in
time (a layer that cannot verify, a timeout, an origin failing), is sent again: at least once, never zero times.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from agent.layers.base import CacheLayer, Verification
from agent.layers.probe import FetchLimits, fetch_limits, origin_client
from agent.layerset import open_layers
from agent.models import PlanItem, PurgeOutcome, PurgeStatus
from agent.nodes.common import origin_observations, pages_of, verify_group
from agent.state import AgentContext

NOT_SENT_AGAIN = "sent before cachebot restarted (its answer was not recorded); verified fresh, so not sent again"


@dataclass
class Looked:
    """What looking decided for the batches that may have gone out."""

    done: list[PurgeOutcome] = field(default_factory=list)  # fresh: recorded as done, not sent again
    resend: list[PlanItem] = field(default_factory=list)  # still stale, or could not be told: sent again now
    later: list[PlanItem] = field(default_factory=list)  # a layer behind goes first: looked at after its purge


async def look_before_resending(
    maybe: list[PlanItem], sending: list[PlanItem], context: AgentContext, *, deadline_at: float
) -> Looked:
    """Decide for each target of ``maybe`` (plan items that may have been sent) whether it goes out again;
    ``sending``: the items this pass sends anyway (never sent before), which a layer in front must wait for."""
    looked = Looked()
    if not maybe:
        return looked
    depth = depths(maybe + sending, context)
    # per page, the innermost layer (position from the origin) whose purge goes out in this pass
    going: dict[str, int] = {}
    for item in sending:
        if not item.skip:
            going[item.url] = min(going.get(item.url, len(depth)), depth[item.layer])
    by_target: dict[tuple[str, str], list[PlanItem]] = defaultdict(list)
    for item in maybe:
        by_target[(item.layer, item.target)].append(item)
    with fetch_limits(FetchLimits.from_config(context.config.limits, deadline_at)):
        async with open_layers(context, {i.layer for i in maybe}) as layers, origin_client(timeout=10) as client:
            for level in sorted({depth[layer] for layer, _ in by_target}):
                targets = {key: items for key, items in by_target.items() if depth[key[0]] == level}
                ready = {}
                for key, items in targets.items():
                    if any(going.get(i.url, level) < level for i in items):
                        looked.later += items
                    else:
                        ready[key] = items
                seen = await look(ready, layers, context, client)
                for (layer, target), items in ready.items():
                    evidence = fresh_evidence(items, seen)
                    if evidence is not None:
                        looked.done.append(fresh_outcome(items[0], evidence))
                    else:
                        looked.resend += items
                        for item in items:
                            going[item.url] = min(going.get(item.url, level), level)
    return looked


async def look(
    targets: dict[tuple[str, str], list[PlanItem]], layers: dict[str, CacheLayer], context: AgentContext, client
) -> dict[tuple[str, str], Verification]:
    """Verification's look at these items: key stores by their keys (before the origin is fetched, which refills
    them), HTTP caches against the origin's answer now."""
    items = [i for group in targets.values() for i in group]
    own = [i for i in items if not layers[i.layer].verifies_against_origin]
    http = [i for i in items if layers[i.layer].verifies_against_origin]
    seen = await verify_group(own, layers, {}, context)
    if http:
        origin = await origin_observations(client, pages_of(http), context, any_status=True)
        seen |= await verify_group(http, layers, origin, context, client)
    return seen


async def keys_seen_gone(
    outcomes: list[PurgeOutcome], sent: list[PlanItem], pages: set[str], context: AgentContext, *, deadline_at: float
) -> list[PurgeOutcome]:
    """Before the layers in front of ``pages`` are looked at (which fetches them from the origin, and the origin
    writes its key store again): look at the key stores just purged for those pages, as verify would, and keep
    what was seen on the answer (``seen_fresh``). Verify trusts that instead of calling the new keys stale."""
    answered = {(o.layer, o.target): o for o in outcomes}
    by_target: dict[tuple[str, str], list[PlanItem]] = defaultdict(list)
    for item in sent:
        key = (item.layer, item.target)
        if item.url in pages and key in answered and answered[key].status in (PurgeStatus.PURGED,
                                                                             PurgeStatus.NOT_CACHED):
            by_target[key].append(item)
    if not by_target:
        return outcomes
    with fetch_limits(FetchLimits.from_config(context.config.limits, deadline_at)):
        async with open_layers(context, {layer for layer, _ in by_target}) as layers:
            own = {key: items for key, items in by_target.items() if not layers[key[0]].verifies_against_origin}
            seen = await verify_group([i for items in own.values() for i in items], layers, {}, context)
    for key, items in own.items():
        evidence = fresh_evidence(items, seen)
        if evidence is not None:
            answered[key] = answered[key].model_copy(update={"seen_fresh": evidence})
    return [answered.get((o.layer, o.target), o) for o in outcomes]


def depths(items: list[PlanItem], context: AgentContext) -> dict[str, int]:
    """Each layer's distance from the origin (its position in its site's ``layers``; the nearest across sites)."""
    depth: dict[str, int] = {}
    for item in items:
        site = context.config.site_named(item.site)
        level = site.layers.index(item.layer) if site is not None and item.layer in site.layers else 0
        depth[item.layer] = min(depth.get(item.layer, level), level)
    return depth


def fresh_evidence(items: list[PlanItem], seen: dict[tuple[str, str], Verification]) -> str | None:
    """What the look saw when every page of one target was seen fresh (each distinct evidence once), else None."""
    verdicts = [seen.get((i.url, i.layer)) for i in items]
    if not all(v is not None and v.verified for v in verdicts):
        return None
    return "; ".join(dict.fromkeys(v.evidence for v in verdicts if v is not None))


def fresh_outcome(item: PlanItem, evidence: str) -> PurgeOutcome:
    """Done, with what the look saw: verify trusts it for a key store, whose keys the looks at the HTTP caches
    behind it may have refilled from the origin since (fresh ones: they were seen gone first)."""
    outcome = PurgeOutcome.answer(item.layer, item.operation, item.target, PurgeStatus.PURGED,
                                  f"{NOT_SENT_AGAIN} ({evidence})", attempts=1)
    return outcome.model_copy(update={"seen_fresh": evidence})
