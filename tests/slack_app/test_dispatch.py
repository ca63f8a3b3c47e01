"""Where jobs run. Thread mode on a stand-in for the handlers: an intake job's run goes to the runs pool, and
``wait_idle`` waits for both. Worker-process mode (``SlackFrontEnd(workers=N)``, and ``cachebot slack`` by default
on more than one core): intake and runs happen in other processes, each with its own Agent and client, and every
event still produces exactly one run."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agent.config import parse_config
from agent.storage.tables import requests as audit_requests
from slack_app.dispatch import Dispatcher, _ping, default_workers
from slack_app.jobs import AnswerRequest, ApprovalClick, NewEvent, RecoverRuns
from slack_app.server import SlackHTTPServer, SlackSettings, build_front_end
from tests.fakes.slack import SlackSender, event_payload, mention

SECRET = "worker-mode-signing-secret"
RUN = AnswerRequest(channel="C1", thread_ts="1.2", thread_id="C1:1.2", user="UBOB", message="help", status_ts=None)


class StandInHandlers:
    """Records which job ran on which pool; a new event asks for RUN, a click for nothing; runs take a moment."""

    def __init__(self, *, fail_on: type | None = None):
        self.fail_on = fail_on
        self.done: list[tuple[object, str]] = []
        self._lock = threading.Lock()

    def handle(self, job):
        if isinstance(job, AnswerRequest):
            time.sleep(0.1)
        with self._lock:
            self.done.append((job, threading.current_thread().name.rsplit("_", 1)[0]))
        if self.fail_on is not None and isinstance(job, self.fail_on):
            raise RuntimeError("this job fails")
        return RUN if isinstance(job, NewEvent) else None


def test_an_intake_job_runs_on_the_intake_pool_and_its_run_on_the_runs_pool():
    handlers = StandInHandlers()
    dispatch = Dispatcher(handlers)
    try:
        event = NewEvent(event={"type": "app_mention"}, event_id="Ev1", bot_user_id="UBOT", retry_num=None)
        dispatch.take_in(event)
        dispatch.take_in(ApprovalClick(body={}, action={}))
        assert dispatch.wait_idle(10)  # the run too, not only the intake that asked for it
        assert sorted(handlers.done, key=repr) == sorted([(event, "cachebot-intake"), (RUN, "cachebot-run"),
                                                          (ApprovalClick(body={}, action={}), "cachebot-intake")],
                                                         key=repr)
    finally:
        dispatch.close()


def test_a_failing_job_is_logged_and_the_others_go_on(caplog):
    handlers = StandInHandlers(fail_on=ApprovalClick)
    dispatch = Dispatcher(handlers)
    try:
        dispatch.take_in(ApprovalClick(body={}, action={}))
        dispatch.start(RecoverRuns())
        assert dispatch.wait_idle(10)
        assert (RecoverRuns(), "cachebot-run") in handlers.done
        assert "background job failed" in caplog.text
    finally:
        dispatch.close()


def test_worker_processes_need_a_spec():
    with pytest.raises(ValueError, match="worker_spec"):
        Dispatcher(StandInHandlers(), workers=2)


def test_while_the_intake_workers_start_intake_is_done_in_the_app_process():
    """An acked event exists only in memory until intake claims it and writes its lease: it must not wait for
    worker processes that take seconds to start (a kill meanwhile lost it). No worker is started here: the
    click is taken in on this process's intake threads."""
    from slack_app.dispatch import WorkerSpec

    config = parse_config({"sites": [{"name": "w", "hosts": ["w.example"], "layers": ["edge"]}],
                           "layers": [{"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:9"}]})
    handlers = StandInHandlers()
    dispatch = Dispatcher(handlers, workers=1, worker_spec=WorkerSpec(config=config, bot_token="xoxb-test"))
    try:
        dispatch.processes.warming = True  # as WorkerPools.warm_up leaves it until the intake workers answer
        dispatch.take_in(ApprovalClick(body={}, action={}))
        assert dispatch.wait_idle(10)
        assert handlers.done == [(ApprovalClick(body={}, action={}), "cachebot-intake")]
    finally:
        dispatch.close()


def test_worker_processes_run_each_event_once_and_reply(fake_slack, tmp_path: Path):
    config = parse_config({
        "sites": [{"name": "w", "hosts": ["w.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "approval": {"approvers": ["UALICE"]},
        "storage": {"sqlite_path": str(tmp_path / "state.sqlite")},
    })
    settings = SlackSettings(bot_token="xoxb-test", signing_secret=SECRET, app_token=None, api_url=fake_slack.api_url)
    front = build_front_end(config, settings, workers=1, worker_nice=0)
    server = SlackHTTPServer(front.app, port=0).start()
    try:
        sender = SlackSender(server.url + "/slack/events", SECRET)
        threads = []
        for n in range(3):
            ts = f"1850000000.00000{n}"
            payload = event_payload(mention("help", user="UBOB", channel="CWORK", ts=ts))
            assert sender.event({}, payload=payload)[0] == 200
            assert sender.event({}, payload=payload, retry_num=1)[0] == 200  # a Slack retry: no second run
            threads.append(ts)
        assert front.wait_idle(60)
        with front.agent.audit.engine.connect() as db:
            runs = dict(db.execute(select(audit_requests.c.thread_id, func.count())
                                   .group_by(audit_requests.c.thread_id)).all())
        assert runs == {f"CWORK:{ts}": 1 for ts in threads}
        for ts in threads:
            [reply] = fake_slack.in_thread("CWORK", ts)
            assert reply["updates"] >= 1 and "Looking at" not in (reply["text"] or "")  # the answer replaced it
    finally:
        server.stop()
        front.close()
        front.agent.close()


def test_a_dead_worker_is_replaced_and_events_keep_working(fake_slack, tmp_path: Path):
    import signal

    config = parse_config({
        "sites": [{"name": "w", "hosts": ["w.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "storage": {"sqlite_path": str(tmp_path / "state.sqlite")},
    })
    settings = SlackSettings(bot_token="xoxb-test", signing_secret=SECRET, app_token=None, api_url=fake_slack.api_url)
    front = build_front_end(config, settings, workers=1, worker_nice=0)
    server = SlackHTTPServer(front.app, port=0).start()
    try:
        pools = front.dispatch.processes
        for pool in (pools.intake, pools.runs):  # a worker killed as the OOM killer would
            os.kill(pool.submit(_ping).result(timeout=60), signal.SIGKILL)
        sender = SlackSender(server.url + "/slack/events", SECRET)
        payload = event_payload(mention("help", user="UBOB", channel="CWORK", ts="1850000001.000001"))
        assert sender.event({}, payload=payload)[0] == 200
        assert front.wait_idle(60)
        [reply] = fake_slack.in_thread("CWORK", "1850000001.000001")
        assert "Looking at" not in (reply["text"] or "")
    finally:
        server.stop()
        front.close()
        front.agent.close()


def test_without_a_choice_more_than_one_core_means_worker_processes():
    assert default_workers(1) == 0  # one core: a worker would only take turns with the app process
    assert default_workers(2) >= 1 and default_workers(64) >= 1


@pytest.mark.skipif(default_workers() == 0, reason="a one-core machine keeps the threads")
def test_the_default_front_end_answers_from_worker_processes(fake_slack, tmp_path: Path):
    """What `cachebot slack` runs when nobody passes --workers: the agent's work is in worker processes (acks
    never wait on a run's GIL), and every event still gets exactly one run and one answer in its thread."""
    config = parse_config({
        "sites": [{"name": "w", "hosts": ["w.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "storage": {"sqlite_path": str(tmp_path / "state.sqlite")},
    })
    settings = SlackSettings(bot_token="xoxb-test", signing_secret=SECRET, app_token=None, api_url=fake_slack.api_url)
    front = build_front_end(config, settings, worker_nice=0)
    server = SlackHTTPServer(front.app, port=0).start()
    try:
        assert front.dispatch.processes is not None
        runner_pids = {front.dispatch.processes.runs.submit(_ping).result(timeout=60) for _ in range(4)}
        assert os.getpid() not in runner_pids
        sender = SlackSender(server.url + "/slack/events", SECRET)
        threads = [f"1850000002.00000{n}" for n in range(2)]
        for ts in threads:
            payload = event_payload(mention("help", user="UBOB", channel="CWORK", ts=ts))
            assert sender.event({}, payload=payload)[0] == 200
        assert front.wait_idle(60)
        with front.agent.audit.engine.connect() as db:
            runs = dict(db.execute(select(audit_requests.c.thread_id, func.count())
                                   .group_by(audit_requests.c.thread_id)).all())
        assert runs == {f"CWORK:{ts}": 1 for ts in threads}
        for ts in threads:
            [reply] = fake_slack.in_thread("CWORK", ts)
            assert "Looking at" not in (reply["text"] or "")  # the answer replaced the first message
    finally:
        server.stop()
        front.close()
        front.agent.close()


APP_WITH_WORKERS = """
import sys
from agent.config import parse_config
from slack_app.dispatch import _ping
from slack_app.server import SlackSettings, build_front_end

config = parse_config({
    "sites": [{"name": "w", "hosts": ["w.example"], "layers": ["edge"]}],
    "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
    "storage": {"sqlite_path": sys.argv[1]},
})
settings = SlackSettings(bot_token="xoxb-test", signing_secret="s", app_token=None, api_url=sys.argv[2])
front = build_front_end(config, settings, workers=1, worker_nice=0)
pools = front.dispatch.processes
print(*(pool.submit(_ping).result(timeout=120) for pool in (pools.intake, pools.runs)), flush=True)
sys.stdin.read()  # until killed
"""


def test_workers_do_not_outlive_an_app_killed_with_sigkill(fake_slack, tmp_path: Path):
    """A worker left running after its app was killed would finish its run and answer, while a live replica's
    sweeper takes the same run over: two answers in one thread. The workers go with the app."""
    import signal
    import subprocess
    import sys

    app = subprocess.Popen([sys.executable, "-c", APP_WITH_WORKERS, str(tmp_path / "state.sqlite"), fake_slack.api_url],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in app.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "a worker outlived its killed app"
    finally:
        app.kill()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] not in "ZX"  # a zombie has exited: only its entry is left
    except FileNotFoundError:
        return False
