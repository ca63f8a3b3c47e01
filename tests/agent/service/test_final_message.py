"""Always a final message: a layer that hangs past the request's deadline, or anything no node bounds, still ends
the request with what was and was not purged (real Redis, Varnish and nginx; SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from agent.layers import build_layer
from agent.models import ItemStatus
from tests.agent.conftest import warm

PRICING = "https://shop.example/pricing"


async def forever(*args, **kwargs):
    await asyncio.Event().wait()


def hanging(layer_name: str, method: str):
    """A layer factory: real layers, except that ``layer_name``'s ``method`` never returns."""

    def factory(config):
        layer = build_layer(config)
        if config.name == layer_name:
            setattr(layer, method, forever)
        return layer

    return factory


def hanging_once_purged(layer_name: str):
    """Real layers; ``layer_name`` never finishes closing once it has sent purges (a bug in a plug-in, say)."""

    def factory(config):
        layer = build_layer(config)
        if config.name == layer_name:
            send, close = layer.purge_urls, layer.aclose

            async def sent(targets):
                layer.aclose = forever
                return await send(targets)

            layer.purge_urls = sent
            layer.aclose = close
        return layer

    return factory


def test_a_layer_hanging_on_its_purge_is_reported_not_purged_at_the_deadline(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing", "/")
    agent = make_agent(limits={"deadline_seconds": 2})
    agent.context.layer_factory = hanging("edge", "purge_urls")

    result = agent.ask(f"purge <{PRICING}>", user="bob")

    assert result.error is None and result.results  # the report, not an error
    edge = {r.status for r in result.results if r.layer == "edge"}
    others = {r.status for r in result.results if r.layer != "edge"}
    # the other layers took their purges (verified or not, as the time left allowed): never called failed
    assert edge == {ItemStatus.FAILED} and others and ItemStatus.FAILED not in others
    assert "deadline" in " ".join(r.detail for r in result.results if r.layer == "edge")
    assert agent.runs.all() == []


def test_a_run_held_by_something_no_node_bounds_is_stopped_and_says_what_was_purged(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing", "/")
    agent = make_agent(limits={"deadline_seconds": 2})
    agent.context.layer_factory = hanging_once_purged("edge")  # purges answered, then closing the layer hangs

    result = agent.ask(f"purge <{PRICING}>", user="bob")

    assert result.error and "went past its deadline" in result.error
    first, stopped = result.reply.splitlines()[:2]
    assert first.startswith("Something went wrong on my side after the purges were sent")
    assert stopped.startswith("Stopped: DeadlinePassed: it went past its deadline") and PRICING in stopped
    assert "purged so far: " in stopped and "; not purged: " in stopped
    assert {r.status for r in result.results} == {ItemStatus.PURGED_UNVERIFIED}
    [entry] = agent.audit.history()
    assert entry.status == "error" and PRICING in entry.not_confirmed
    assert agent.runs.all() == []  # answered: nothing left for a sweeper to pick up again
