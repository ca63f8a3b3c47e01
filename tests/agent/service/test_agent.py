"""``Agent`` beyond runs: screening a text without starting one (what a front end may offer to purge)."""

from __future__ import annotations

import uuid


def test_screen_splits_a_message_into_our_urls_and_the_rest_with_why(make_agent):
    agent = make_agent()
    urls, rejected = agent.screen("prices: <https://shop.example/pricing> <https://evil.example/x> "
                                  "<https://shop.example/pricing#top> <http://127.0.0.1/admin>")
    assert urls == ["https://shop.example/pricing"]
    assert [r.input for r in rejected] == ["https://evil.example/x", "http://127.0.0.1/admin"]
    assert all(r.reason for r in rejected)
    assert not agent.audit.dump()["audit_requests"]  # nothing was run or recorded


BIG = "purge " + " ".join(f"https://shop.example/products/shoes/{p}" for p in ("runner", "hiker", "loafer"))


def test_waiting_for_lists_what_a_person_may_approve_until_it_expires(make_agent, clock):
    agent = make_agent(approval={"threshold": 2, "approvers": ["alice", "carol"], "expiry_minutes": 30})
    thread = f"C1:{uuid.uuid4().hex}"  # the PostgreSQL database is shared by the session
    assert agent.ask(BIG, user="alice", channel="C1", thread_id=thread, interface="slack").pending
    assert [r.thread_id for r in agent.waiting_for("carol")] == [thread]
    assert agent.waiting_for("alice") == []  # her own request: self-approval is off
    assert agent.waiting_for("mallory") == []  # not an approver
    assert [e.status for e in agent.requests_of("alice")] == ["waiting_approval"]
    clock.advance(minutes=31)
    assert agent.waiting_for("carol") == []  # expired: nothing to decide any more
