"""Two REAL app processes (``python -m agent.cli slack --http``) on one fresh PostgreSQL database, behind no
load balancer: the tests deliver to each replica directly, as a balancer (or Slack retrying) would.

The cache stack is the real one (Redis app cache, Varnish, nginx) plus a ``webhook`` layer pointing at a
loopback hook in this process that counts every PURGE per path and can hold requests (``gate``) so a run is
caught in the middle of execute. Slack is the loopback fake (``SLACK_API_URL``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
import yaml

from agent.words import RESTARTED
from tests.conftest import LEAKY_ENVIRONMENT, _create_database, _drop_database, _postgres_admin_url, _with_database
from tests.fakes.slack import FakeSlack, SlackSender, block_actions, event_payload, is_report, mention

ROOT = Path(__file__).resolve().parents[2]
SECRET = "replica-signing-secret-0123456789"
CHANNEL = "CWEBTEAM"
BIG = "purge " + " ".join(f"<https://shop.example/products/{c}/{p}>" for c, p in
                          [("shoes", "runner"), ("shoes", "hiker"), ("shoes", "loafer"), ("hats", "beanie")])
SMALL = "these still show the old price: <https://shop.example/pricing>"


class Hook:
    """The loopback invalidation hook: counts PURGEs per path; while ``gate`` is clear, requests wait."""

    def __init__(self) -> None:
        self.purges: Counter[str] = Counter()
        self.arrived = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PURGE(self) -> None:  # noqa: N802
                hook.arrived.set()
                hook.gate.wait(60)
                hook.purges[self.path.removeprefix("/purge")] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, name: str, config: Path, env: dict[str, str], logs: Path):
        self.name, self.config, self.env, self.logs = name, config, env, logs
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.sender = SlackSender(f"http://127.0.0.1:{self.port}/slack/events", SECRET)

    def start(self) -> Replica:
        log = open(self.logs / f"{self.name}.log", "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "slack", "--http", "--host", "127.0.0.1", "--port", str(self.port),
             "--config", str(self.config)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {(self.logs / f'{self.name}.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer /healthz")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def cluster(fresh_stack, tmp_path):
    """(start_replica, fake Slack, hook, database URL): replicas share one fresh PostgreSQL database."""
    name = _create_database("cachebot_replicas")
    url = _with_database(_postgres_admin_url(), name)
    fake, hook = FakeSlack(), Hook()
    data = fresh_stack.config_dict()
    data["layers"].append({"name": "hook", "kind": "webhook", "endpoint": hook.url, "timeout_seconds": 60,
                           "retries": 0, "options": {"method": "PURGE", "url_template": "{endpoint}/purge{path}",
                                                     "expected_status": [200]}})
    data["sites"][0]["layers"].append("hook")
    data["approval"] = {**data["approval"], "threshold": 10, "approvers": ["UALICE"], "expiry_minutes": 30}
    data["recovery"] = {"sweep_seconds": 0.5, "lease_seconds": 3}  # a dead peer's runs taken over in seconds
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENVIRONMENT}
    env |= {"SLACK_BOT_TOKEN": "xoxb-replica-test", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.api_url,
            "CACHEBOT_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    replicas: list[Replica] = []

    def start(name: str, **sections: dict) -> Replica:
        # each replica its own local directory (as on another machine): only PostgreSQL is shared
        own = {**data, "storage": {"sqlite_path": str(tmp_path / name / "state.sqlite")}}
        for key, value in sections.items():  # config sections merged over the cluster's
            own[key] = {**own.get(key, {}), **value}
        own_config = tmp_path / f"{name}.yaml"
        own_config.write_text(yaml.safe_dump(own, sort_keys=False))
        replica = Replica(name, own_config, env, tmp_path)
        replicas.append(replica.start())
        return replica

    try:
        yield start, fake, hook, url
    finally:
        for replica in replicas:
            replica.stop()
        hook.close()
        fake.close()
        _drop_database(name)


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(sql).fetchall()


def together(*calls) -> list:
    """Run the calls at the same moment (a barrier), return their results."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def approval_message(fake: FakeSlack, thread_ts: str) -> dict:
    def found():
        return [m for m in fake.in_thread(CHANNEL, thread_ts)
                if any(b.get("type") == "actions" for b in m.get("blocks") or [])]

    return fake.wait_for(found, timeout=60, what="the approval message")[0]


def click(message: dict, thread_ts: str, user: str = "UALICE") -> dict:
    element = next(e for b in message["blocks"] if b.get("type") == "actions" for e in b["elements"]
                   if e["action_id"] == "cachebot_approve")
    return block_actions(user=user, channel=CHANNEL, message_ts=message["ts"], thread_ts=thread_ts,
                         action_id=element["action_id"], value=element["value"])


def reports(fake: FakeSlack, thread_ts: str) -> list[dict]:
    return [m for m in fake.in_thread(CHANNEL, thread_ts) if is_report(m)]


def test_same_event_and_same_click_on_two_replicas_make_one_run_and_one_purge_per_item(cluster):
    start, fake, hook, url = cluster
    a, b = start("a"), start("b")
    thread_ts = "1800000101.000200"
    body = event_payload(mention(BIG, user="UBOB", channel=CHANNEL, ts=thread_ts))
    statuses = together(lambda: a.sender.event({}, payload=body), lambda: b.sender.event({}, payload=body))
    assert [s[0] for s in statuses] == [200, 200]
    message = approval_message(fake, thread_ts)
    payload = click(message, thread_ts)
    statuses = together(lambda: a.sender.interaction(payload), lambda: b.sender.interaction(payload))
    assert [s[0] for s in statuses] == [200, 200]
    fake.wait_for(lambda: reports(fake, thread_ts), timeout=90, what="the report")
    time.sleep(1.5)  # time for a second (wrong) run or report to show up

    assert len(reports(fake, thread_ts)) == 1
    assert query(url, "SELECT count(*) FROM audit_requests") == [(1,)]  # one run
    assert query(url, "SELECT count(*), min(status) FROM audit_decisions") == [(1, "approved")]  # one decision
    [(items,)] = query(url, "SELECT count(*) FROM audit_plan_items")
    layers = query(url, "SELECT layer, count(*), count(DISTINCT url) FROM audit_results GROUP BY layer ORDER BY layer")
    assert [layer for layer, *_ in layers] == ["appcache", "edge", "hook", "varnish"]
    assert all(n == distinct == items // 4 for _, n, distinct in layers)  # one result per page × layer
    assert len(hook.purges) == items // 4 and set(hook.purges.values()) == {1}  # one PURGE per page at the hook
    loser = fake.calls_to("chat.postEphemeral", user="UALICE")
    assert len(loser) == 1 and ("deciding" in loser[0].args["text"] or "already approved" in loser[0].args["text"])
    assert query(url, "SELECT count(*) FROM cachebot_runs WHERE status <> 'finished'") == [(0,)]


def test_kill_9_between_request_and_click_and_during_execution(cluster):
    start, fake, hook, url = cluster
    a, b = start("a"), start("b")

    # 1. the approval is asked on A; A dies; the click reaches B, which decides and purges
    thread_ts = "1800000201.000200"
    assert a.sender.event(mention(BIG, user="UBOB", channel=CHANNEL, ts=thread_ts))[0] == 200
    message = approval_message(fake, thread_ts)
    a.kill9()
    assert b.sender.interaction(click(message, thread_ts))[0] == 200
    [report] = fake.wait_for(lambda: reports(fake, thread_ts), timeout=90, what="the report from B")
    assert "approved" in json.dumps(fake.messages[message["ts"]]).lower()  # the approval message was edited
    assert set(hook.purges.values()) == {1}

    # 2. B dies in the middle of execute (the hook holds its PURGEs); a restarted A finishes the run
    hook.purges.clear()
    hook.arrived.clear()
    hook.gate.clear()
    thread_ts = "1800000202.000200"
    assert b.sender.event(mention(SMALL, user="UBOB", channel=CHANNEL, ts=thread_ts))[0] == 200
    assert hook.arrived.wait(60), "the run never reached the hook"
    assert query(url, "SELECT thread_id, status FROM cachebot_runs WHERE status <> 'finished'") == [(f"{CHANNEL}:{thread_ts}", "executing")]
    b.kill9()
    hook.gate.set()
    start("a-restarted")  # recovers on start
    fake.wait_for(lambda: reports(fake, thread_ts), timeout=90, what="the report after recovery")
    texts = [m["text"] or "" for m in fake.in_thread(CHANNEL, thread_ts)]
    assert sum(t.startswith(RESTARTED) for t in texts) == 1
    [(status, outcome)] = query(url, f"SELECT status, outcome FROM audit_requests WHERE thread_id = '{CHANNEL}:{thread_ts}'")
    assert status == "done" and outcome is not None
    assert query(url, "SELECT count(*) FROM cachebot_runs WHERE status <> 'finished'") == [(0,)]
    assert set(hook.purges) == {"/pricing", "/"}  # every hook purge was sent (again) by the recovery


def test_a_live_replica_takes_over_a_killed_peers_run_without_any_restart(cluster):
    start, fake, hook, url = cluster
    a, b = start("a"), start("b")
    hook.gate.clear()
    thread_ts = "1800000301.000200"
    assert b.sender.event(mention(SMALL, user="UBOB", channel=CHANNEL, ts=thread_ts))[0] == 200
    assert hook.arrived.wait(60), "the run never reached the hook"
    [(status,)] = query(url, f"SELECT status FROM cachebot_runs WHERE thread_id = '{CHANNEL}:{thread_ts}'")
    assert status == "executing"
    b.kill9()
    hook.gate.set()
    # nobody restarts anything: A's sweeper sees B's lease stop beating and carries the run on
    fake.wait_for(lambda: reports(fake, thread_ts), timeout=90, what="the report from the live replica")
    time.sleep(1.5)  # time for a second (wrong) report or notice to show up
    texts = [m["text"] or "" for m in fake.in_thread(CHANNEL, thread_ts)]
    assert len(reports(fake, thread_ts)) == 1 and sum(t.startswith(RESTARTED) for t in texts) == 1
    assert not any(t.startswith("Looking at") for t in texts)
    [(status, takeovers, told)] = query(url, "SELECT status, takeovers, told FROM cachebot_runs "
                                             f"WHERE thread_id = '{CHANNEL}:{thread_ts}'")
    assert (status, takeovers, told) == ("finished", 1, True)
    [(request_status,)] = query(url, f"SELECT status FROM audit_requests WHERE thread_id = '{CHANNEL}:{thread_ts}'")
    assert request_status == "done"
    assert set(hook.purges) == {"/pricing", "/"}
    assert a.process.poll() is None


def test_an_approval_nobody_decides_expires_once_across_two_replicas(cluster):
    """Both replicas sweep (every 0.5 s here); the approval expires after 6 s: one of them expires it, its card
    gets Request again, the requester is told once, nothing is purged."""
    start, fake, hook, url = cluster
    fast = {"approval": {"expiry_minutes": 0.1}, "recovery": {"sweep_seconds": 0.5}}
    a, _ = start("a", **fast), start("b", **fast)
    thread_ts = "1800000301.000200"
    assert a.sender.event(mention(BIG, user="UBOB", channel=CHANNEL, ts=thread_ts))[0] == 200
    card = approval_message(fake, thread_ts)

    def notices() -> list[dict]:
        return [m for m in fake.in_thread(CHANNEL, thread_ts) if "nobody approved or denied" in (m["text"] or "")]

    fake.wait_for(notices, timeout=90, what="the expiry notice")
    time.sleep(2)  # four more sweeps on each replica: time for a second (wrong) notice to show up
    assert len(notices()) == 1
    buttons = [e["action_id"] for b in fake.messages[card["ts"]]["blocks"] if b.get("type") == "actions"
               for e in b["elements"]]
    assert buttons == ["cachebot_request_again"]
    assert query(url, "SELECT decided_by, status FROM audit_decisions") == [("cachebot", "expired")]
    assert query(url, "SELECT status FROM audit_requests") == [("expired",)]
    assert not hook.purges
