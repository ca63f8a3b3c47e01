"""plan: pages × layers, with the dependent pages added and why, and whether a second person must approve."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from langgraph.runtime import Runtime

from agent.config import AppConfig
from agent.layers.batching import map_bounded
from agent.layers.probe import observe_http, origin_client
from agent.layerset import open_layers
from agent.mapping import (
    count_purges,
    expand_pages,
    plan_items,
    purge_all_items,
    sample_pages,
    scope_items,
    site_of,
    split_scopes,
)
from agent.models import ApprovalRecord, Intent, Plan
from agent.policy import approval_reason
from agent.state import AgentContext, PurgeState, context_of


async def plan_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    context = context_of(runtime)
    plan = await build_plan(state, context)
    now = context.now()
    plan.created_at = now
    plan.needs_approval = bool(plan.approval_reason) and not state.get("dry_run")
    if plan.needs_approval:
        plan.expires_at = now + timedelta(minutes=context.config.approval.expiry_minutes)
    approval = ApprovalRecord(status="pending" if plan.needs_approval else "not_needed")
    return {"plan": plan, "approval": approval}


async def build_plan(state: PurgeState, context: AgentContext) -> Plan:
    config = context.config
    async with open_layers(context) as layers:
        if state["intent"] == Intent.PURGE_ALL:
            items = [item for name in state["target_sites"] for item in purge_all_items(config.site_named(name), layers)]
            pages = sorted({item.url for item in items})
        else:
            page_urls, prefixes = split_scopes(state["urls"])
            pages_map = expand_pages(page_urls, config)
            tags = await discover_tags(list(pages_map) + sample_pages(pages_map, layers, config), config)
            scopes = scope_items(prefixes, layers, config)
            items = plan_items(pages_map, tags, layers, config) + scopes
            pages = list(dict.fromkeys([*pages_map, *(item.url for item in scopes)]))
        purge_count = count_purges(items)
    return Plan(
        items=items,
        pages=pages,
        purge_count=purge_count,
        approval_reason=approval_reason(state["intent"], purge_count, config, items),
        notes=list(dict.fromkeys(item.note for item in items if item.note)),
    )


async def discover_tags(urls: list[str], config: AppConfig) -> dict[str, tuple[str, ...]]:
    """Tags each page advertises at its origin (HEAD), for sites that have an origin and tag discovery on."""
    wanted = [url for url in urls if (site := site_of(url, config)).origin and site.discover_tags]
    if not wanted:
        return {}
    async with origin_client(timeout=5.0) as client:

        async def tags_of(url: str) -> tuple[str, ...]:
            observation = await observe_http(client, site_of(url, config).origin, url, method="HEAD")
            return observation.tags if observation.reachable and observation.status_code == 200 else ()

        found = await map_bounded(wanted, 16, tags_of)
    return dict(zip(wanted, found))


def route_after_plan(state: PurgeState) -> Literal["approval", "execute", "report"]:
    if state.get("dry_run"):
        return "report"
    return "approval" if state["plan"].needs_approval else "execute"
