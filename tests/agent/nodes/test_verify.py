"""Verification catches an outer cache that refilled from a not-yet-purged inner one, and repairs it once."""

from __future__ import annotations

import asyncio

from agent.config import parse_config
from agent.layers import build_layer
from agent.layers.nginx import NginxLayer
from agent.layers.varnish import VarnishLayer
from agent.models import ItemStatus
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
    assert any(o.get("repaired") and o["layer"] == "edge" for o in outcomes)
    assert "$12" in through_edge(fresh_stack, "/pricing").text
