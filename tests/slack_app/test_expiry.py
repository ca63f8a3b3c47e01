"""Active expiry in Slack, end to end (real HTTP, the loopback Slack Web API, the real cache stack): when an approval
expires the card and every copy say "Expired at … — nothing was purged" with Request again in place of the
buttons, the requester is told in the thread, Home tabs drop it; once across replicas and restarts; Request
again by the requester or an approver sends the same plan back, by anyone else is refused
(slack_app/handlers.py, agent/service/expiry.py)."""

from __future__ import annotations

import copy
import json
import threading

import pytest

from slack_app.blocks import APPROVE_ACTION, DENY_ACTION, REQUEST_AGAIN_ACTION
from tests.fakes.slack import block_actions, home_opened
from tests.slack_app.conftest import BIG, all_text, buttons

APPROVERS_CHANNEL = "CAPPROVERS"


def action_ids(message: dict) -> list[str]:
    return [e["action_id"] for e in buttons(message)]


def notices(h, thread_ts: str) -> list[dict]:
    return [m for m in h.thread(thread_ts) if "nobody approved or denied your request" in all_text(m)]


def press_again(h, message: dict, user: str, *, thread_ts: str | None, front=None, sender=None) -> None:
    """Press Request again on ``message`` (the card in its thread, or a copy) as ``user``."""
    [element] = [e for e in buttons(message) if e["action_id"] == REQUEST_AGAIN_ACTION]
    payload = block_actions(user=user, channel=message["channel"], message_ts=message["ts"], thread_ts=thread_ts,
                            action_id=REQUEST_AGAIN_ACTION, value=element["value"])
    front, sender = front or h.front, sender or h.sender
    before = front.received
    assert sender.interaction(payload)[0] == 200
    h.wait_received(before + 1, front)
    h.idle()


def test_an_expired_card_says_so_in_place_and_the_requester_is_told_once(slack):
    h = slack()  # expiry 30 minutes
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    assert h.front.expire_now() == 0  # not due yet
    h.clock.advance(minutes=31)
    assert h.front.expire_now() == 1

    card = h.fake.messages[card["ts"]]
    assert "Expired at 2026-11-25 12:30 UTC — nothing was purged." in all_text(card)
    assert action_ids(card) == [REQUEST_AGAIN_ACTION]  # Approve / Deny are gone
    [notice] = notices(h, thread_ts)
    assert "<@UBOB>" in all_text(notice) and "expired at 2026-11-25 12:30 UTC" in all_text(notice)
    assert "nothing was purged" in all_text(notice)
    assert not h.reports(thread_ts)

    messages = len(h.thread(thread_ts))
    assert h.front.expire_now() == 0
    assert len(h.thread(thread_ts)) == messages and len(notices(h, thread_ts)) == 1


def test_copies_in_the_approvers_channel_and_dms_are_updated_too(slack):
    h = slack(approval={"channel": APPROVERS_CHANNEL, "dm_approvers": True})
    h.mention(BIG)
    copies = [m for m in h.fake.messages.values() if m["channel"] in (APPROVERS_CHANNEL, "DALICE", "DCAROL")]
    assert len(copies) == 3
    h.clock.advance(minutes=31)
    h.front.expire_now()
    for copied in copies:
        now = h.fake.messages[copied["ts"]]
        assert "Expired at 2026-11-25 12:30 UTC" in all_text(now) and action_ids(now) == [REQUEST_AGAIN_ACTION]
        assert "approval request from" in all_text(now)  # the copy keeps its link to the thread


def test_a_late_click_after_the_expiry_time_gets_the_same_single_notice(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    h.clock.advance(minutes=31)
    h.click(thread_ts, "UALICE", "approve", message=card)  # before any sweep noticed
    [told] = h.ephemerals("UALICE")
    assert "expired at 2026-11-25 12:30 UTC" in told and "nothing was purged" in told
    assert action_ids(h.fake.messages[card["ts"]]) == [REQUEST_AGAIN_ACTION]
    assert h.front.expire_now() == 0
    assert len(notices(h, thread_ts)) == 1 and not h.reports(thread_ts)


def test_the_approvers_home_tab_no_longer_shows_it(slack):
    h = slack()
    h.mention(BIG)
    assert h.send_event(home_opened("UALICE")) == 200
    h.idle()
    before = h.fake.calls_to("views.publish", user_id="UALICE")
    assert "Waiting for your approval (1)" in all_text({"blocks": before[-1].args["view"]["blocks"]})
    h.clock.advance(minutes=31)
    h.front.expire_now()
    after = h.fake.calls_to("views.publish", user_id="UALICE")
    assert len(after) > len(before)  # published again, without the request
    view = after[-1].args["view"]
    assert "Waiting for your approval" not in all_text({"blocks": view["blocks"]})
    assert not buttons({"blocks": view["blocks"]})


def test_request_again_by_the_requester_puts_the_same_plan_back_for_approval(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    planned = [b for b in card["blocks"] if b["type"] != "actions"][:-1]  # the plan, without who/when/buttons
    h.clock.advance(minutes=31)
    h.front.expire_now()
    expired = copy.deepcopy(h.fake.messages[card["ts"]])

    press_again(h, expired, "UBOB", thread_ts=thread_ts)
    card = h.fake.messages[card["ts"]]
    assert action_ids(card) == [APPROVE_ACTION, DENY_ACTION]
    assert [b for b in card["blocks"] if b["type"] != "actions"][:-1] == planned  # the same plan
    assert "Expires 2026-11-25 13:01 UTC." in all_text(card)
    asked = [m for m in h.thread(thread_ts) if "asked again" in all_text(m)]
    assert len(asked) == 1 and "<@UBOB> asked again" in all_text(asked[0]) and "<@UALICE>" in all_text(asked[0])

    press_again(h, expired, "UBOB", thread_ts=thread_ts)  # the old button again: nothing more happens
    assert "already sent back for approval" in h.ephemerals("UBOB")[-1]

    h.click(thread_ts, "UALICE", "approve")
    assert len(h.reports(thread_ts)) == 1


def test_request_again_by_a_stranger_is_refused_and_an_approver_may(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    h.clock.advance(minutes=31)
    h.front.expire_now()
    expired = copy.deepcopy(h.fake.messages[card["ts"]])

    press_again(h, expired, "UMALLORY", thread_ts=thread_ts)
    [refusal] = h.ephemerals("UMALLORY")
    assert "only the person who asked for it or an approver" in refusal
    assert action_ids(h.fake.messages[card["ts"]]) == [REQUEST_AGAIN_ACTION]

    press_again(h, expired, "UCAROL", thread_ts=thread_ts)
    assert action_ids(h.fake.messages[card["ts"]]) == [APPROVE_ACTION, DENY_ACTION]


def test_a_tampered_request_again_value_does_nothing(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    h.clock.advance(minutes=31)
    h.front.expire_now()
    expired = copy.deepcopy(h.fake.messages[card["ts"]])
    [element] = buttons(expired)
    element["value"] = json.dumps({"run": json.loads(element["value"])["run"], "request": "not-the-request"})
    press_again(h, expired, "UBOB", thread_ts=thread_ts)
    assert "already sent back for approval, or a newer request" in h.ephemerals("UBOB")[-1]
    assert action_ids(h.fake.messages[card["ts"]]) == [REQUEST_AGAIN_ACTION]


@pytest.fixture
def shared_storage(database_url, tmp_path) -> dict:
    """Storage for every instance of a test: the real PostgreSQL database, or one machine's SQLite files."""
    return {"sqlite_path": str(tmp_path / "state" / "state.sqlite"), "database_url": database_url}


def test_two_replicas_expire_it_once(slack, shared_storage):
    h = slack(storage=shared_storage)
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    _, second, _ = h.new_instance()
    h.clock.advance(minutes=31)
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def sweep(front) -> None:
        barrier.wait()
        counts.append(front.expire_now())

    workers = [threading.Thread(target=sweep, args=(front,)) for front in (h.front, second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(counts) == [0, 1]
    assert len(notices(h, thread_ts)) == 1
    expired_updates = [c for c in h.fake.calls_to("chat.update", ts=card["ts"]) if "Expired at" in c.args["text"]]
    assert len(expired_updates) == 1


def test_a_restart_after_the_expiry_time_still_expires_it(slack, shared_storage):
    h = slack(storage=shared_storage)
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    h.clock.advance(hours=3)  # down through the expiry
    h.restart()
    assert h.front.expire_now() == 1
    assert action_ids(h.fake.messages[card["ts"]]) == [REQUEST_AGAIN_ACTION]
    assert len(notices(h, thread_ts)) == 1


def test_the_sweeper_expires_it(slack):
    """The Slack process's sweeper (agent/service/sweeper.py, every ``recovery.sweep_seconds``) runs the job."""
    h = slack()
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    h.clock.advance(minutes=31)
    sweeper = h.front.sweeper()
    sweeper.interval = 0.05
    sweeper.start()
    try:
        h.fake.wait_for(lambda: notices(h, thread_ts), what="the expiry notice")
    finally:
        sweeper.stop()
    assert action_ids(h.fake.messages[card["ts"]]) == [REQUEST_AGAIN_ACTION]
    assert len(notices(h, thread_ts)) == 1


def test_the_notice_gets_through_a_rate_limit_and_server_errors(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    h.clock.advance(minutes=31)
    h.fake.rate_limit_once("chat.postMessage", retry_after=1)
    h.fake.fail_next("chat.update", 500, times=2)
    assert h.front.expire_now() == 1
    assert len(h.fake.rate_limited("chat.postMessage")) == 1 and len(h.fake.failed("chat.update")) == 2
    assert len(notices(h, thread_ts)) == 1
    assert action_ids(h.approval_message(thread_ts)) == [REQUEST_AGAIN_ACTION]


def test_a_notice_slack_would_not_take_is_given_by_a_later_sweep(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    h.clock.advance(minutes=31)
    h.fake.fail_next("chat.postMessage", 503, times=4)  # the call and its 3 retries
    assert h.front.expire_now() == 1
    assert not notices(h, thread_ts) and len(h.fake.failed("chat.postMessage")) == 4
    h.front.expire_now()
    assert len(notices(h, thread_ts)) == 1
