"""resolve: a pasted marketing link purges the key the caches really use, and says what it dropped."""

from __future__ import annotations

from agent.config import parse_config
from agent.models import ItemStatus
from agent.service.agent import Agent
from agent.state import AgentContext
from tests.agent.conftest import through_edge, warm

PRICING = "https://shop.example/pricing"


def test_a_marketing_link_purges_the_page_the_caches_hold_and_says_what_was_dropped(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing?utm_source=newsletter")  # nginx and Varnish keep it as /pricing
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    assert "$10" in through_edge(fresh_stack, "/pricing").text
    config = parse_config(fresh_stack.config_dict())
    with Agent(config, context=AgentContext(config=config), checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        result = agent.ask(f"old price on <{PRICING}?utm_source=newsletter&fbclid=IwAR0x&plan=pro>", user="bob")

    assert result.urls == [PRICING + "?plan=pro"]
    assert [(d.url, d.params) for d in result.dropped_query] == [(PRICING + "?plan=pro", ["utm_source", "fbclid"])]
    assert "Dropped utm_source, fbclid from https://shop.example/pricing?plan=pro" in result.reply

    with Agent(config, context=AgentContext(config=config), checkpoint_path=str(tmp_path / "t.sqlite")) as agent:
        result = agent.ask(f"old price on <{PRICING}?utm_source=newsletter&utm_medium=email>", user="bob")
    assert result.urls == [PRICING]
    pricing = {r.layer: r.status for r in result.results if r.url == PRICING}
    assert set(pricing.values()) <= {ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED}
    assert "$12" in through_edge(fresh_stack, "/pricing?utm_source=newsletter").text
    assert "$12" in through_edge(fresh_stack, "/pricing").text
