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


def test_what_was_dropped_survives_a_wait_for_approval(fresh_stack, tmp_path, caplog):
    data = fresh_stack.config_dict()
    data["approval"] = {**data["approval"], "threshold": 1}
    config = parse_config(data)
    with Agent(config, context=AgentContext(config=config), checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        waiting = agent.ask(f"purge <{PRICING}?fbclid=IwAR0x>", user="bob")
        assert waiting.needs_approval and [d.params for d in waiting.dropped_query] == [["fbclid"]]
        done = agent.decide(waiting.thread_id, "approve", user="alice")

    assert [(d.url, d.params) for d in done.dropped_query] == [(PRICING, ["fbclid"])]
    assert "Dropped fbclid from https://shop.example/pricing" in done.reply
    assert "Blocked deserialization" not in caplog.text
