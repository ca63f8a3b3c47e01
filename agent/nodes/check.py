"""check: is this page cached, and is it stale, on which layer? Looks only; never purges.

A check has its own deadline (``limits.deadline_seconds`` from when it starts) and keeps to the fetch limits
(``agent.layers.probe.FetchLimits``): a look that runs out of time says so instead of holding the answer.
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from agent.layers.base import CacheLayer, Observation
from agent.layers.batching import map_bounded
from agent.layers.http import judge_capped
from agent.layers.probe import FetchLimits, fetch_limits, origin_client
from agent.layerset import open_layers
from agent.mapping import site_of
from agent.models import CheckResult
from agent.nodes.common import origin_observations, within_deadline
from agent.state import AgentContext, PurgeState, context_of


async def check_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    context = context_of(runtime)
    deadline_at = time.time() + context.config.limits.deadline_seconds
    checks = await check_urls(state["urls"], context, deadline_at=deadline_at)
    return {"checks": checks}


async def check_urls(urls: list[str], context: AgentContext, *, deadline_at: float | None = None) -> list[CheckResult]:
    with fetch_limits(FetchLimits.from_config(context.config.limits, deadline_at)):
        return await check_within_limits(urls, context)


async def observe_in_time(layer: CacheLayer, url: str) -> Observation:
    try:
        return await within_deadline(layer.observe(url))
    except TimeoutError:
        return Observation(reachable=False, error="timed out: the check's deadline (limits.deadline_seconds) passed")


async def check_within_limits(urls: list[str], context: AgentContext) -> list[CheckResult]:
    pairs = [(url, name) for url in urls for name in site_of(url, context.config).layers]
    async with open_layers(context, {name for _, name in pairs}) as layers, origin_client(timeout=10) as client:
        # Application caches first: looking through the HTTP layers refills them from the origin.
        own = [(u, n) for u, n in pairs if not layers[n].verifies_against_origin]
        seen = dict(zip(own, await map_bounded(own, 16, lambda p: observe_in_time(layers[p[1]], p[0]))))
        origin = await origin_observations(client, urls, context)
        http = [(u, n) for u, n in pairs if layers[n].verifies_against_origin]
        seen |= dict(zip(http, await map_bounded(http, 16, lambda p: observe_in_time(layers[p[1]], p[0]))))
    checks = [describe(url, layers[name], seen[(url, name)], origin.get(url)) for url, name in pairs]
    return caveat_app_caches(checks, {(u, n) for (u, n) in own if seen[(u, n)].cached})


def caveat_app_caches(checks: list[CheckResult], holding: set[tuple[str, str]]) -> list[CheckResult]:
    """"Same as the origin" proves nothing while the origin itself answers from an application cache entry
    that may be stale: say so, and claim neither fresh nor stale."""
    for check in checks:
        app = next((name for (url, name) in holding if url == check.url), None)
        if app and check.fresh:
            check.fresh = None
            check.detail += f" — but the origin answers from {app}, which holds an entry that may itself be stale"
    return checks


def describe(url: str, layer: CacheLayer, seen: Observation, origin: Observation | None) -> CheckResult:
    if not seen.reachable:
        timed_out = (seen.error or "").startswith("timed out")
        said = seen.error if timed_out else f"could not reach {layer.name}: {seen.error}"
        return CheckResult(url=url, layer=layer.name, cached=None, fresh=None, detail=said)
    if not layer.verifies_against_origin:
        held = "holds" if seen.cached else "holds no"
        return CheckResult(url=url, layer=layer.name, cached=seen.cached, fresh=None,
                           detail=f"{held} cached entries for this page")
    state = seen.cache_status or f"HTTP {seen.status_code}"
    if origin is None or seen.body_hash is None:
        return CheckResult(url=url, layer=layer.name, cached=seen.cached, fresh=None,
                           detail=f"{state}; the origin's answer was not available to compare")
    if seen.body_capped or origin.body_capped:  # bigger than limits.max_body_bytes: the verify rules decide
        verdict = judge_capped(state, seen, origin)
        return CheckResult(url=url, layer=layer.name, cached=seen.cached, fresh=verdict.verified,
                           detail=verdict.evidence.replace("still stale", "STALE"))
    fresh = seen.body_hash == origin.body_hash
    verdict = "same content as the origin serves now" if fresh else "STALE: differs from the origin"
    served = None if fresh else seen.last_modified  # "they serve the version from 12:03"
    return CheckResult(url=url, layer=layer.name, cached=seen.cached, fresh=fresh, detail=f"{state}, {verdict}",
                       served_version=served)
