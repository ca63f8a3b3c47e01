"""Chaos: real ``cachebot slack --http`` replicas on one PostgreSQL (or one process on SQLite), the real demo
stack (origin + Redis app cache <- Varnish <- nginx), signed Slack events and clicks sent to replicas at random,
while a killer SIGKILLs a random replica at random moments and restarts it. Then the judge reads what happened
from the recorded Slack traffic, the audit trail and the caches themselves.

Traffic (each request in a thread of its own, with pages of its own, warmed in every cache and then edited, so
every layer serves the old version until it is purged): ``one`` (purge one URL), ``approve`` / ``deny`` /
``expire`` (purge 30 URLs: needs approval; an approver's click on a random replica, or no click at all), ``check``
(is one page stale?), ``help``. One event in ``--dup-every`` is delivered twice (a Slack retry, to a random
replica); one decision in ``--dup-every`` is clicked twice. A request that is not acked (the replica is dead, or
slower than Slack's 3 s) is retried like Slack does (``X-Slack-Retry-Num``), faster; a click that is not acked,
or acked with nothing happening after ``--reclick-after`` seconds, is clicked again, as a person would.

Phases in one run: a baseline without kills, then chaos with ``--kills`` kills spread over it, then a settle
period (no kills, every replica up) until every request has its final message or ``--settle`` seconds pass.

The judge (``judge``) checks, per request:
  answered    exactly one final message in its thread (``tests.fakes.slack.final_messages`` is the definition),
              no thread with two reports, no "Looking at…" left behind;
  outcome     the final outcome is the one asked for (report / denied / expired / answer);
  executed    every page × layer of a run that should purge was purged (counted at a counting proxy in front of
              Varnish and nginx, and from Redis' MONITOR), none of a denied / expired / check / help request was,
              none before its approval, none twice (page × layer, one decision);
  caches      what the edge serves at the end: the new version for executed requests, the old for the others;
  audit       one audit row per request, one decision per decided request, matching what Slack shows.
Floors: 100 % answered, 0 duplicates (final messages, reports, runs, purges), 0 lost (a run that should have
purged and did not, an acked click that never decided). Latency: request sent -> final message, p50/p99, baseline
vs chaos (approval requests include the approver's click; expiring ones are left out).

    python bench/chaos.py [--replicas 3] [--requests 200] [--kills 20]
    python bench/chaos.py --sqlite [--requests 60] [--kills 8]

Needs the demo stack's programs (varnishd, nginx, redis-server) and, for replicas, a PostgreSQL where the user may
CREATE DATABASE ($CACHEBOT_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test).
Exit status 0 only when every floor holds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.scratch_db import create_database, drop_database  # noqa: E402
from tests.fakes.slack import (  # noqa: E402
    FakeSlack, block_actions, event_payload, final_messages, is_report, mention, message_role, sign,
)

SECRET = "chaos-signing-secret"
CHANNEL = "CCHAOS"
APPROVER = "UAPPROVER"
HOST = "shop.example"
KINDS = ("one", "approve", "deny", "expire", "check", "help")
WEIGHTS = {"one": 35, "approve": 15, "deny": 8, "expire": 4, "check": 18, "help": 20}
APPROVAL_KINDS = ("approve", "deny", "expire")
PURGING_KINDS = ("one", "approve")
EXPECTED_OUTCOME = {"one": "report", "approve": "report", "deny": "denied", "expire": "expired",
                    "check": "answer", "help": "answer"}
SLACK_TIMEOUT = 3.0  # Slack gives an app 3 s to ack, then retries
SLACK_RETRY_PAUSES = (1.0, 15.0, 30.0, 60.0, 0.0)  # before each retry (the last: none, Slack gives up)
LEAKY_ENVIRONMENT = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CACHEBOT_DATABASE_URL", "CACHEBOT_CONFIG",
                     "CACHEBOT_LLM_MODEL")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- counting what reaches the caches ---------------------------------------------------------------------------

@dataclass
class Purge:
    layer: str
    path: str
    at: float
    how: str


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a replica killed mid-request resets its connection: expected here


class CountingProxy:
    """A loopback HTTP proxy in front of one cache: forwards every request as it is and records the purges
    (Varnish ``PURGE``/``PURGEKEYS``/``BAN``, nginx ``GET /purge/…``) by page path."""

    def __init__(self, layer: str, upstream: str, tag_paths: dict[str, str], purges: list[Purge],
                 lock: threading.Lock):
        self.layer, self.tag_paths, self.purges, self.lock = layer, tag_paths, purges, lock
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.record(self.command, self.path, self.headers)
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                except OSError:
                    self.send_error(502)
                    return
                finally:
                    connection.close()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PURGE = do_PURGEKEYS = do_BAN = do_DELETE = _forward

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def record(self, method: str, target: str, headers) -> None:
        now = time.time()
        path = urlsplit(target).path
        found: list[tuple[str, str]] = []
        if method == "PURGE":
            found.append((path, "url"))
        elif method == "PURGEKEYS":
            tags = (headers.get("xkey-purge") or headers.get("xkey-softpurge") or "").split()
            found += [(self.tag_paths.get(tag, f"tag:{tag}"), "tag") for tag in tags]
        elif method == "BAN":
            found.append((f"ban:{headers.get('X-Ban-Url')}", "ban"))
        elif method == "GET" and path.startswith("/purge/"):
            found.append((path[len("/purge"):], "url"))
        # nginx's purge drops only the variant its own headers name, so cachebot purges a page once per configured
        # variant (sites[].variants): those count apart, or a page purged once per variant would look purged twice
        encoding = (headers.get("Accept-Encoding") or "identity").strip().lower()
        layer = self.layer if method != "GET" or encoding == "identity" else f"{self.layer} [{encoding}]"
        with self.lock:
            self.purges += [Purge(layer, p, now, how) for p, how in found]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class RedisDeletes:
    """Every key deleted in the app cache, from Redis' MONITOR (the app-cache layer's own log)."""

    def __init__(self, redis_url: str, layer: str, key_prefix: str, purges: list[Purge], lock: threading.Lock):
        import redis

        # redis-py 8 reads with a 5 s timeout by default: MONITOR must wait as long as the run is quiet
        self.client = redis.Redis.from_url(redis_url, socket_timeout=3600)
        self.layer, self.prefix, self.purges, self.lock = layer, key_prefix, purges, lock
        self.ready = threading.Event()
        self.stopping = False
        self.error: str | None = None
        threading.Thread(target=self._watch, daemon=True).start()
        if not self.ready.wait(10):
            raise SystemExit("redis MONITOR did not start")

    def _watch(self) -> None:
        try:
            self._listen()
        except Exception as exc:  # noqa: BLE001 - the judge must know the count is incomplete
            self.error = repr(exc)

    def _listen(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            for command in monitor.listen():
                if self.stopping:
                    return
                words = str(command.get("command", "")).split(" ")
                if words[0].upper() not in ("DEL", "UNLINK"):
                    continue
                now = time.time()
                paths = [w[len(self.prefix):] for w in words[1:] if w.startswith(self.prefix)]
                with self.lock:
                    self.purges += [Purge(self.layer, p, now, "key") for p in paths]

    def close(self) -> None:
        self.stopping = True
        try:
            self.client.ping()  # wakes the monitor loop so it sees ``stopping``
        except Exception:
            pass


# --- the replicas ---------------------------------------------------------------------------------------------

@dataclass
class Replica:
    name: str
    port: int
    config: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    up: bool = False
    up_since: float = 0.0
    starts: list[float] = field(default_factory=list)  # seconds from spawn to /healthz answering

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self, timeout: float = 300) -> None:  # a loaded 2-core machine took 50-90 s
        spawned = time.monotonic()
        with open(self.log, "a") as out:
            out.write(f"\n=== start at {time.strftime('%H:%M:%S')} ===\n")
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "slack", "--http", "--host", "127.0.0.1", "--port",
                 str(self.port), "--config", str(self.config)], cwd=ROOT, env=self.env, stdout=out,
                stderr=subprocess.STDOUT)
        deadline = spawned + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"replica {self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    self.up, self.up_since = True, time.time()
                    self.starts.append(time.monotonic() - spawned)
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"replica {self.name} did not answer /healthz within {timeout}s; see {self.log}")

    def kill(self) -> None:
        self.up = False
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        self.up = False
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Killer:
    """SIGKILLs a random replica at random moments and starts it again at once (in the background, waiting for
    /healthz). With several replicas another one is always up when one is killed; with one, requests wait for
    the restart (Slack retries them)."""

    def __init__(self, replicas: list[Replica], interval: float, rng: random.Random):
        self.replicas, self.interval, self.rng = replicas, interval, rng
        self.kills: list[tuple[float, str]] = []
        self.stop_when = threading.Event()
        self.minimum = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.restarts: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self, minimum: int) -> None:
        self.minimum = minimum
        self.thread.start()

    def finish(self) -> None:
        """Stop after at least ``minimum`` kills; every replica is up again when this returns."""
        self.stop_when.set()
        self.thread.join()
        for restart in self.restarts:
            restart.join()
        if [e for e in self.errors if "gave up" in e]:
            raise SystemExit(f"a replica did not come back: {self.errors}")

    def _run(self) -> None:
        while not (self.stop_when.is_set() and len(self.kills) >= self.minimum):
            if [e for e in self.errors if "gave up" in e]:
                return
            time.sleep(self.rng.uniform(0.3, 1.7) * self.interval)
            # a replica serves a while between kills (a single process killed as soon as it is back is only down)
            up = [r for r in self.replicas if r.up and time.time() - r.up_since >= self.interval / 2]
            if not up or (len(self.replicas) > 1 and len(up) < 2):  # one replica always serves, unless it is alone
                time.sleep(0.2)
                continue
            victim = self.rng.choice(up)
            self.kills.append((time.time(), victim.name))
            victim.kill()
            restart = threading.Thread(target=self._restart, args=(victim,), daemon=True)
            restart.start()
            self.restarts.append(restart)

    def _restart(self, replica: Replica) -> None:
        """Start it again; one that does not answer /healthz in time is killed and started once more (left
        running unseen, it would serve while the harness thinks it is down, and the killer would wait for ever)."""
        time.sleep(self.rng.uniform(0, 0.5))
        for _ in range(3):
            try:
                replica.start()
                return
            except SystemExit as exc:
                replica.kill()
                self.errors.append(str(exc))
        self.errors.append(f"replica {replica.name} gave up after 3 starts")


# --- traffic --------------------------------------------------------------------------------------------------

@dataclass
class Request:
    rid: str
    kind: str
    phase: str
    ts: str
    pages: list[str]
    requester: str
    event_id: str = field(default_factory=lambda: "Ev" + uuid.uuid4().hex[:12].upper())
    duplicate: bool = False
    double_click: bool = False
    sent_at: float | None = None
    acked_at: float | None = None
    deliveries: list[tuple[float, str, int | str]] = field(default_factory=list)  # (when, replica, status)
    card_at: float | None = None
    clicks: list[tuple[float, str, int | str]] = field(default_factory=list)
    decided_at: float | None = None  # the first acked click that the card then showed as decided
    gave_up: str = ""

    @property
    def thread_ts(self) -> str:
        return self.ts

    @property
    def text(self) -> str:
        urls = [f"https://{HOST}{p}" for p in self.pages]
        if self.kind == "help":
            return "help"
        if self.kind == "check":
            return f"is {urls[0]} stale?"
        return "purge " + " ".join(urls)


def post(url: str, body: str, headers: dict[str, str], content_type: str,
         timeout: float = SLACK_TIMEOUT) -> int | str:
    """POST as Slack does; the status, or why there was none (``refused``, ``timeout``, ``reset``)."""
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={**headers, "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (TimeoutError, socket.timeout):
        return "timeout"
    except urllib.error.URLError as exc:
        return "timeout" if isinstance(exc.reason, (TimeoutError, socket.timeout)) else "refused"
    except (ConnectionError, http.client.HTTPException, OSError):
        return "reset"


class Traffic:
    def __init__(self, fake: FakeSlack, replicas: list[Replica], rng: random.Random, *, reclick_after: float,
                 card_wait: float):
        self.fake, self.replicas, self.rng = fake, replicas, rng
        self.reclick_after, self.card_wait = reclick_after, card_wait
        self.lock = threading.Lock()

    def pick(self) -> Replica:
        """Where the load balancer sends a request: a replica its health check (``/healthz``) saw up, or — one
        time in five, as it has not noticed yet — any replica, dead or alive."""
        with self.lock:
            live = [r for r in self.replicas if r.up]
            return self.rng.choice(live if live and self.rng.random() < 0.8 else self.replicas)

    def coin(self, p: float) -> bool:
        with self.lock:
            return self.rng.random() < p

    def deliver_event(self, request: Request, payload: dict, first_retry: int | None = None) -> bool:
        """Deliver until acked, as Slack does (a retry names its number); False when Slack would give up. Slack
        retries three times (at once, after 1 and after 5 minutes); here four times, after 1, 15, 30 and 60 s."""
        retry = first_retry
        body = json.dumps(payload)
        for pause in SLACK_RETRY_PAUSES:
            replica = self.pick()
            headers = sign(SECRET, body)
            if retry is not None:
                headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            status = post(replica.url, body, headers, "application/json")
            request.deliveries.append((time.time(), replica.name, status))
            if status == 200:
                return True
            retry = (retry or 0) + 1
            time.sleep(pause)
        return False

    def click(self, request: Request, card: dict, action_id: str) -> bool:
        value = next(e["value"] for b in card["blocks"] if b.get("type") == "actions"
                     for e in b.get("elements") or [] if e.get("action_id") == action_id)
        payload = block_actions(user=APPROVER, channel=CHANNEL, message_ts=card["ts"], thread_ts=request.ts,
                                action_id=action_id, value=value)
        body = "payload=" + quote(json.dumps(payload))

        def once() -> bool:
            replica = self.pick()
            status = post(replica.url, body, sign(SECRET, body), "application/x-www-form-urlencoded")
            request.clicks.append((time.time(), replica.name, status))
            return status == 200

        if request.double_click:
            with ThreadPoolExecutor(2) as pool:
                return any(list(pool.map(lambda _: once(), range(2))))
        return once()

    def open_card(self, request: Request) -> dict | None:
        for message in self.fake.in_thread(CHANNEL, request.ts):
            if message_role(message) == "card" and any(
                    e.get("action_id") == "cachebot_approve" for b in message.get("blocks") or []
                    if b.get("type") == "actions" for e in b.get("elements") or []):
                return message
        return None

    def run(self, request: Request) -> None:
        payload = event_payload(mention(request.text, user=request.requester, channel=CHANNEL, ts=request.ts),
                                event_id=request.event_id)
        request.sent_at = time.time()
        if not self.deliver_event(request, payload):
            request.gave_up = "event never acked"
            return
        request.acked_at = time.time()
        if request.duplicate:  # Slack delivers it again (it did not see the ack in time), to any replica
            time.sleep(self.rng.uniform(0, 1.0))
            self.deliver_event(request, payload, first_retry=1)
        if request.kind not in ("approve", "deny"):
            return
        action = "cachebot_approve" if request.kind == "approve" else "cachebot_deny"
        deadline = time.monotonic() + self.card_wait
        attempts = 0
        while time.monotonic() < deadline and attempts < 10:
            card = self.open_card(request)
            if card is None:
                if request.card_at is not None and attempts:  # it was open and now it is decided
                    request.decided_at = request.decided_at or time.time()
                    return
                time.sleep(0.2)
                continue
            if request.card_at is None:
                request.card_at = time.time()
                time.sleep(self.rng.uniform(0.2, 1.5))  # the approver reads it
            attempts += 1
            acked = self.click(request, card, action)
            wait_until = time.monotonic() + (self.reclick_after if acked else 5.0)  # a failed click: try later
            while time.monotonic() < wait_until:
                if self.open_card(request) is None:
                    request.decided_at = time.time()
                    return
                time.sleep(0.2)
        request.gave_up = "no approval card" if request.card_at is None else \
            f"card still open after {attempts} clicks"


def plan_requests(count: int, baseline: int, rng: random.Random, dup_every: int, expire_early: bool) -> list[Request]:
    kinds = [rng.choices(KINDS, weights=[WEIGHTS[k] for k in KINDS])[0] for _ in range(count)]
    if count >= len(KINDS):  # every kind at least once, at random places
        for kind, place in zip(KINDS, rng.sample(range(count), len(KINDS))):
            if kind not in kinds:
                kinds[place] = kind
    for i, kind in enumerate(kinds):  # expiring requests early in each phase, so they expire within the run
        if kind == "expire" and expire_early:
            j = rng.randrange(0, max(1, min(i + 1, count // 4)))
            kinds[i], kinds[j] = kinds[j], kinds[i]
    requests = []
    for i, kind in enumerate(kinds):
        rid = f"r{i:03d}"
        pages = {"one": 1, "check": 1, "help": 0}.get(kind, 30)
        requests.append(Request(
            rid=rid, kind=kind, phase="baseline" if i < baseline else "chaos", ts=f"{1800000000 + i}.{i:06d}",
            pages=[f"/chaos/{rid}/p{k}" for k in range(pages)], requester=f"U{i:05d}REQ",
            duplicate=rng.randrange(dup_every) == 0, double_click=rng.randrange(dup_every) == 0))
    return requests


# --- the judge --------------------------------------------------------------------------------------------------

@dataclass
class Failure:
    rid: str
    kind: str
    what: str
    detail: str


@dataclass
class Verdict:
    requests: int
    answered: int
    duplicates: int
    lost: int
    failures: list[Failure]
    figures: dict[str, Any]

    @property
    def floors_hold(self) -> bool:
        return self.answered == self.requests and self.duplicates == 0 and self.lost == 0 and not self.failures


DUPLICATE_CLASSES = ("two final messages", "two reports", "two runs", "two decisions", "page purged twice")
LOST_CLASSES = ("not executed", "click lost")


def message_writes(fake: FakeSlack) -> dict[str, list[tuple[float, dict]]]:
    """Every version of every message, by ts: (when it was written, the message as it read then)."""
    writes: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    for call in fake.calls_to("chat.postMessage") + fake.calls_to("chat.update"):
        ts = call.response.get("ts") if call.method == "chat.postMessage" else call.args.get("ts")
        if not call.response.get("ok") or not ts:
            continue
        writes[ts].append((call.at, {"text": call.args.get("text"), "blocks": call.args.get("blocks"),
                                     "metadata": call.args.get("metadata")}))
    for versions in writes.values():
        versions.sort(key=lambda v: v[0])
    return writes


def outcome_of(final: dict, decision: str | None, failed: bool) -> str:
    """What a final message says happened, for comparing with what was asked: its metadata's outcome when the
    app sends one, else the report's block, else what the audit trail recorded (denied, expired, failed)."""
    meta = (final.get("metadata") or {}).get("event_payload") or {}
    if meta.get("outcome"):
        return str(meta["outcome"])
    if is_report(final):
        return "report"
    if decision in ("denied", "expired"):
        return decision
    return "failed" if failed else "answer"


def audit_rows(database_url: str) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """audit_requests and audit_decisions rows by thread id."""
    queries = ("SELECT thread_id, status, outcome, intent FROM audit_requests",
               "SELECT thread_id, decision, status, decided_by FROM audit_decisions")
    if database_url.startswith("sqlite"):
        db = sqlite3.connect(database_url.split("///", 1)[1])
        db.row_factory = sqlite3.Row
        rows = [[dict(r) for r in db.execute(q)] for q in queries]
        db.close()
    else:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
            rows = [list(db.execute(q)) for q in queries]
    by_thread: tuple[dict[str, list[dict]], dict[str, list[dict]]] = (defaultdict(list), defaultdict(list))
    for table, found in zip(by_thread, rows):
        for row in found:
            table[row["thread_id"]].append(row)
    return by_thread


def edge_bodies(nginx_url: str, paths: list[str]) -> dict[str, str]:
    def fetch(path: str) -> tuple[str, str]:
        request = urllib.request.Request(nginx_url + path, headers={"Host": HOST, "Accept-Encoding": "identity"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return path, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return path, f"HTTP {exc.code}"
        except OSError as exc:
            return path, f"error {exc}"
    with ThreadPoolExecutor(16) as pool:
        return dict(pool.map(fetch, paths))


def judge(requests: list[Request], fake: FakeSlack, purges: list[Purge], database_url: str, nginx_url: str,
          layers: list[str], kills: list[tuple[float, str]]) -> Verdict:
    failures: list[Failure] = []
    writes = message_writes(fake)
    runs, decisions = audit_rows(database_url)
    purged: dict[tuple[str, str], list[Purge]] = defaultdict(list)
    for p in purges:
        purged[(p.path, p.layer)].append(p)
    served = edge_bodies(nginx_url, [p for r in requests for p in r.pages])
    latencies: dict[str, list[float]] = defaultdict(list)
    answered = 0
    outcomes: Counter[str] = Counter()

    def fail(r: Request, what: str, detail: str) -> None:
        failures.append(Failure(r.rid, r.kind, what, detail))

    for r in requests:
        thread_id = f"{CHANNEL}:{r.ts}"
        messages = fake.in_thread(CHANNEL, r.ts)
        finals = final_messages(messages)
        roles = Counter(message_role(m) for m in messages)
        decided = [d for d in decisions.get(thread_id, []) if d["status"] in ("approved", "denied", "expired")]
        statuses = [row["status"] for row in runs.get(thread_id, [])]
        decision = decided[0]["status"] if decided else next((s for s in statuses if s in ("denied", "expired")), None)
        failed = any(s in ("error", "interrupted") for s in statuses)
        if finals:
            answered += 1
            first = min(next((t for t, v in writes.get(m["ts"], []) if message_role(v) == "final"), float("inf"))
                        for m in finals)
            outcome = outcome_of(finals[-1], decision, failed)
            outcomes[f"{r.kind}->{outcome}"] += 1
            if r.sent_at and first != float("inf") and r.kind != "expire":
                latencies[r.phase].append(first - r.sent_at)
            if outcome != EXPECTED_OUTCOME[r.kind]:
                said = finals[-1].get("text") or json.dumps(finals[-1].get("blocks"))[:300]
                fail(r, "wrong outcome", f"asked for {EXPECTED_OUTCOME[r.kind]}, ended {outcome}: "
                                         f"{said[:300]!r}; card at {r.card_at}, "
                                         f"clicks {r.clicks}; {r.gave_up or 'traffic done'}")
        else:
            outcomes[f"{r.kind}->unanswered"] += 1
            fail(r, "unanswered", f"thread shows {dict(roles)}; event deliveries {r.deliveries}; clicks {r.clicks}; "
                                  f"{r.gave_up or 'traffic done'}; audit {runs.get(thread_id)}")
        if len(finals) > 1:
            fail(r, "two final messages", " | ".join((m.get("text") or "")[:80] for m in finals))
        if sum(1 for m in messages if is_report(m)) > 1:
            fail(r, "two reports", f"{sum(1 for m in messages if is_report(m))} reports in the thread")
        if roles["status"]:
            fail(r, "left 'Looking at…'", f"{roles['status']} status message(s) never replaced")
        if r.kind in ("approve", "deny") and roles["card"] and any(
                e.get("action_id") == "cachebot_approve" for m in messages for b in m.get("blocks") or []
                if b.get("type") == "actions" for e in b.get("elements") or []) and decision is not None:
            fail(r, "card still open", f"decided {decision} but the card still has its buttons")
        if len(runs.get(thread_id, [])) > 1:
            fail(r, "two runs", f"{len(runs[thread_id])} audit rows: {runs[thread_id]}")
        if len(decided) > 1:
            fail(r, "two decisions", f"{decided}")

        # what reached the caches
        counts = {(p, layer): len(purged.get((p, layer), [])) for p in r.pages for layer in layers}
        should_purge = r.kind in PURGING_KINDS
        missing = [k for k, n in counts.items() if n == 0]
        twice = {k: n for k, n in counts.items() if n > 1}
        if should_purge and missing and (r.kind == "one" or r.decided_at or decision == "approved"):
            fail(r, "not executed", f"{len(missing)} of {len(counts)} page × layer never purged, e.g. {missing[:3]}; "
                                    f"decision {decision}; final {bool(finals)}")
        if r.kind == "approve" and r.decided_at is None and decision is None and any(
                c[2] == 200 for c in r.clicks):
            fail(r, "click lost", f"clicks {r.clicks} were acked but the request was never decided")
        if not should_purge and any(counts.values()):
            fail(r, "executed without approval" if r.kind in APPROVAL_KINDS else "purged by a non-purge",
                 f"{sum(counts.values())} purges of {r.kind} request pages (decision {decision})")
        for (page, layer), n in twice.items():
            times = [p.at for p in purged[(page, layer)]]
            killed = [k for k in kills if times[0] - 1 <= k[0] <= times[-1]]
            between = f"kills in between: {killed}" if killed else "no kill in between"
            fail(r, "page purged twice", f"{page} on {layer}: {n} times over {times[-1] - times[0]:.1f}s; {between}")
        if r.kind == "approve" and decided:
            early = [p for k in counts for p in purged.get(k, [])
                     if p.at < min(c[0] for c in r.clicks or [(float("inf"), "", 0)]) - 0.5]
            if early:
                fail(r, "purged before approval", f"{len(early)} purges before the first click")

        # what the edge serves at the end
        want = "v2" if should_purge else "v1"
        wrong = [p for p in r.pages if f"chaos {p} {want}" not in served.get(p, "")]
        if wrong and (should_purge and finals and is_report(finals[-1]) or not should_purge):
            fail(r, "cache serves the wrong version", f"{len(wrong)} of {len(r.pages)} pages not at {want} on the "
                                                      f"edge, e.g. {wrong[0]}: {served.get(wrong[0], '')[-80:]!r}")

    duplicates = sum(1 for f in failures if f.what in DUPLICATE_CLASSES)
    lost = len({f.rid for f in failures if f.what in LOST_CLASSES or f.what == "unanswered"})
    figures = {"outcomes": dict(sorted(outcomes.items())), "latency": {
        phase: {"n": len(v), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": max(v) if v else None}
        for phase, v in latencies.items()},
        "purges": len(purges), "failure classes": dict(Counter(f.what for f in failures))}
    return Verdict(len(requests), answered, duplicates, lost, failures, figures)


# --- the run --------------------------------------------------------------------------------------------------

@dataclass
class Options:
    replicas: int = 3
    sqlite: bool = False
    requests: int = 200
    baseline: int = 40
    kills: int = 20
    rate: float = 0.5  # requests started per second
    dup_every: int = 5
    expiry_minutes: float = 3.0
    settle: float = 150.0
    reclick_after: float = 12.0
    card_wait: float = 180.0
    seed: int | None = None
    config_extra: dict[str, Any] = field(default_factory=dict)
    keep: bool = False
    quiet: bool = False


@dataclass
class Outcome:
    verdict: Verdict
    requests: list[Request]
    kills: list[tuple[float, str]]
    startups: list[float]
    workdir: Path


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def settle(fake: FakeSlack, requests: list[Request], deadline: float, *, expiring: bool) -> None:
    """Wait until every request (but those left to expire, unless ``expiring``) has a final message."""
    def waiting() -> int:
        return sum(1 for r in requests if (expiring or r.kind != "expire")
                   and not final_messages(fake.in_thread(CHANNEL, r.ts)))

    while time.time() < deadline and waiting():
        time.sleep(1.0)


def run(options: Options, stack=None, workdir: Path | None = None) -> Outcome:
    """One chaos run; ``stack`` (agent.demo.stack.Stack) is started here unless given (tests share theirs)."""
    from agent.demo.origin import APP_CACHE_PREFIX
    from agent.demo.stack import start_stack

    say = (lambda text: None) if options.quiet else log
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="cachebot-chaos-"))
    say(f"seed {seed}; work files in {workdir}")
    own_stack = stack is None
    stack = stack or start_stack(workdir / "stack")
    cleanups: list = []
    database = None
    try:
        requests = plan_requests(options.requests, options.baseline, rng, options.dup_every,
                                 expire_early=True)
        pages = [p for r in requests for p in r.pages]
        tag_paths = {p.strip("/").replace("/", "-"): p for p in pages}
        lock = threading.Lock()
        purges: list[Purge] = []

        # pages of their own, in every cache as v1, then changed to v2 at the origin
        stack.content.edit_many({p: f"chaos {p} v1" for p in pages})
        served = edge_bodies(stack.nginx_url, pages)
        for _ in range(3):  # set-up, not judged: a fresh stack under 16 fetches at once has answered one 503
            cold = [p for p in pages if "v1" not in served[p]]
            if not cold:
                break
            time.sleep(0.5)
            served.update(edge_bodies(stack.nginx_url, cold))
        cold = [p for p in pages if "v1" not in served[p]]
        if cold:
            raise SystemExit(f"{len(cold)} pages did not warm, e.g. {cold[0]}: {served[cold[0]][:200]}")
        stack.content.edit_many({p: f"chaos {p} v2" for p in pages})
        say(f"{len(pages)} pages warmed in every layer (v1) and changed at the origin (v2)")

        varnish = CountingProxy("varnish", stack.varnish_url, tag_paths, purges, lock)
        edge = CountingProxy("edge", stack.nginx_url, tag_paths, purges, lock)
        deletes = RedisDeletes(stack.redis_url, "appcache", APP_CACHE_PREFIX + HOST, purges, lock)
        cleanups += [varnish.close, edge.close, deletes.close]
        config = stack.config_dict()
        for layer in config["layers"]:
            layer["endpoint"] = {"varnish": varnish.url, "edge": edge.url}.get(layer["name"], layer["endpoint"])
        config["approval"] = {**config["approval"], "approvers": [APPROVER], "threshold": 20,
                              "expiry_minutes": options.expiry_minutes}
        fake = FakeSlack()
        cleanups.append(fake.close)
        env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENVIRONMENT}
        env |= {"SLACK_BOT_TOKEN": "xoxb-chaos", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.api_url,
                "PYTHONUNBUFFERED": "1"}
        if options.sqlite:
            database_url = f"sqlite:///{workdir / 'state' / 'audit.sqlite'}"
            config["storage"] = {"sqlite_path": str(workdir / "state" / "state.sqlite"), "database_url": database_url}
        else:
            database, database_url = create_database("cachebot_chaos")
            env["CACHEBOT_DATABASE_URL"] = database_url
            config["storage"] = {"sqlite_path": str(workdir / "unused.sqlite")}
        config = merge(config, options.config_extra)
        config_path = workdir / "cachebot.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        subprocess.run([sys.executable, "-m", "agent.cli", "db", "upgrade", "--config", str(config_path)],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        count = 1 if options.sqlite else options.replicas
        replicas = [Replica(chr(ord("a") + i), free_port(), config_path, workdir / f"replica-{chr(97 + i)}.log", env)
                    for i in range(count)]
        cleanups.append(lambda: [r.stop() for r in replicas])
        with ThreadPoolExecutor(len(replicas)) as pool:
            list(pool.map(Replica.start, replicas))
        say(f"{count} replica(s) up on {'SQLite' if options.sqlite else 'PostgreSQL'} "
            f"(start-up {max(r.starts[0] for r in replicas):.1f}s)")

        traffic = Traffic(fake, replicas, rng, reclick_after=options.reclick_after, card_wait=options.card_wait)
        chaos_count = options.requests - options.baseline
        killer = Killer(replicas, interval=max(0.5, chaos_count / options.rate / (options.kills + 1)), rng=rng)
        threads: list[threading.Thread] = []
        for i, request in enumerate(requests):
            if i == options.baseline:  # the baseline's answers come in before the first kill
                settle(fake, requests[:i], time.time() + options.settle, expiring=False)
                say(f"baseline done ({options.baseline} requests); chaos starts: {options.kills}+ kills")
                killer.start(options.kills)
            thread = threading.Thread(target=traffic.run, args=(request,), daemon=True)
            thread.start()
            threads.append(thread)
            time.sleep(rng.expovariate(options.rate))
        say("every request sent; the killer finishes its kills")
        if options.baseline >= options.requests:
            killer.start(options.kills)
        killer.finish()
        say(f"{len(killer.kills)} kills done; every replica up; waiting for answers")
        for thread in threads:
            thread.join(timeout=max(1.0, options.card_wait))

        expiring = [r for r in requests if r.kind == "expire" and r.sent_at]
        expiry_due = max((r.sent_at for r in expiring), default=0) + options.expiry_minutes * 60
        deadline = max(time.time() + options.settle, expiry_due + 30)

        settle(fake, requests, deadline, expiring=True)
        time.sleep(3.0)  # late duplicates would show now
        verdict = judge(requests, fake, purges, database_url, stack.nginx_url,
                        [layer["name"] for layer in config["layers"]], killer.kills)
        if deletes.error:  # the app-cache count is incomplete: nothing about it can be judged
            verdict.failures.append(Failure("-", "-", "harness", f"Redis MONITOR stopped: {deletes.error}"))
        verdict.figures["seed"] = seed
        verdict.figures["replica start-up"] = {"n": sum(len(r.starts) for r in replicas),
                                               "p50": percentile([s for r in replicas for s in r.starts], 0.5),
                                               "max": max(s for r in replicas for s in r.starts)}
        verdict.figures["tracebacks in replica logs"] = sum(r.log.read_text().count("Traceback") for r in replicas)
        return Outcome(verdict, requests, killer.kills, [s for r in replicas for s in r.starts], workdir)
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - cleaning up after a run: report, go on
                print(f"cleanup: {exc}", file=sys.stderr)
        if own_stack:
            stack.stop()
        if database and not options.keep:
            drop_database(database)
        elif database:
            say(f"kept the database {database}")
        if not options.keep and own_stack and not options.quiet:
            shutil.rmtree(workdir / "stack", ignore_errors=True)


def report(outcome: Outcome, title: str) -> None:
    v = outcome.verdict
    f = v.figures
    print(f"\n== {title} ==")
    startup = f["replica start-up"]
    print(f"requests {v.requests}, kills {len(outcome.kills)}, replica start-up p50 {startup['p50']:.1f}s "
          f"max {startup['max']:.1f}s, seed {f['seed']}")
    print(f"answered {v.answered}/{v.requests} ({100 * v.answered / v.requests:.1f} %, floor 100 %)"
          f"{'  OK' if v.answered == v.requests else '  FAIL'}")
    print(f"duplicates {v.duplicates} (floor 0){'  OK' if v.duplicates == 0 else '  FAIL'}")
    print(f"lost {v.lost} (floor 0){'  OK' if v.lost == 0 else '  FAIL'}")
    for phase in ("baseline", "chaos"):
        lat = f["latency"].get(phase)
        if lat and lat["n"]:
            print(f"request -> final message, {phase}: p50 {lat['p50']:.2f}s p99 {lat['p99']:.2f}s "
                  f"max {lat['max']:.2f}s (n={lat['n']})")
    base, chaos = f["latency"].get("baseline"), f["latency"].get("chaos")
    if base and chaos and base["n"] and chaos["n"]:
        print(f"chaos / baseline: p50 ×{chaos['p50'] / base['p50']:.2f}, p99 ×{chaos['p99'] / base['p99']:.2f}")
    print(f"outcomes: {f['outcomes']}")
    print(f"kills (time, replica): {[(round(t, 1), name) for t, name in outcome.kills]}")
    print(f"purges counted at the layers: {f['purges']}; tracebacks in replica logs: "
          f"{f['tracebacks in replica logs']}")
    print(f"failure classes: {f['failure classes'] or 'none'}")
    for failure in v.failures:
        print(f"  {failure.rid} [{failure.kind}] {failure.what}: {failure.detail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--sqlite", action="store_true", help="one process on SQLite, killed and restarted")
    parser.add_argument("--requests", type=int, default=None, help="default 200 (60 with --sqlite)")
    parser.add_argument("--baseline", type=int, default=None, help="requests before the killer starts (default 1/5)")
    parser.add_argument("--kills", type=int, default=None, help="default 20 (8 with --sqlite)")
    parser.add_argument("--rate", type=float, default=0.5, help="requests started per second")
    parser.add_argument("--dup-every", type=int, default=5)
    parser.add_argument("--expiry-minutes", type=float, default=3.0, help="approval expiry (expire kind waits it out)")
    parser.add_argument("--settle", type=float, default=150.0, help="seconds to wait for answers after the chaos")
    parser.add_argument("--reclick-after", type=float, default=12.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--config-extra", default="{}", help="JSON merged into the replicas' config")
    parser.add_argument("--keep", action="store_true", help="keep the work files (replica logs)")
    args = parser.parse_args()
    requests = args.requests or (60 if args.sqlite else 200)
    options = Options(replicas=args.replicas, sqlite=args.sqlite, requests=requests,
                      baseline=args.baseline if args.baseline is not None else requests // 5,
                      kills=args.kills if args.kills is not None else (8 if args.sqlite else 20), rate=args.rate,
                      dup_every=args.dup_every, expiry_minutes=args.expiry_minutes, settle=args.settle,
                      reclick_after=args.reclick_after, seed=args.seed, config_extra=json.loads(args.config_extra),
                      keep=args.keep)
    outcome = run(options)
    report(outcome, f"{'1 process on SQLite' if args.sqlite else f'{args.replicas} replicas on PostgreSQL'}")
    print(f"replica logs: {outcome.workdir}")
    return 0 if outcome.verdict.floors_hold else 1


if __name__ == "__main__":
    raise SystemExit(main())
