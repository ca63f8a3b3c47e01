"""check: is this page cached, and is it stale, on which layer? Looks only; never purges.

A check has its own deadline (``limits.deadline_seconds`` from when it starts) and keeps to the fetch limits
(``agent.layers.probe.FetchLimits``): a look that runs out of time says so instead of holding the answer.
"""

from __future__ import annotations

import time

from langgraph.runtime import Runtime

from agent.layers.base import CacheLayer, Observation, Verification
from agent.layers.batching import map_bounded
from agent.layers.http import judge
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
        origin = await origin_observations(client, urls, context, any_status=True)
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
    if origin is None:
        return CheckResult(url=url, layer=layer.name, cached=seen.cached, fresh=None,
                           detail=f"{state}; the origin's answer was not available to compare")
    # The same rules as verification, whatever the origin answers now: a deleted page is fresh where the layer
    # says 404/410 too, a redirect where status and Location match, and a failing origin leaves it unknown.
    verdict = judge(layer.name, seen, origin)
    served = seen.last_modified if verdict.verified is False and both_pages(seen, origin) else None
    return CheckResult(url=url, layer=layer.name, cached=seen.cached, fresh=verdict.verified,
                       detail=check_detail(state, seen, origin, verdict), served_version=served,
                       origin_status=origin.status_code if origin.reachable else None,
                       origin_problem=verdict.origin_problem)


def both_pages(seen: Observation, origin: Observation) -> bool:
    return all(o.status_code is not None and 200 <= o.status_code < 300 for o in (seen, origin))


def check_detail(state: str, seen: Observation, origin: Observation, verdict: Verification) -> str:
    """What one layer serves, as a check says it (nothing was purged: no "→fresh", no "still")."""
    if verdict.origin_problem:
        return f"{state}; can't tell: the origin itself is {verdict.origin_problem}"
    if both_pages(seen, origin) and not (seen.body_capped or origin.body_capped) and verdict.verified is not None:
        same = "same content as the origin serves now" if verdict.verified else "STALE: differs from the origin"
        return f"{state}, {same}"
    return verdict.evidence.replace("still stale", "STALE").replace("unverified: ", "")
