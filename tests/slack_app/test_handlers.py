"""Conversations through real HTTP: signed Slack requests in, Web API calls out, purges on the real stack."""

from __future__ import annotations

import csv
import io
import threading

from agent.config import parse_config
from agent.layers import build_layer
from agent.service.agent import Agent
from slack_app.app import SlackFrontEnd
from slack_app.slack_api import make_client
from tests.agent.conftest import through_edge, warm
from tests.fakes.slack import BOT_ID, BOT_USER_ID, message
from tests.slack_app.conftest import BIG, CHANNEL, SMALL, all_text, buttons, new_ts


# --- requests that run at once ---------------------------------------------------------------------------

def test_small_batch_runs_at_once_with_one_progress_message_and_a_report(slack, fresh_stack):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    h = slack(approval={"threshold": 20})
    thread_ts = h.mention(SMALL)

    posted = h.fake.calls_to("chat.postMessage")
    assert all(c.args["thread_ts"] == thread_ts and c.args["channel"] == CHANNEL for c in posted)
    first = posted[0]
    assert first.args["text"] == "Looking at 1 URL…"

    messages = h.thread(thread_ts)
    request, progress, report = messages  # the request (now the plan), one progress message, the report
    assert "*Plan:* 6 purges over 2 pages on 3 layers" in all_text(request)
    assert "/pricing" in all_text(request) and "home page shows the prices" in all_text(request)
    assert not buttons(request)

    assert progress["text"].startswith("✓ Finished") and "Purging" in progress["text"]
    progress_updates = [c for c in h.fake.calls_to("chat.update") if c.args["ts"] == progress["ts"]]
    assert progress_updates, "the progress message is updated in place"
    times = [c.at for c in progress_updates]
    assert all(b - a >= 0.9 for a, b in zip(times, times[1:])), "at most one chat.update per second"

    assert report["text"] == "All 6 purges done and verified fresh."  # the plan's count, in plain words
    blocks = report["blocks"]
    assert "https://shop.example/pricing" in all_text(report) and "`varnish`" in all_text(report)
    assert len(blocks) <= 50 and all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert not h.fake.calls_to("files.completeUploadExternal")
    assert "$12/month" in through_edge(fresh_stack, "/pricing").text


def test_failures_come_first_in_the_report(slack, fresh_stack):
    h = slack(approval={"threshold": 20},
              layers=[*fresh_stack.config_dict()["layers"][:2],
                      {"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:9", "retries": 0,
                       "options": {"purge_path_prefix": "/purge"}}])
    thread_ts = h.mention(SMALL)
    report = h.reports(thread_ts)[0]
    assert report["text"].startswith("2 of 2 pages NOT fresh: ") and "on edge" in report["text"]
    page_sections = [b["text"]["text"] for b in report["blocks"][1:] if b["type"] == "section"]
    assert page_sections[0].startswith(":x:")
    first_layer_line = page_sections[0].splitlines()[1]
    assert "`edge`" in first_layer_line and "FAILED" in first_layer_line


def test_a_run_that_fails_after_sending_says_so_and_reports_what_was_sent(slack, fresh_stack):
    h = slack(approval={"threshold": 20})
    audit = h.front.agent.audit

    def layers_until_purges_were_recorded(config):
        # the verify step opens the layers after execute recorded its answers: make that fail
        if audit.dump()["audit_results"]:
            raise RuntimeError("the layer registry is unavailable")
        return build_layer(config)

    h.front.agent.context.layer_factory = layers_until_purges_were_recorded
    thread_ts = h.mention(SMALL)

    said = [m["text"] for m in h.thread(thread_ts)]
    assert any(t.startswith("Something went wrong on my side after the purges were sent") for t in said)
    report = h.reports(thread_ts)[0]
    assert "NOT verified" in report["text"] and "https://shop.example/pricing" in all_text(report)


def test_help_in_a_dm_is_answered_in_place(slack):
    h = slack()
    ts = h.dm("help")
    [reply] = h.fake.in_thread("DBOB", ts)
    assert "I clear cached pages" in all_text(reply)
    assert "<@UALICE>" in reply["blocks"][0]["text"]["text"]  # our approver mention stays a live mention


def test_is_it_cached_answers_from_the_check_intent(slack, fresh_stack):
    warm(fresh_stack, "/pricing")
    h = slack()
    thread_ts = h.mention("is https://shop.example/pricing cached?")
    [reply] = h.thread(thread_ts)
    text = all_text(reply)
    assert "https://shop.example/pricing" in text and "varnish" in text and "edge" in text
    assert not h.reports(thread_ts)
    assert through_edge(fresh_stack, "/pricing").headers["X-Cache-Status"] == "HIT"  # looked, did not purge


def test_rejected_urls_are_listed_with_reasons_and_escaped(slack):
    h = slack()
    thread_ts = h.mention("purge <https://shop.example.evil.net/x> and <https://shop.example/pricing> "
                          "javascript:alert(1)")
    text = "\n".join(all_text(m) for m in h.thread(thread_ts))
    assert "Not touched" in text and "shop.example.evil.net" in text
    assert "<!channel>" not in text


def test_bot_messages_edits_and_channel_chatter_are_ignored(slack):
    h = slack()
    # our own message: Bolt's IgnoringSelfEvents drops it before any listener
    assert h.sender.event(message("help", user=BOT_USER_ID, channel="DBOB", ts=new_ts(), bot_id=BOT_ID))[0] == 200
    for event in (
        message("help", user=None, channel="DBOB", ts=new_ts(), subtype="bot_message", bot_id="BOTHER"),
        message("help", user="UBOB", channel="DBOB", ts=new_ts(), subtype="message_changed"),
        message("help", user="UBOB", channel=CHANNEL, ts=new_ts(), channel_type="channel"),  # not to us
    ):
        assert h.send_event(event) == 200
    h.idle()
    assert not h.fake.calls_to("chat.postMessage")


def test_a_reply_in_the_bots_thread_is_a_new_request(slack):
    h = slack()
    thread_ts = h.mention("help")
    status = h.send_event(message("is https://shop.example/pricing cached?", user="UBOB", channel=CHANNEL,
                                  ts=new_ts(), channel_type="channel", thread_ts=thread_ts))
    assert status == 200
    h.idle()
    assert len(h.thread(thread_ts)) == 2 and "varnish" in all_text(h.thread(thread_ts)[1])


def test_big_report_attaches_a_csv(slack, fresh_stack):
    h = slack(approval={"threshold": 1000})
    urls = " ".join(f"<https://shop.example/products/shoes/runner?v={n}>" for n in range(45))
    thread_ts = h.mention("purge " + urls)
    [report] = h.reports(thread_ts)
    assert len(report["blocks"]) <= 50
    assert "attached CSV" in all_text(report)
    [complete] = h.fake.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == CHANNEL and complete.args["thread_ts"] == thread_ts
    [file_id] = [f["id"] for f in complete.args["files"]]
    rows = list(csv.DictReader(io.StringIO(h.fake.uploads[file_id].decode())))
    assert len({r["url"] for r in rows}) >= 45 and {"url", "layer", "status", "detail"} <= set(rows[0])
    assert h.fake.calls_to("files.getUploadURLExternal")


# --- approval ----------------------------------------------------------------------------------------------

def test_big_batch_waits_with_buttons_and_names_the_approvers(slack, fresh_stack):
    warm(fresh_stack, "/products/shoes/runner")
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    text = all_text(approval)
    assert "over the approval threshold of 2" in text and "<@UALICE>" in text and "<@UCAROL>" in text
    approve, deny = buttons(approval)
    assert approve["style"] == "primary" and "confirm" in approve and deny["style"] == "danger"
    assert not h.reports(thread_ts)
    assert through_edge(fresh_stack, "/products/shoes/runner").headers["X-Cache-Status"] == "HIT"


def test_approver_approves_message_updated_and_purge_verified(slack, fresh_stack):
    warm(fresh_stack, "/products/shoes/runner")
    fresh_stack.content.edit("/products/shoes/runner", "Light running shoe. Price: $85.")
    assert "$80" in through_edge(fresh_stack, "/products/shoes/runner").text  # every layer serves the old page
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    status, _ = h.click(thread_ts, "UALICE", "approve")
    assert status == 200
    updated = h.fake.messages[approval["ts"]]
    assert not buttons(updated) and "Approved by <@UALICE> at 2026-11-25 12:00 UTC" in all_text(updated)
    [report] = h.reports(thread_ts)
    assert "FAILED" not in all_text(report) and "purged, verified" in all_text(report)
    assert "$85" in through_edge(fresh_stack, "/products/shoes/runner").text


def test_deny_purges_nothing(slack, fresh_stack):
    warm(fresh_stack, "/products/shoes/runner")
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    h.click(thread_ts, "UCAROL", "deny")
    assert "Denied by <@UCAROL>" in all_text(h.fake.messages[approval["ts"]])
    assert not buttons(h.fake.messages[approval["ts"]]) and not h.reports(thread_ts)
    assert any("Not purged: <@UCAROL> denied the request." in all_text(m) for m in h.thread(thread_ts))
    assert through_edge(fresh_stack, "/products/shoes/runner").headers["X-Cache-Status"] == "HIT"


def test_history_names_people_and_channels_and_says_what_was_denied_or_still_waits(slack):
    h = slack()
    denied = h.mention(BIG, user="UBOB")
    h.click(denied, "UCAROL", "deny")
    h.mention(BIG, user="UDAVE")  # left waiting
    asked = h.mention("what was purged today?", user="UBOB")
    answer = all_text(h.thread(asked)[-1])
    assert f"<@UBOB> (slack <#{CHANNEL}>)" in answer and "denied by <@UCAROL>" in answer
    assert f"<@UDAVE> (slack <#{CHANNEL}>)" in answer and "waiting for approval" in answer
    assert "Of these, 1 request denied and 1 request still waiting for approval." in answer


def test_unauthorised_click_gets_an_ephemeral_and_the_request_stays_pending(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    h.click(thread_ts, "UMALLORY", "approve")
    [refusal] = h.ephemerals("UMALLORY")
    assert "not an approver" in refusal
    approval = h.approval_message(thread_ts)  # still there, buttons refreshed for the new interrupt
    assert not h.reports(thread_ts)
    h.click(thread_ts, "UALICE", "approve", message=approval)
    assert len(h.reports(thread_ts)) == 1


def test_self_approval_is_refused(slack):
    h = slack()
    thread_ts = h.mention(BIG, user="UALICE")
    h.click(thread_ts, "UALICE", "approve")
    [refusal] = h.ephemerals("UALICE")
    assert "self-approval is turned off" in refusal
    assert buttons(h.approval_message(thread_ts)) and not h.reports(thread_ts)


def test_expired_approval_gets_a_clear_answer(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    h.clock.advance(minutes=31)
    h.click(thread_ts, "UALICE", "approve")
    card = h.fake.messages[approval["ts"]]
    assert "Expired at" in all_text(card)
    assert [b["action_id"] for b in buttons(card)] == ["cachebot_request_again"]  # no Approve / Deny any more
    assert not h.reports(thread_ts)
    h.click(thread_ts, "UCAROL", "approve", message=approval)  # a late click on the old buttons
    [late] = h.ephemerals("UCAROL")
    assert "expired" in late


def test_double_click_purges_once(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    barrier = threading.Barrier(2)

    def click() -> None:
        barrier.wait()
        h.click(thread_ts, "UALICE", "approve", message=approval, wait=False)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h.idle()
    assert len(h.reports(thread_ts)) == 1
    decided = [c for c in h.fake.calls_to("chat.update") if c.args["ts"] == approval["ts"] and "approved" in c.args["text"]]
    assert len(decided) == 1
    [second] = h.ephemerals("UALICE")
    assert "already approved" in second or "deciding on this request right now" in second
    h.click(thread_ts, "UALICE", "approve", message=approval)  # and a click long after
    assert "already approved by <@UALICE>" in h.ephemerals("UALICE")[-1]
    assert len(h.reports(thread_ts)) == 1


def test_two_replicas_on_the_same_files_purge_once(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    _, _, other = h.new_instance()
    barrier = threading.Barrier(2)

    def click(sender) -> None:
        barrier.wait()
        h.click(thread_ts, "UALICE", "approve", message=approval, sender=sender, wait=False)

    threads = [threading.Thread(target=click, args=(s,)) for s in (h.sender, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h.idle()
    assert len(h.reports(thread_ts)) == 1


def test_approval_survives_a_restart_of_the_app(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    old_url = h.server.url
    h.restart()
    assert h.server.url != old_url
    h.click(thread_ts, "UALICE", "approve", message=approval)
    assert "Approved by <@UALICE>" in all_text(h.fake.messages[approval["ts"]])
    assert len(h.reports(thread_ts)) == 1


def test_forged_button_value_for_another_channel_is_refused(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    approval = h.approval_message(thread_ts)
    forged = {**approval, "blocks": [
        b if b.get("type") != "actions" else {**b, "elements": [
            {**e, "value": e["value"].replace(CHANNEL, "COTHER")} for e in b["elements"]]}
        for b in approval["blocks"]]}
    h.click(thread_ts, "UALICE", "approve", message=forged)
    assert "does not belong" in h.ephemerals("UALICE")[0]
    assert not h.reports(thread_ts)


def test_a_click_decides_only_the_card_it_was_clicked_on(slack):
    h = slack()
    card_thread, other_thread = h.mention(BIG), h.mention(BIG)
    card, other = h.approval_message(card_thread), h.approval_message(other_thread)
    other_value = next(e["value"] for e in buttons(other))
    forged = {**card, "blocks": [
        b if b.get("type") != "actions" else {**b, "elements": [{**e, "value": other_value} for e in b["elements"]]}
        for b in card["blocks"]]}
    h.click(card_thread, "UALICE", "approve", message=forged)
    assert "does not belong" in h.ephemerals("UALICE")[0]
    assert buttons(h.fake.messages[card["ts"]]) and buttons(h.fake.messages[other["ts"]])  # neither decided
    assert not h.reports(card_thread) and not h.reports(other_thread)
    h.click(other_thread, "UALICE", "approve")  # the right card still works
    assert len(h.reports(other_thread)) == 1 and not h.reports(card_thread)


# --- duplicates -------------------------------------------------------------------------------------------

def test_retried_and_repeated_events_start_one_run(slack):
    h = slack()
    ts = new_ts()
    from tests.fakes.slack import mention

    event = mention("help", user="UBOB", channel=CHANNEL, ts=ts)
    assert h.send_event(event, event_id="EvSAME1") == 200
    assert h.send_event(event, event_id="EvSAME1", retry_num=1) == 200
    assert h.send_event(event, event_id="EvSAME1", retry_num=2) == 200
    assert h.send_event(event, event_id="EvSAME1") == 200
    # the same message also arrives as message.channels with its own event id
    also = message(event["text"], user="UBOB", channel=CHANNEL, ts=ts, channel_type="channel")
    assert h.send_event(also, event_id="EvOTHER2") == 200
    h.idle()
    assert len(h.fake.calls_to("chat.postMessage")) == 1
    assert len(h.thread(ts)) == 1


def test_the_front_end_claims_where_its_agent_keeps_its_records(fresh_stack, fake_slack, tmp_path, monkeypatch):
    """One storage decision: the claims move with the Agent's checkpoints (they once followed sqlite_path)."""
    monkeypatch.delenv("CACHEBOT_DATABASE_URL", raising=False)
    config = parse_config({**fresh_stack.config_dict(),
                           "storage": {"sqlite_path": str(tmp_path / "configured" / "state.sqlite")}})
    agent = Agent(config, checkpoint_path=str(tmp_path / "moved" / "state.sqlite"))
    front = SlackFrontEnd(agent, make_client("xoxb-test-token", fake_slack.api_url), signing_secret=None)
    try:
        assert front.claims is agent.storage.claims
        assert front.claims.claim("event:Ev1") and (tmp_path / "moved" / "claims.sqlite").is_file()
        assert not (tmp_path / "configured").exists()
    finally:
        front.close()
        agent.close()
