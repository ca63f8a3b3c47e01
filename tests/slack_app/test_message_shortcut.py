"""The message shortcut "Clear caches for links in this message" through real HTTP: a signed ``message_action``
opens a modal (``views.open``) listing the message's links; a signed ``view_submission`` runs a normal request
in a thread under the message (slack_app/handlers.py, the shortcut part)."""

from __future__ import annotations

import json

from slack_app import blocks as kit
from tests.agent.conftest import through_edge, warm
from tests.fakes.slack import message_action, view_submission
from tests.slack_app.conftest import APPROVERS, CHANNEL, all_text, assert_inert, buttons, mrkdwn_objects, new_ts

ANNOUNCEMENT = ("New prices are live! <https://shop.example/pricing> and <https://shop.example/products/hats/beanie>"
                " — also on <https://evil.example/pricing|our partner's site> and <http://127.0.0.1/admin>")


def open_modal(h, text: str = ANNOUNCEMENT, *, user: str = "UBOB", thread_ts: str | None = None):
    """Use the shortcut on a message; return (the message ts, the modal as Slack stored it)."""
    ts = new_ts()
    payload = message_action(user=user, channel=CHANNEL, message_ts=ts, text=text,
                             callback_id=kit.CLEAR_LINKS_SHORTCUT, thread_ts=thread_ts)
    before = h.front.received
    assert h.sender.interaction(payload)[0] == 200
    h.wait_received(before + 1)
    h.idle()
    [call] = h.fake.calls_to("views.open")[-1:]
    assert call.args["trigger_id"] == payload["trigger_id"]
    view = h.fake.views[call.response["view"]["id"]]
    return ts, view


def submit(h, view: dict, *, user: str = "UBOB", ticked: list[str] | None = None) -> int:
    """Submit the modal with the options whose values are ``ticked`` (default: as opened, all ticked)."""
    selected = {}
    for block in view["blocks"]:
        if block["type"] == "input":
            values = [o["value"] for o in block["element"]["initial_options"]]
            chosen = [v for v in values if ticked is None or v in ticked]
            selected[block["block_id"]] = {kit.LINKS_ACTION: chosen}
    before = h.front.received
    status = h.sender.interaction(view_submission(view, user=user, selected=selected))[0]
    if status == 200:
        h.wait_received(before + 1)
        h.idle()
    return status


def options(view: dict) -> list[str]:
    return [o["text"]["text"] for b in view["blocks"] if b["type"] == "input" for o in b["element"]["options"]]


def test_the_modal_lists_our_links_ticked_and_the_others_as_not_touched(slack):
    h = slack()
    ts, view = open_modal(h)
    assert view["type"] == "modal" and view["callback_id"] == kit.CLEAR_LINKS_VIEW
    assert options(view) == ["https://shop.example/pricing", "https://shop.example/products/hats/beanie"]
    text = all_text({"blocks": view["blocks"]})
    assert "Not touched (2)" in text and "evil.example" in text and "127.0.0.1" in text
    assert json.loads(view["private_metadata"]) == {"channel": CHANNEL, "thread_ts": ts,
                                                    "urls": options(view)}
    for obj in mrkdwn_objects(view["blocks"]):
        assert_inert(obj)
    assert not h.fake.calls_to("chat.postMessage")  # opening the modal does nothing else


def test_submitting_runs_a_purge_in_a_thread_under_the_message(slack, fresh_stack):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $16/month.")
    h = slack(approval={"threshold": 20})
    ts, view = open_modal(h)
    assert submit(h, view, ticked=["0"]) == 200  # only the pricing page
    status_message, progress, report = h.thread(ts)
    assert status_message["text"] == "Looking at 1 URL…" or "*Plan:*" in all_text(status_message)
    assert report["text"].endswith("done and verified fresh.")
    assert "beanie" not in all_text(report)
    assert "$16/month" in through_edge(fresh_stack, "/pricing").text
    [request] = h.front.agent.audit.dump()["audit_requests"]
    assert request["thread_id"] == f"{CHANNEL}:{ts}" and request["requested_by"] == "UBOB"


def test_a_big_selection_needs_approval_in_the_thread(slack, fresh_stack):
    h = slack()  # threshold 2
    ts, view = open_modal(h)
    submit(h, view)
    card = h.approval_message(ts)
    assert len(buttons(card)) == 2
    h.click(ts, APPROVERS[0])
    assert h.reports(ts)


def test_a_message_in_a_thread_is_answered_in_that_thread(slack):
    h = slack(approval={"threshold": 20})
    parent = new_ts()
    ts, view = open_modal(h, thread_ts=parent)
    assert json.loads(view["private_metadata"])["thread_ts"] == parent
    submit(h, view)
    assert h.thread(parent) and not h.thread(ts)


def test_a_message_without_our_links_opens_a_modal_that_says_so(slack):
    h = slack()
    _, view = open_modal(h, "see <https://evil.example/> for details")
    assert "submit" not in view and not options(view)
    assert "no links to the sites I look after" in all_text({"blocks": view["blocks"]})


def test_only_the_offered_links_can_be_submitted(slack, fresh_stack):
    """Option values are indices into the modal's own list: a value that names a URL, or an index beyond the
    list, purges nothing."""
    h = slack(approval={"threshold": 20})
    ts, view = open_modal(h)
    block = next(b["block_id"] for b in view["blocks"] if b["type"] == "input")
    forged = view_submission(view, user="UBOB",
                             selected={block: {kit.LINKS_ACTION: ["https://evil.example/", "7", "-1"]}})
    before = h.front.received
    assert h.sender.interaction(forged)[0] == 200
    h.wait_received(before + 1)
    h.idle()
    assert not h.front.agent.audit.dump()["audit_requests"]
    assert "ticked no links" in h.ephemerals("UBOB")[0]


def test_a_submission_counts_once(slack):
    h = slack(approval={"threshold": 20})
    ts, view = open_modal(h)
    submit(h, view)
    submit(h, view)
    assert len(h.front.agent.audit.dump()["audit_requests"]) == 1


def test_a_forged_submission_is_refused(slack):
    h = slack()
    _, view = open_modal(h)
    payload = view_submission(view, user="UBOB", selected={})
    assert h.sender.interaction(payload, secret="not-the-secret")[0] == 401
