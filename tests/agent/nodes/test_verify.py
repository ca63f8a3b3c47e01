"""Verification catches an outer cache that refilled from a not-yet-purged inner one, and repairs it once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from agent.storage.audit import AuditStore
from agent.config import parse_config
from agent.layers import build_layer
from agent.layers.base import Verification
from agent.layers.nginx import NginxLayer
from agent.layers.varnish import VarnishLayer
from agent.models import Intent, ItemStatus, Operation, PlanItem, PurgeOutcome, PurgeStatus, RunResult
from agent.nodes import common
from agent.nodes.common import judge
from agent.nodes.verify import items_to_repair, route_after_verify
from agent.service.agent import Agent
from agent.state import AgentContext
from tests.agent.conftest import through_edge, warm


class SlowVarnish(VarnishLayer):
    """Real Varnish whose purges arrive late, as they do when its API is busy."""

    async def purge_tags(self, tags):
        await asyncio.sleep(0.5)
        return await super().purge_tags(tags)

    async def purge_urls(self, urls):
        await asyncio.sleep(0.5)
        return await super().purge_urls(urls)


class EdgeWithVisitors(NginxLayer):
    """Real nginx, and a visitor who asks for each page right after the edge purge (before Varnish's)."""

    async def purge_urls(self, urls):
        outcomes = await super().purge_urls(urls)
        for url in urls:
            await self.observe(url)  # a MISS at the edge refills it from Varnish, which is still stale
        return outcomes


def racing_layers(config):
    if config.kind == "varnish":
        return SlowVarnish(config)
    if config.kind == "nginx":
        return EdgeWithVisitors(config)
    return build_layer(config)


def test_page_refilled_stale_by_a_visitor_is_purged_again_and_verified(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    config = parse_config(fresh_stack.config_dict())
    context = AgentContext(config=config, layer_factory=racing_layers)
    with Agent(config, context=context, checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        result = agent.ask("old price on https://shop.example/pricing", user="bob")
        outcomes = agent.graph.get_state({"configurable": {"thread_id": result.thread_id}}).values["purge_outcomes"]

    edge = next(r for r in result.results if r.url.endswith("/pricing") and r.layer == "edge")
    assert edge.status == ItemStatus.PURGED_VERIFIED
    assert edge.attempts >= 2  # the first pass and the repair pass
    assert any(o.repaired and o.layer == "edge" for o in outcomes)
    assert "$12" in through_edge(fresh_stack, "/pricing").text


PRICING = "https://shop.example/pricing"


def edge_item() -> PlanItem:
    return PlanItem(url=PRICING, site="shop", layer="edge", operation=Operation.PURGE_URL, target=PRICING,
                    reason="you asked for this page", requested=True)


def found_stale_in_audit(result, item: PlanItem, tmp_path) -> int:
    """How many results the audit statistics count as stale after purge, with ``result`` recorded."""
    store = AuditStore.open(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    at = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    request_id = store.request_received(thread_id="t", user="bob", interface="cli", channel=None,
                                        text=f"purge {PRICING}", dry_run=False, at=at)
    store.request_updated(request_id, RunResult(thread_id="t", intent=Intent.PURGE, reply="", urls=[PRICING],
                                                plan=[item], pages=[PRICING], results=[result]), at=at)
    stale = sum(row["stale"] for row in store.stats()["per_site_layer"])
    store.close()
    return stale


def test_rewording_the_stale_message_changes_neither_the_repair_nor_the_statistics(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "STILL_STALE", "yet visitors still get the old page")
    item = edge_item()
    accepted = PurgeOutcome(layer="edge", operation=Operation.PURGE_URL, target=PRICING, status=PurgeStatus.PURGED,
                            attempts=1)
    stale = judge(item, accepted, Verification(False, "still stale: HIT, body differs from origin"))

    assert stale.detail == "purge accepted, yet visitors still get the old page"
    assert stale.status == ItemStatus.FAILED and stale.stale_after_purge
    assert items_to_repair([item], [stale]) == [item]
    assert route_after_verify({"repair": items_to_repair([item], [stale])}) == "execute"
    assert found_stale_in_audit(stale, item, tmp_path) == 1


def test_a_failed_purge_is_not_stale_after_purge_whatever_its_words_say(tmp_path):
    item = edge_item()
    refused = PurgeOutcome(layer="edge", operation=Operation.PURGE_URL, target=PRICING, status=PurgeStatus.FAILED,
                           detail="the edge answered: but it still serves stale content")
    failed = judge(item, refused, None)

    assert failed.status == ItemStatus.FAILED and not failed.stale_after_purge
    assert items_to_repair([item], [failed]) == []
    assert route_after_verify({"repair": items_to_repair([item], [failed])}) == "report"
    assert found_stale_in_audit(failed, item, tmp_path) == 0
