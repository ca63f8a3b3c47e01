"""Assistant threads through real HTTP: a signed ``assistant_thread_started`` gets suggested prompts
(``assistant.threads.setSuggestedPrompts``), and a request in such a thread shows what the run is doing in the
thread's status line (``assistant.threads.setStatus``), cleared at the end (slack_app/handlers.py; the status
line is slack_app/progress.py's ``ThreadStatus``)."""

from __future__ import annotations

from slack_app import blocks as kit
from tests.fakes.slack import assistant_thread_started, is_report, message
from tests.slack_app.conftest import BIG, SMALL, new_ts

DM = "DBOB"


def start_thread(h, thread_ts: str) -> None:
    assert h.send_event(assistant_thread_started(user="UBOB", channel=DM, thread_ts=thread_ts)) == 200
    h.idle()


def ask_in_thread(h, thread_ts: str, text: str) -> None:
    assert h.send_event(message(text, user="UBOB", channel=DM, ts=new_ts(), thread_ts=thread_ts)) == 200
    h.idle()


def statuses(h, thread_ts: str) -> list[str]:
    return [c.args["status"] for c in h.fake.calls_to("assistant.threads.setStatus", thread_ts=thread_ts)]


def test_a_new_assistant_thread_gets_suggested_prompts_once(slack):
    h = slack()
    thread_ts = new_ts()
    start_thread(h, thread_ts)
    start_thread(h, thread_ts)  # Slack redelivers events
    [call] = h.fake.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.args["channel_id"] == DM and call.args["thread_ts"] == thread_ts
    assert call.args["prompts"] == kit.ASSISTANT_PROMPTS and len(call.args["prompts"]) <= 4


def test_a_request_in_an_assistant_thread_shows_its_progress_in_the_status_line(slack, fresh_stack):
    h = slack(approval={"threshold": 20}, front_options={"progress_interval": 0})
    thread_ts = new_ts()
    start_thread(h, thread_ts)
    ask_in_thread(h, thread_ts, SMALL)
    said = statuses(h, thread_ts)
    assert said[0] == "Looking into it…" and said[-1] == ""  # set at the start, cleared at the end
    assert any(s.startswith("Purging 2 pages") for s in said)
    assert any(s.startswith("Verifying") for s in said)
    assert any(is_report(m) for m in h.thread(thread_ts, channel=DM))


def test_a_request_that_needs_approval_says_so_in_the_status_line(slack):
    h = slack(front_options={"progress_interval": 0})
    thread_ts = new_ts()
    start_thread(h, thread_ts)
    ask_in_thread(h, thread_ts, BIG)
    assert statuses(h, thread_ts) == ["Looking into it…", "Asking for approval…", ""]


def test_an_ordinary_dm_thread_has_no_status_line(slack):
    h = slack(approval={"threshold": 20})
    root = h.dm(SMALL)
    ask_in_thread(h, root, "check https://shop.example/pricing")
    assert not h.fake.calls_to("assistant.threads.setStatus")
