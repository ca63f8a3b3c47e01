"""A live replica answers the requests of one that stopped (leases, the sweeper, decision claims), in process.

"Dying" here is what a kill leaves behind: the run stops with a ``BaseException`` nothing catches (the thread lock
is let go, as a dead process's connection or file would be) and the dead front end's heartbeat stops. The
same with real processes and ``kill -9`` is in tests/agent/test_replicas.py.
"""

from __future__ import annotations

import asyncio

from agent.service.events import UrlsFound
from agent.storage.runs import ACCEPTED, ANSWERING, FINISHED, RUNNING
from agent.words import RESTARTED
from slack_app import handlers as handlers_module
from tests.fakes.slack import final_messages, is_report, mention
from tests.slack_app.conftest import BIG, CHANNEL, SMALL, new_ts

QUICK = {"lease_seconds": 0.5, "sweep_seconds": 0.2}


class Died(BaseException):
    pass


def die(*args, **kwargs):
    raise Died()


def kill(front) -> None:
    """What a kill leaves of a front end: its leases stop beating (its runs already stopped with ``Died``)."""
    front.agent.heartbeat.close()
    front.wait_idle(60)


def sweep_until(front, done, what: str) -> None:
    """A live replica's sweeps, until ``done()`` (each sweep takes over the leases stale by then)."""
    sweeper = front.sweeper()
    for _ in range(600):
        asyncio.run(sweeper.sweep_once())
        if done():
            return
        asyncio.run(asyncio.sleep(0.05))
    raise AssertionError(f"no {what} after many sweeps")


def texts(h, thread_ts: str) -> list[str]:
    return [m.get("text") or "" for m in h.thread(thread_ts)]


def test_a_request_taken_in_by_a_process_that_died_before_running_it_is_run_and_answered_by_a_peer(
        slack, monkeypatch):
    h = slack(approval={"threshold": 20}, recovery=QUICK)
    peer = h.new_instance()[1]
    monkeypatch.setattr(h.front.handlers, "run_request", die)  # the process dies once "Looking at…" is posted
    thread_ts = new_ts()
    assert h.send_event(mention(SMALL, user="UBOB", channel=CHANNEL, ts=thread_ts)) == 200
    kill(h.front)
    thread_id = f"{CHANNEL}:{thread_ts}"
    assert peer.agent.runs.get(thread_id)["status"] == ACCEPTED
    assert texts(h, thread_ts) == ["Looking at 1 URL…"]

    sweep_until(peer, lambda: h.reports(thread_ts), "report from the peer")

    said = texts(h, thread_ts)
    assert len(h.reports(thread_ts)) == 1
    assert sum(t.startswith(RESTARTED) for t in said) == 1  # told once, in place of "Looking at…"
    assert not any(t.startswith("Looking at") for t in said)
    lease = peer.agent.runs.get(thread_id)
    assert lease["status"] == FINISHED and lease["takeovers"] == 1 and lease["told"]
    [entry] = peer.agent.audit.history()
    assert entry.status == "done" and entry.worked is True


def test_a_run_whose_process_died_after_understanding_is_finished_by_a_live_peer_without_a_restart(
        slack, monkeypatch):
    h = slack(approval={"threshold": 20}, recovery=QUICK)
    peer = h.new_instance()[1]
    original = handlers_module.ProgressMessage.event

    def dies_after_understanding(self, event):
        if isinstance(event, UrlsFound):
            raise Died()
        original(self, event)

    monkeypatch.setattr(handlers_module.ProgressMessage, "event", dies_after_understanding)
    thread_ts = new_ts()
    assert h.send_event(mention(SMALL, user="UBOB", channel=CHANNEL, ts=thread_ts)) == 200
    kill(h.front)
    monkeypatch.setattr(handlers_module.ProgressMessage, "event", original)
    thread_id = f"{CHANNEL}:{thread_ts}"
    assert peer.agent.runs.get(thread_id)["status"] == RUNNING and not h.reports(thread_ts)

    sweep_until(peer, lambda: h.reports(thread_ts), "report from the peer")

    assert len(h.reports(thread_ts)) == 1
    assert sum(t.startswith(RESTARTED) for t in texts(h, thread_ts)) == 1
    assert peer.agent.runs.get(thread_id)["status"] == FINISHED
    sweep_until(peer, lambda: True, "a further sweep")
    assert len(h.reports(thread_ts)) == 1  # a finished lease is never taken over again


def test_a_lease_whose_holder_still_beats_is_left_alone(slack, monkeypatch):
    h = slack(approval={"threshold": 20}, recovery=QUICK)
    peer = h.new_instance()[1]
    thread_id = f"{CHANNEL}:{new_ts()}"
    h.front.agent.accept(thread_id, interface="slack", channel=CHANNEL,
                         reply_to={"key": "event:E1", "kind": "answer", "message": SMALL, "user": "UBOB"})
    for _ in range(5):  # well past lease_seconds, while the holder beats
        asyncio.run(peer.sweeper().sweep_once())
        asyncio.run(asyncio.sleep(0.3))
        h.front.agent.heartbeat.beat()
    assert peer.agent.runs.get(thread_id)["status"] == ACCEPTED and peer.agent.runs.get(thread_id)["takeovers"] == 0


def test_a_click_claimed_by_a_process_that_died_before_its_decision_landed_can_be_made_again(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    interrupt_id = h.front.agent.result(f"{CHANNEL}:{thread_ts}").pending["interrupt_id"]
    # the first click's process claimed the decision, then died before resuming the graph
    assert h.front.claims.claim(f"decision:{CHANNEL}:{thread_ts}:{interrupt_id}")

    h.click(thread_ts, "UALICE", message=card)

    assert len(h.reports(thread_ts)) == 1
    assert h.front.agent.result(f"{CHANNEL}:{thread_ts}").approval.status == "approved"
    assert not any("deciding" in t for t in h.ephemerals("UALICE"))


def test_a_double_click_still_decides_once(slack):
    h = slack()
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    h.click(thread_ts, "UALICE", message=card, wait=False)
    h.click(thread_ts, "UCAROL", message=card)
    h.idle()
    assert len(h.reports(thread_ts)) == 1
    [said] = h.ephemerals("UALICE") + h.ephemerals("UCAROL")
    assert "already approved" in said


def test_a_decision_whose_process_died_mid_purge_is_finished_by_a_peer(slack, monkeypatch):
    h = slack(recovery=QUICK)
    peer = h.new_instance()[1]
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    original = handlers_module.ProgressMessage.event

    def dies_in_execute(self, event):
        if type(event).__name__ == "Progress" and event.phase == "purge":
            raise Died()
        original(self, event)

    monkeypatch.setattr(handlers_module.ProgressMessage, "event", dies_in_execute)
    h.click(thread_ts, "UALICE", message=card)
    kill(h.front)
    monkeypatch.setattr(handlers_module.ProgressMessage, "event", original)
    assert not h.reports(thread_ts)

    sweep_until(peer, lambda: h.reports(thread_ts), "report from the peer")

    assert len(h.reports(thread_ts)) == 1
    assert sum(t.startswith(RESTARTED) for t in texts(h, thread_ts)) == 1
    result = peer.agent.result(f"{CHANNEL}:{thread_ts}")
    assert result.approval.status == "approved" and len(result.results) == len(result.plan)


def test_a_worker_killed_mid_purge_does_not_drop_its_request(fresh_stack, fake_slack, tmp_path):
    """Worker mode (``--workers``): the run's worker process is SIGKILLed while its purges are held at a hook; the
    pool replaces it, the job run again finds the request picked up, and the app process's sweeper finishes it."""
    import os
    import signal

    from agent.config import parse_config
    from slack_app.dispatch import _ping
    from slack_app.server import SlackHTTPServer, SlackSettings, build_front_end
    from tests.agent.test_replicas import Hook
    from tests.fakes.slack import SlackSender, event_payload
    from tests.slack_app.conftest import SECRET

    hook = Hook()
    data = fresh_stack.config_dict()
    data["layers"].append({"name": "hook", "kind": "webhook", "endpoint": hook.url, "timeout_seconds": 60,
                           "retries": 0, "options": {"method": "PURGE", "url_template": "{endpoint}/purge{path}",
                                                     "expected_status": [200]}})
    data["sites"][0]["layers"].append("hook")
    data["approval"] = {**data["approval"], "threshold": 20}
    data["storage"] = {"sqlite_path": str(tmp_path / "state.sqlite")}
    data["recovery"] = QUICK
    settings = SlackSettings(bot_token="xoxb-test", signing_secret=SECRET, app_token=None, api_url=fake_slack.api_url)
    front = build_front_end(parse_config(data), settings, workers=1, worker_nice=0)
    server = SlackHTTPServer(front.app, port=0).start()
    thread_ts = new_ts()
    try:
        worker = front.dispatch.processes.runs.submit(_ping).result(timeout=60)
        hook.gate.clear()
        sender = SlackSender(server.url + "/slack/events", SECRET)
        assert sender.event({}, payload=event_payload(mention(SMALL, user="UBOB", channel=CHANNEL, ts=thread_ts)))[0] \
            == 200
        assert hook.arrived.wait(60), "the run never reached the hook"
        os.kill(worker, signal.SIGKILL)
        hook.gate.set()
        reports = lambda: [m for m in fake_slack.in_thread(CHANNEL, thread_ts) if is_report(m)]  # noqa: E731
        sweep_until(front, reports, "report after the worker died")
        assert front.wait_idle(60)
        said = [m.get("text") or "" for m in fake_slack.in_thread(CHANNEL, thread_ts)]
        assert len(reports()) == 1 and sum(t.startswith(RESTARTED) for t in said) == 1
        assert front.agent.runs.get(f"{CHANNEL}:{thread_ts}")["status"] == FINISHED
        assert set(hook.purges) == {"/pricing", "/"}
    finally:
        server.stop()
        front.close()
        front.agent.close()
        hook.close()


# --- killed after the final message was posted, before the lease said so (#11) ---------------------------------

def finals(h, thread_ts: str) -> list[dict]:
    return final_messages(h.thread(thread_ts))


def test_a_report_posted_just_before_a_kill_is_not_posted_again_by_the_peer_that_takes_over(slack, monkeypatch):
    h = slack(approval={"threshold": 20}, recovery=QUICK)
    peer = h.new_instance()[1]
    monkeypatch.setattr(h.front.agent, "answered", die)  # the report is out; the process dies before its lease
    thread_ts = new_ts()
    assert h.send_event(mention(SMALL, user="UBOB", channel=CHANNEL, ts=thread_ts), event_id="EvLATE") == 200
    kill(h.front)
    thread_id = f"{CHANNEL}:{thread_ts}"
    assert peer.agent.runs.get(thread_id)["status"] == ANSWERING and len(h.reports(thread_ts)) == 1

    sweep_until(peer, lambda: peer.agent.runs.get(thread_id)["status"] == FINISHED, "the lease finished")

    [report] = h.reports(thread_ts)
    assert finals(h, thread_ts) == [report]
    assert report["metadata"] == {"event_type": "cachebot_request_finished", "event_payload": {
        "request": "event:EvLATE", "thread": thread_id, "outcome": "report"}}
    assert not any(t.startswith(RESTARTED) for t in texts(h, thread_ts))  # nothing said: it was answered
    assert h.fake.calls_to("conversations.replies", channel=CHANNEL, ts=thread_ts)


def test_an_answer_given_in_place_just_before_a_kill_is_left_as_it_is(slack, monkeypatch):
    h = slack(recovery=QUICK)
    peer = h.new_instance()[1]
    monkeypatch.setattr(h.front.agent, "answered", die)
    thread_ts = new_ts()
    assert h.send_event(mention("help", user="UBOB", channel=CHANNEL, ts=thread_ts)) == 200
    kill(h.front)
    [answer] = h.thread(thread_ts)  # "Looking at…" became the answer
    thread_id = f"{CHANNEL}:{thread_ts}"

    sweep_until(peer, lambda: peer.agent.runs.get(thread_id)["status"] == FINISHED, "the lease finished")

    assert h.thread(thread_ts) == [answer] and finals(h, thread_ts) == [answer]


def test_a_decision_answered_just_before_a_kill_is_not_answered_again(slack, monkeypatch):
    h = slack(recovery=QUICK)
    peer = h.new_instance()[1]
    thread_ts = h.mention(BIG)
    card = h.approval_message(thread_ts)
    monkeypatch.setattr(h.front.agent, "answered", die)
    h.click(thread_ts, "UALICE", message=card)
    kill(h.front)
    thread_id = f"{CHANNEL}:{thread_ts}"
    assert peer.agent.runs.get(thread_id)["status"] == ANSWERING

    sweep_until(peer, lambda: peer.agent.runs.get(thread_id)["status"] == FINISHED, "the lease finished")

    [report] = h.reports(thread_ts)
    assert finals(h, thread_ts) == [report]
    assert report["metadata"]["event_payload"]["request"] == f"decision:{thread_id}:{card_interrupt(card)}"
    assert not any(t.startswith(RESTARTED) for t in texts(h, thread_ts))


def card_interrupt(card: dict) -> str:
    import json

    from tests.slack_app.conftest import buttons

    return json.loads(buttons(card)[0]["value"])["interrupt"]
