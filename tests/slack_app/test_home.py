"""The App Home through real HTTP: a signed ``app_home_opened`` publishes the person's Home tab (``views.publish``):
their recent requests and status, for approvers what waits for them with Approve/Deny (the card's interrupt and
checks), a how-to (slack_app/handlers.py, the Home part; Agent.requests_of / waiting_for)."""

from __future__ import annotations

import json

from slack_app.blocks import APPROVE_ACTION, DENY_ACTION
from tests.fakes.slack import home_block_actions, home_opened
from tests.slack_app.conftest import BIG, CHANNEL, SMALL, all_text, buttons


def open_home(h, user: str, *, tab: str = "home") -> dict | None:
    """Open the Home tab as ``user``; the view published for them (None when nothing was)."""
    before = len(h.fake.calls_to("views.publish", user_id=user))
    assert h.send_event(home_opened(user, tab=tab)) == 200
    h.idle()
    published = h.fake.calls_to("views.publish", user_id=user)
    return h.fake.views[published[-1].response["view"]["id"]] if len(published) > before else None


def home_buttons(view: dict) -> list[dict]:
    return buttons({"blocks": view["blocks"]})


def click_home(h, view: dict, user: str, action: str = "approve", value: str | None = None) -> dict:
    """Click Approve/Deny on a Home tab; the Home published for the clicker after it."""
    element = next(e for e in home_buttons(view) if e["action_id"] == (APPROVE_ACTION if action == "approve"
                                                                         else DENY_ACTION))
    before = h.front.received
    status = h.sender.interaction(home_block_actions(view, user=user, action_id=element["action_id"],
                                                     value=value or element["value"]))[0]
    assert status == 200
    h.wait_received(before + 1)
    h.idle()
    published = h.fake.calls_to("views.publish", user_id=user)
    return h.fake.views[published[-1].response["view"]["id"]]


def test_everyone_sees_their_recent_requests_and_how_to_ask(slack):
    h = slack(approval={"threshold": 20})
    h.mention(SMALL)
    view = open_home(h, "UBOB")
    text = all_text({"blocks": view["blocks"]})
    assert view["type"] == "home"
    assert "Your recent requests:" in text and "shop.example/pricing" in text and "*done*" in text
    assert "/cachebot purge URL…" in text
    assert "Waiting for your approval" not in text and not home_buttons(view)
    assert "Your recent requests:* none yet" in all_text({"blocks": open_home(h, "UALICE")["blocks"]})


def test_the_messages_tab_publishes_nothing(slack):
    h = slack()
    assert open_home(h, "UBOB", tab="messages") is None


def test_approvers_see_what_waits_for_them_with_the_card_s_buttons(slack):
    h = slack()  # threshold 2, approvers UALICE, UCAROL
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    view = open_home(h, "UALICE")
    assert "Waiting for your approval (1)" in all_text({"blocks": view["blocks"]})
    assert [b["value"] for b in home_buttons(view)] == [b["value"] for b in buttons(card)]
    assert "waiting for approval" in all_text({"blocks": open_home(h, "UBOB")["blocks"]})  # the requester's view
    assert not home_buttons(open_home(h, "UBOB"))  # not an approver


def test_an_approver_does_not_see_their_own_request_when_self_approval_is_off(slack):
    h = slack()
    h.mention(BIG, user="UALICE")
    assert not home_buttons(open_home(h, "UALICE"))
    assert len(home_buttons(open_home(h, "UCAROL"))) == 2


def test_approving_on_the_home_tab_runs_the_purge_and_updates_the_card(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    after = click_home(h, open_home(h, "UALICE"), "UALICE")
    assert h.reports(thread_ts)
    card = h.thread(thread_ts)[0]
    assert "Approved by <@UALICE>" in all_text(card) and not buttons(card)
    text = all_text({"blocks": after["blocks"]})
    assert "is now *approved*" in text and not home_buttons(after)


def test_a_late_click_on_an_old_home_tab_is_told_why_on_the_home_tab(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    carol_view = open_home(h, "UCAROL")
    click_home(h, open_home(h, "UALICE"), "UALICE", "deny")
    after = click_home(h, carol_view, "UCAROL")
    assert "already denied by <@UALICE>" in all_text({"blocks": after["blocks"]})
    assert not h.reports(thread_ts)


def test_a_non_approver_s_click_from_a_home_tab_is_refused_by_policy(slack):
    """The Home tab shows buttons only to approvers, but the graph decides: a click made anyway is refused."""
    h = slack()
    thread_ts = h.mention(BIG)
    alice_view = open_home(h, "UALICE")
    after = click_home(h, {**alice_view, "id": "VMALLORY"}, "UMALLORY")
    assert "not an approver" in all_text({"blocks": after["blocks"]})
    assert h.front.agent.result(f"{CHANNEL}:{thread_ts}").pending


def test_a_tampered_interrupt_from_the_home_tab_decides_nothing(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    view = open_home(h, "UALICE")
    value = json.loads(home_buttons(view)[0]["value"])
    after = click_home(h, view, "UALICE", value=json.dumps({**value, "interrupt": "not-the-one"}))
    assert "no longer current" in all_text({"blocks": after["blocks"]})
    assert h.front.agent.result(f"{CHANNEL}:{thread_ts}").pending
