"""Active expiry (agent/service/expiry.py): an approval nobody decided on is ended when it expires, once across
replicas and restarts, and the front end is told once; Request again sends the same plan back for approval.
Each test runs on SQLite and on the real PostgreSQL (``make_agent``)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from agent.service.agent import NotAllowed, NothingPending
from agent.service.expiry import expire_one, expire_overdue, expire_overdue_approvals

BIG = "purge " + " ".join(f"https://shop.example/products/shoes/{p}" for p in ("runner", "hiker", "loafer"))
APPROVAL = {"threshold": 2, "approvers": ["alice", "carol"], "expiry_minutes": 30}


def waiting(agent, user: str = "bob") -> str:
    thread = f"C1:{uuid.uuid4().hex}"  # the PostgreSQL database is shared by the session
    assert agent.ask(BIG, user=user, channel="C1", thread_id=thread, interface="slack").pending
    return thread


def test_an_overdue_approval_is_expired_and_told_once(make_agent, clock):
    agent = make_agent(approval=APPROVAL)
    thread = waiting(agent)
    told = []
    assert asyncio.run(expire_overdue_approvals(agent, told.append)) == 0  # not due yet
    assert agent.result(thread).pending and told == []

    clock.advance(minutes=31)
    assert asyncio.run(expire_overdue_approvals(agent, told.append)) == 1
    result = agent.result(thread)
    assert result.pending is None and result.approval.status == "expired" and result.results == []
    assert "expired at 2026-11-25 12:30 UTC" in result.reply and "nothing was purged" in result.reply
    [item] = told
    assert item.thread_id == thread and item.requester == "bob" and item.interface == "slack"
    assert item.expires_at.isoformat().startswith("2026-11-25T12:30")
    [entry] = agent.requests_of("bob")
    assert entry.status == "expired"
    assert [(d.by, d.status) for d in entry.decisions] == [("cachebot", "expired")]

    assert asyncio.run(expire_overdue_approvals(agent, told.append)) == 0  # nothing left, nothing told again
    assert len(told) == 1
    assert agent.waiting_for("carol") == []


def test_two_replicas_expire_it_exactly_once(make_agent, clock):
    """Two Agents on one database (both PostgreSQL replicas, or two processes on one machine's SQLite files)
    sweeping at the same moment: one expires, one notice."""
    first, second = make_agent(approval=APPROVAL), make_agent(approval=APPROVAL)
    threads = [waiting(first) for _ in range(3)]
    clock.advance(minutes=31)
    told: list = []
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def sweep(agent) -> None:
        barrier.wait()
        counts.append(expire_overdue(agent, told.append))

    workers = [threading.Thread(target=sweep, args=(agent,)) for agent in (first, second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(counts) == 3
    assert sorted(item.thread_id for item in told) == sorted(threads)
    for thread in threads:
        decisions = [d for e in first.requests_of("bob") if e.thread_id == thread for d in e.decisions]
        assert [d.status for d in decisions] == ["expired"]
    assert expire_overdue(first, told.append) + expire_overdue(second, told.append) == 0
    assert len(told) == 3


def test_a_restart_after_the_expiry_time_still_expires_it(make_agent, clock):
    before = make_agent(approval=APPROVAL)
    thread = waiting(before)
    before.close()
    clock.advance(hours=5)  # the app was down through the expiry
    after = make_agent(approval=APPROVAL)
    told: list = []
    assert expire_overdue(after, told.append) == 1
    assert after.result(thread).approval.status == "expired" and [i.thread_id for i in told] == [thread]


def test_a_notice_that_could_not_be_given_is_given_by_a_later_sweep(make_agent, clock):
    agent = make_agent(approval=APPROVAL)
    thread = waiting(agent)
    clock.advance(minutes=31)

    def slack_down(item) -> None:
        raise ConnectionError("Slack is down")

    assert expire_overdue(agent, slack_down) == 1  # expired all the same: nothing can be approved any more
    assert agent.result(thread).approval.status == "expired"
    told: list = []
    assert expire_overdue(agent, told.append) == 0
    assert [item.thread_id for item in told] == [thread]
    expire_overdue(agent, told.append)
    assert len(told) == 1


def test_a_process_dying_between_expiring_and_telling_leaves_the_notice_to_the_next_sweep(make_agent, clock):
    agent = make_agent(approval=APPROVAL)
    thread = waiting(agent)
    clock.advance(minutes=31)
    assert expire_one(agent, thread, notify=None)  # expired, and nobody here to tell it (as if it died)
    told: list = []
    assert expire_overdue(agent, told.append) == 0
    assert [item.thread_id for item in told] == [thread]


def test_a_late_click_after_active_expiry_is_told_it_expired(make_agent, clock):
    agent = make_agent(approval=APPROVAL)
    thread = waiting(agent)
    clock.advance(minutes=31)
    expire_overdue(agent, lambda item: None)
    with pytest.raises(NothingPending, match="expired"):
        agent.decide(thread, "approve", user="alice")


def test_request_again_by_the_requester_sends_the_same_plan_back_for_approval(make_agent, clock):
    agent = make_agent(approval=APPROVAL)
    thread = waiting(agent)
    planned = agent.result(thread).plan
    clock.advance(minutes=31)
    told: list = []
    expire_overdue(agent, told.append)
    [item] = told

    again = agent.request_again(thread, item.request_id, user="bob")
    assert again.pending and again.approval.status == "pending" and again.results == []
    assert again.plan == planned  # the same plan, not a new one
    assert again.pending["requester"] == "bob" and again.pending["expires_at"].startswith("2026-11-25T13:01")
    assert agent.waiting_for("carol")[0].thread_id == thread
    with pytest.raises(NothingPending):  # a second press (a double click, a copy) does nothing
        agent.request_again(thread, item.request_id, user="bob")

    done = agent.decide(thread, "approve", user="alice")
    assert done.approval.status == "approved" and done.results
    statuses = [e.status for e in agent.requests_of("bob")]
    assert statuses == ["done", "expired"]  # two requests in the audit: the one that expired, the one approved


def test_request_again_by_an_approver_works_and_by_a_stranger_is_refused(make_agent, clock):
    agent = make_agent(approval=APPROVAL)
    thread = waiting(agent)
    clock.advance(minutes=31)
    told: list = []
    expire_overdue(agent, told.append)
    [item] = told
    assert agent.may_request_again(thread, "mallory")
    with pytest.raises(NotAllowed, match="only the person who asked for it or an approver"):
        agent.request_again(thread, item.request_id, user="mallory")
    assert agent.result(thread).approval.status == "expired"  # the refusal changed nothing
    assert agent.may_request_again(thread, "carol") is None
    again = agent.request_again(thread, item.request_id, user="carol")
    assert again.pending and again.pending["requester"] == "bob"  # still bob's request: carol may approve it
    [latest, _] = agent.requests_of("bob")
    assert [(d.by, d.decision) for d in latest.decisions] == [("carol", "request_again")]


def test_a_request_sent_back_expires_again_when_nobody_decides(make_agent, clock):
    agent = make_agent(approval=APPROVAL)
    thread = waiting(agent)
    clock.advance(minutes=31)
    told: list = []
    expire_overdue(agent, told.append)
    agent.request_again(thread, told[0].request_id, user="bob")
    clock.advance(minutes=31)
    assert expire_overdue(agent, told.append) == 1
    assert len(told) == 2 and told[0].request_id != told[1].request_id
