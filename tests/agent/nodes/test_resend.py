"""Looking before sending again what a killed holder may have sent (agent/nodes/resend.py), on the real stack and a
real memcached: a key store is fresh when the page's keys are gone; an HTTP cache when it serves what the origin
serves now; a cache in front of one whose purge goes out again waits for that purge."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.config import parse_config
from agent.models import Operation, PlanItem
from agent.nodes.resend import look_before_resending
from agent.state import AgentContext
from tests.agent.conftest import warm

PRICING, HOME = "https://shop.example/pricing", "https://shop.example/"


def item(layer: str, url: str, operation: Operation = Operation.PURGE_URL) -> PlanItem:
    return PlanItem(url=url, site="shop", layer=layer, operation=operation, target=url, reason="requested",
                    requested=True)


@pytest.fixture
def context(fresh_stack, memcached_daemon):
    data = fresh_stack.config_dict()
    data["layers"].append({"name": "fragments", "kind": "memcached", "endpoint": memcached_daemon.url,
                           "options": {"key_templates": ["page:{host}{path}"]}})
    data["sites"][0]["layers"].insert(0, "fragments")
    return AgentContext(config=parse_config(data))


@pytest.fixture
def fragments(memcached_client):
    return memcached_client


def look(maybe, sending, context):
    return asyncio.run(look_before_resending(maybe, sending, context, deadline_at=time.time() + 30))


def test_a_key_store_is_done_when_the_keys_are_gone_and_sent_again_when_they_are_there(context, fragments):
    fragments.set("page:shop.example/", b"the old home page")  # never deleted: the kill came first
    looked = look([item("fragments", PRICING, Operation.DELETE_KEYS), item("fragments", HOME, Operation.DELETE_KEYS)],
                  [], context)
    assert [(o.layer, o.target, o.status.value) for o in looked.done] == [("fragments", PRICING, "purged")]
    assert "keys gone" in looked.done[0].detail and "not sent again" in looked.done[0].detail
    assert looked.done[0].seen_fresh == "keys gone"
    assert [(i.layer, i.url) for i in looked.resend] == [("fragments", HOME)] and looked.later == []


def test_an_http_cache_is_done_when_it_serves_what_the_origin_serves_and_sent_again_when_stale(
        context, fresh_stack, fragments):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "New prices")
    fresh_stack.content.edit("/", "New home")
    fresh_stack.flush_app_cache()
    fresh_stack.ban_everything()  # Varnish took its purges before the kill; nginx did not
    looked = look([item("varnish", PRICING), item("varnish", HOME), item("edge", PRICING)], [], context)
    assert sorted(o.target for o in looked.done) == [HOME, PRICING]
    assert all(o.layer == "varnish" and "matches origin" in o.detail for o in looked.done)
    assert [(i.layer, i.url) for i in looked.resend] == [("edge", PRICING)]


def test_a_cache_in_front_of_one_being_purged_again_waits_for_that_purge(context, fresh_stack, fragments):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "New prices")
    # the edge was purged before the kill; the app cache behind it was not, and goes out again in this pass:
    # looked at now, the edge would refill from the stale copy and need a purge of its own
    fresh_stack.nginx.restart()
    looked = look([item("edge", PRICING)], [item("appcache", PRICING, Operation.DELETE_KEYS)], context)
    assert looked.done == [] and looked.resend == []
    assert [(i.layer, i.url) for i in looked.later] == [("edge", PRICING)]
