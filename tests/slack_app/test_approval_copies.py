"""Approvers are told: the approval card is copied to ``approval.channel`` and approvers' DMs, each copy links to
the thread, and a decision on any copy updates every copy (slack_app/handlers.py, approval copies; where the
copies are is kept by agent/storage/copies.py)."""

from __future__ import annotations

import copy
import json

from slack_app.blocks import APPROVE_ACTION, DENY_ACTION
from tests.fakes.slack import block_actions
from tests.slack_app.conftest import BIG, CHANNEL, all_text, buttons

APPROVERS_CHANNEL = "CAPPROVERS"


def copies_in(h, channel: str) -> list[dict]:
    return [m for m in h.fake.messages.values() if m["channel"] == channel]


def click_copy(h, message: dict, user: str, action: str = "approve") -> int:
    """Click Approve/Deny on a copy (a channel message, not in a thread) as Slack would post it."""
    element = next(e for e in buttons(message) if e["action_id"] == (APPROVE_ACTION if action == "approve"
                                                                        else DENY_ACTION))
    payload = block_actions(user=user, channel=message["channel"], message_ts=message["ts"], thread_ts=None,
                            action_id=element["action_id"], value=element["value"])
    before = h.front.received
    status = h.sender.interaction(payload)[0]
    h.wait_received(before + 1)
    h.idle()
    return status


def test_the_card_is_copied_to_the_approvers_channel_with_a_link_to_the_thread(slack):
    h = slack(approval={"channel": APPROVERS_CHANNEL})
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    [copied] = copies_in(h, APPROVERS_CHANNEL)
    header = copied["blocks"][0]["text"]["text"]
    assert f"<#{CHANNEL}>" in header
    assert f"https://cachebot-test.slack.com/archives/{CHANNEL}/p{card['ts'].replace('.', '')}" in header
    assert [b["value"] for b in buttons(copied)] == [b["value"] for b in buttons(card)]
    assert json.loads(buttons(copied)[0]["value"])["run"] == f"{CHANNEL}:{thread_ts}"


def test_approving_on_the_copy_runs_the_purge_and_updates_every_copy(slack):
    h = slack(approval={"channel": APPROVERS_CHANNEL})
    thread_ts = h.mention(BIG)
    [copied] = copies_in(h, APPROVERS_CHANNEL)
    assert click_copy(h, copy.deepcopy(copied), "UALICE") == 200
    assert h.reports(thread_ts), "the purge ran and reported in the request's thread"
    card = next(m for m in h.thread(thread_ts) if "Approved by" in all_text(m))
    copied = h.fake.messages[copied["ts"]]
    for message in (card, copied):
        assert "Approved by <@UALICE>" in all_text(message) and not buttons(message)
    assert "approval request from" in all_text(copied)  # the copy keeps its link to the thread


def test_approvers_are_dmed_and_a_denial_in_one_dm_updates_them_all(slack):
    h = slack(approval={"dm_approvers": True})
    thread_ts = h.mention(BIG)
    alice, carol = copies_in(h, "DALICE"), copies_in(h, "DCAROL")
    assert len(alice) == len(carol) == 1
    click_copy(h, copy.deepcopy(carol[0]), "UCAROL", "deny")
    for message in (h.fake.messages[alice[0]["ts"]], h.fake.messages[carol[0]["ts"]], h.thread(thread_ts)[0]):
        assert "Denied by <@UCAROL>" in all_text(message) and not buttons(message)
    assert not h.reports(thread_ts)


def test_a_non_approver_in_the_approvers_channel_is_refused_and_every_copy_gets_the_fresh_buttons(slack):
    h = slack(approval={"channel": APPROVERS_CHANNEL})
    thread_ts = h.mention(BIG)
    [copied] = copies_in(h, APPROVERS_CHANNEL)
    old = json.loads(buttons(copied)[0]["value"])["interrupt"]
    click_copy(h, copy.deepcopy(copied), "UMALLORY")
    assert "not an approver" in h.ephemerals("UMALLORY")[0]
    refused = h.fake.calls_to("chat.postEphemeral", user="UMALLORY")[0]
    assert refused.args["channel"] == APPROVERS_CHANNEL and not refused.args.get("thread_ts")
    card, copied = h.approval_message(thread_ts), h.fake.messages[copied["ts"]]
    fresh = {json.loads(b["value"])["interrupt"] for b in buttons(card) + buttons(copied)}
    assert len(fresh) == 1 and old not in fresh  # one new interrupt id, on every copy
    assert click_copy(h, copy.deepcopy(copied), "UALICE") == 200
    assert h.reports(thread_ts)


def test_a_run_s_button_on_a_message_that_is_no_copy_does_nothing(slack):
    """The button value names the run; a click counts only on the card or a recorded copy of it."""
    h = slack(approval={"channel": APPROVERS_CHANNEL})
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    elsewhere = {**copy.deepcopy(card), "channel": "CRANDOM", "ts": "1799999999.000100"}
    click_copy(h, elsewhere, "UALICE")
    assert "does not belong to this conversation" in h.ephemerals("UALICE")[0]
    assert h.front.agent.result(f"{CHANNEL}:{thread_ts}").pending


def test_a_request_asked_in_the_approvers_channel_is_not_copied_there(slack):
    h = slack(approval={"channel": CHANNEL})
    thread_ts = h.mention(BIG)
    assert h.approval_message(thread_ts)
    assert not [m for m in h.fake.messages.values() if "approval request from" in all_text(m)]
