"""Approval inside the graph: approve, deny, unauthorised, self-approval, expiry, restart, double click."""

from __future__ import annotations

import httpx
import pytest

from agent.models import ItemStatus
from agent.service.agent import NothingPending
from tests.agent.conftest import through_edge, warm

BIG = "purge " + " ".join(f"<https://shop.example/products/{c}/{p}>" for c, p in
                          [("shoes", "runner"), ("shoes", "hiker"), ("shoes", "loafer"), ("hats", "beanie")])


def small_threshold(make_agent, **kwargs):
    return make_agent(approval={"threshold": 2, "approvers": ["alice", "carol"], "expiry_minutes": 30}, **kwargs)


def test_big_batch_waits_then_an_approver_approves(fresh_stack, make_agent):
    warm(fresh_stack, "/products/shoes/runner")
    agent = small_threshold(make_agent)
    waiting = agent.ask(BIG, user="bob")
    assert waiting.needs_approval and waiting.pending and waiting.results == []
    assert "over the approval threshold of 2" in waiting.pending["reason"]
    assert through_edge(fresh_stack, "/products/shoes/runner").headers["X-Cache-Status"] == "HIT"  # nothing yet

    done = agent.decide(waiting.thread_id, "approve", user="alice")
    assert done.approval.status == "approved" and done.approval.by == "alice"
    assert done.pending is None
    assert {r.status for r in done.results} <= {ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED}
    assert any(r.status == ItemStatus.PURGED_VERIFIED for r in done.results)


def test_deny_purges_nothing(fresh_stack, make_agent):
    warm(fresh_stack, "/products/shoes/runner")
    agent = small_threshold(make_agent)
    waiting = agent.ask(BIG, user="bob")
    denied = agent.decide(waiting.thread_id, "deny", user="carol")
    assert denied.approval.status == "denied" and denied.results == []
    assert "carol denied" in denied.reply
    assert through_edge(fresh_stack, "/products/shoes/runner").headers["X-Cache-Status"] == "HIT"


def test_unauthorised_and_self_approval_are_refused_and_stay_pending(make_agent):
    agent = small_threshold(make_agent)
    waiting = agent.ask(BIG, user="bob")

    mallory = agent.decide(waiting.thread_id, "approve", user="mallory")
    assert "not an approver" in mallory.notice and mallory.pending and mallory.results == []

    agent_alice_asks = agent.ask(BIG, user="alice")
    selfie = agent.decide(agent_alice_asks.thread_id, "approve", user="alice")
    assert "self-approval is turned off" in selfie.notice and selfie.pending

    # the refusals did not consume the request: a real approver can still approve it
    assert agent.decide(waiting.thread_id, "approve", user="carol").approval.status == "approved"


def test_expired_request_is_not_executed(make_agent, clock):
    agent = small_threshold(make_agent)
    waiting = agent.ask(BIG, user="bob")
    clock.advance(minutes=31)
    late = agent.decide(waiting.thread_id, "approve", user="alice")
    assert late.approval.status == "expired" and late.results == []
    assert "expired" in late.reply
    with pytest.raises(NothingPending, match="expired"):
        agent.decide(waiting.thread_id, "approve", user="alice")


def test_double_click_purges_once(make_agent):
    agent = small_threshold(make_agent)
    waiting = agent.ask(BIG, user="bob")
    first = agent.decide(waiting.thread_id, "approve", user="alice", interrupt_id=waiting.pending["interrupt_id"])
    assert first.approval.status == "approved"
    with pytest.raises(NothingPending, match="already approved by alice"):
        agent.decide(waiting.thread_id, "approve", user="alice", interrupt_id=waiting.pending["interrupt_id"])


def test_stale_interrupt_id_is_refused(make_agent):
    agent = small_threshold(make_agent)
    waiting = agent.ask(BIG, user="bob")
    with pytest.raises(NothingPending, match="no longer current"):
        agent.decide(waiting.thread_id, "approve", user="alice", interrupt_id="not-the-id")


def test_pending_approval_survives_a_restart(make_agent):
    first = small_threshold(make_agent, checkpoint="shared.sqlite")
    waiting = first.ask(BIG, user="bob")
    first.close()

    second = small_threshold(make_agent, checkpoint="shared.sqlite")  # a new process would do the same
    assert second.result(waiting.thread_id).pending["interrupt_id"] == waiting.pending["interrupt_id"]
    done = second.decide(waiting.thread_id, "approve", user="alice")
    assert done.approval.status == "approved" and done.results


def test_purge_everything_always_needs_approval(make_agent):
    agent = make_agent()  # threshold 20, but purge-all ignores thresholds
    waiting = agent.ask("purge everything on shop", user="bob")
    assert waiting.needs_approval and "always needs approval" in waiting.pending["reason"]


def test_approved_purge_everything_clears_every_layer_that_can(fresh_stack, make_agent):
    warm(fresh_stack, "/", "/pricing", "/products/hats/beanie")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    agent = make_agent()
    waiting = agent.ask("purge everything on shop", user="bob")
    done = agent.decide(waiting.thread_id, "approve", user="alice")

    by_layer = {r.layer: r for r in done.results}
    assert by_layer["appcache"].status == ItemStatus.PURGED_VERIFIED
    assert by_layer["varnish"].status == ItemStatus.PURGED_VERIFIED
    assert by_layer["edge"].status == ItemStatus.SKIPPED and "cannot purge everything" in by_layer["edge"].detail
    assert fresh_stack.redis_client().exists(fresh_stack.app_cache_key("/products/hats/beanie")) == 0
    varnish = httpx.get(fresh_stack.varnish_url + "/pricing", headers={"Host": fresh_stack.host})
    assert "$12" in varnish.text  # the ban reached a page that was never named
