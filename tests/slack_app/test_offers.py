"""Questions, dry runs and cancellations in Slack (issue 9, item 8): nothing is purged until someone clicks
"Purge these N pages", and that click purges exactly the pages the question showed, as the clicker, under the
usual approval rules. Real HTTP in and out, the real cache stack."""

from __future__ import annotations

import copy
import json

from slack_app import blocks as kit
from tests.agent.conftest import through_edge, warm
from tests.fakes.slack import block_actions
from tests.slack_app.conftest import CHANNEL, all_text, buttons

PRICING = "https://shop.example/pricing"
QUESTION = f"is it safe to purge <{PRICING}>?"


def still_cached(stack, path: str = "/pricing") -> bool:
    return through_edge(stack, path).headers["X-Cache-Status"] == "HIT"


def offer_message(h, thread_ts: str) -> dict:
    [found] = [m for m in h.thread(thread_ts) if any(e["action_id"] in kit.OFFER_ACTION_IDS for e in buttons(m))]
    return copy.deepcopy(found)


def click_offer(h, thread_ts: str, user: str, choice: str = "purge", *, message: dict | None = None,
                value: str | None = None, channel: str = CHANNEL, in_thread: str | None = None) -> int:
    message = message or offer_message(h, thread_ts)
    action = kit.OFFER_PURGE_ACTION if choice == "purge" else kit.OFFER_CHECK_ACTION
    element = next(e for e in buttons(message) if e["action_id"] == action)
    payload = block_actions(user=user, channel=channel, message_ts=message["ts"], thread_ts=in_thread or thread_ts,
                            action_id=action, value=value or element["value"])
    before = h.front.received
    status, _, _ = h.sender.interaction(payload)
    h.wait_received(before + 1)
    h.idle()
    return status


def test_a_question_gets_the_plan_and_two_buttons_and_purges_nothing(slack, fresh_stack):
    warm(fresh_stack, "/pricing", "/")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(QUESTION)

    offer = offer_message(h, thread_ts)
    labels = [e["text"]["text"] for e in buttons(offer)]
    assert labels[0].startswith("Purge these ") and labels[0].endswith(" pages") and labels[1] == "Just check them"
    assert "*Plan:*" in all_text(offer) and "nothing was purged" in all_text(offer)
    assert json.loads(buttons(offer)[0]["value"]).keys() == {"run", "offer"}  # no URL travels in the button
    assert not h.reports(thread_ts)
    assert still_cached(fresh_stack)


def test_purge_these_pages_purges_exactly_the_planned_pages_as_the_clicker(slack, fresh_stack):
    warm(fresh_stack, "/pricing", "/", "/about")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(QUESTION, user="UBOB")
    offer = offer_message(h, thread_ts)
    planned = h.front.agent.result(f"{CHANNEL}:{thread_ts}").pages

    assert click_offer(h, thread_ts, "UCAROL") == 200

    [report] = h.reports(thread_ts)
    assert report["text"].endswith("done and verified fresh.")
    assert "$12" in through_edge(fresh_stack, "/pricing").text
    assert still_cached(fresh_stack, "/about")  # never part of the question
    result = h.front.agent.result(f"{CHANNEL}:{thread_ts}")
    assert {r.url for r in result.results} == set(planned)
    [entry] = h.front.agent.audit.history(limit=5)
    assert entry.user == "UCAROL"
    taken = next(m for m in h.thread(thread_ts) if m["ts"] == offer["ts"])
    assert not buttons(taken) and "<@UCAROL> asked to purge these pages" in all_text(taken)


def test_a_tampered_button_value_cannot_widen_what_is_purged(slack, fresh_stack):
    warm(fresh_stack, "/pricing", "/about")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(QUESTION)
    offer = offer_message(h, thread_ts)
    value = json.loads(buttons(offer)[0]["value"])
    value["urls"] = ["https://shop.example/about"]  # extra keys are ignored: the URLs come from the stored run
    click_offer(h, thread_ts, "UBOB", value=json.dumps(value))

    assert still_cached(fresh_stack, "/about")
    assert "https://shop.example/about" not in {r.url for r in
                                                 h.front.agent.result(f"{CHANNEL}:{thread_ts}").results}


def test_a_click_from_another_conversation_or_thread_does_nothing(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(QUESTION)
    click_offer(h, thread_ts, "UEVE", channel="COTHER")
    click_offer(h, thread_ts, "UEVE", in_thread="1700000000.000100")
    assert [t for t in h.ephemerals("UEVE")] == ["That button does not belong to this conversation; nothing was "
                                                 "done."] * 2
    assert still_cached(fresh_stack) and not h.reports(thread_ts)
    assert buttons(offer_message(h, thread_ts))  # the offer is still open for the people in the thread


def test_a_second_click_is_told_the_question_was_answered(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(QUESTION)
    offer = offer_message(h, thread_ts)
    click_offer(h, thread_ts, "UBOB", message=offer)
    click_offer(h, thread_ts, "UCAROL", message=offer)  # the same (stale) buttons
    assert len(h.reports(thread_ts)) == 1
    assert h.ephemerals("UCAROL") == ["Nothing to do: someone already answered this question."]


def test_purge_these_pages_keeps_the_approval_rules(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack()  # threshold 2: the pricing page and its dependents need approval
    thread_ts = h.mention(QUESTION, user="UBOB")
    click_offer(h, thread_ts, "UBOB")
    assert h.approval_message(thread_ts)  # an approval card, like a typed request
    assert still_cached(fresh_stack) and not h.reports(thread_ts)


def test_just_check_them_looks_without_purging(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(QUESTION)
    click_offer(h, thread_ts, "UBOB", "check")
    assert "varnish" in all_text(h.thread(thread_ts)[-1]) and not h.reports(thread_ts)
    assert still_cached(fresh_stack)


def test_a_dry_run_shows_the_plan_and_nothing_is_purged(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(f"dry run: <{PRICING}>")
    [plan] = h.thread(thread_ts)
    assert "*Plan:*" in all_text(plan) and "*Dry run:* nothing was purged" in all_text(plan)
    assert not buttons(plan) and not h.reports(thread_ts)
    assert still_cached(fresh_stack)


def test_a_cancellation_is_answered_plainly(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(f"wait, cancel that: <{PRICING}>")
    [reply] = h.thread(thread_ts)
    assert "Cancelled: I did not purge anything for this message." in all_text(reply)
    assert still_cached(fresh_stack)


def test_a_check_that_finds_a_stale_page_says_so_first_and_offers_to_purge_it(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    fresh_stack.flush_app_cache()  # the origin renders the new price; varnish and nginx still hold the old one
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(f"why is <{PRICING}> stale?", user="UBOB")

    offer = offer_message(h, thread_ts)
    assert all_text(offer).startswith("Stale on varnish and edge: they serve the version from")
    assert [e["text"]["text"] for e in buttons(offer)] == ["Purge this page"]
    assert still_cached(fresh_stack)  # a check never purges

    assert click_offer(h, thread_ts, "UCAROL") == 200
    [report] = h.reports(thread_ts)
    assert report["text"].endswith("done and verified fresh.")
    assert "$12" in through_edge(fresh_stack, "/pricing").text
    assert "<@UCAROL> asked to purge these pages" in all_text(h.fake.messages[offer["ts"]])


def test_a_check_that_finds_everything_fresh_offers_nothing(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    fresh_stack.flush_app_cache()
    h = slack()
    thread_ts = h.mention(f"is <{PRICING}> cached?")
    [answer] = h.thread(thread_ts)
    assert all_text(answer).startswith("Fresh everywhere.") and not buttons(answer)


def test_a_check_of_a_deleted_page_says_gone_or_stale_and_offers_only_when_stale(slack, fresh_stack):
    warm(fresh_stack, "/about")
    fresh_stack.content.retire("/about")
    fresh_stack.flush_app_cache()  # the origin answers 410; varnish and nginx still hold the old 200
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention("is <https://shop.example/about> stale?", user="UBOB")

    offer = offer_message(h, thread_ts)
    assert all_text(offer).startswith("Stale on varnish and edge: they still serve a page the origin has deleted "
                                      "(HTTP 410 there).")
    assert click_offer(h, thread_ts, "UCAROL") == 200
    [report] = h.reports(thread_ts)
    assert "1 deleted page is gone from every cache" in report["text"]

    again = h.mention("is <https://shop.example/about> stale?", user="UBOB")
    [answer] = h.thread(again)
    assert all_text(answer).startswith("Gone from every cache: the origin answers HTTP 410 (a deleted page).")
    assert not buttons(answer)


def test_a_check_while_the_origin_fails_cannot_tell_and_offers_no_purge(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    content = fresh_stack.content.path
    h = slack()
    content.rename(content.with_suffix(".away"))  # the origin answers HTTP 500 for every page
    try:
        thread_ts = h.mention(f"is <{PRICING}> stale?")
        [answer] = h.thread(thread_ts)
    finally:
        content.with_suffix(".away").rename(content)
    assert all_text(answer).startswith("Can't tell: the origin itself is failing: 500.")
    assert not buttons(answer)
    assert still_cached(fresh_stack)
