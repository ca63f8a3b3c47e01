"""Two real Slack app replicas (``python -m agent.cli slack --http``) on one PostgreSQL database.

Sends N distinct signed ``app_mention`` events ("help": no cache is touched, so cache speed does not matter)
plus N duplicated deliveries (the same event id to the other replica, as a load balancer + Slack retry would),
all concurrently, spread over both replicas. Slack is the loopback fake (tests/fakes/slack.py) in this process.

Prints: runs started (must be exactly N), duplicates suppressed, p50/p99 time to first reply (request sent →
the fake Slack receiving the first chat.postMessage in that thread), and the checkpoint overhead per graph step
for SQLite and PostgreSQL (N small graph runs with each saver, ``durability="sync"``, minus an InMemorySaver
baseline, divided by the steps).

    python bench/replicas.py [--requests 200] [--senders 32]

Needs a PostgreSQL where the user may CREATE DATABASE ($CACHEBOT_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test); the bench database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import yaml  # noqa: E402

from bench.scratch_db import create_database, drop_database  # noqa: E402
from tests.fakes.slack import FakeSlack, SlackSender, event_payload, mention  # noqa: E402

SECRET = "bench-replicas-signing-secret"
CHANNEL = "CBENCH"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_replica(name: str, workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    config = {
        "sites": [{"name": "bench", "hosts": ["bench.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "approval": {"approvers": ["UALICE"]},
        "storage": {"sqlite_path": str(workdir / name / "state.sqlite")},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(workdir / f"{name}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "slack", "--http", "--host", "127.0.0.1",
                                "--port", str(port), "--config", str(path)], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"replica {name} exited; see {workdir / f'{name}.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"replica {name} did not start")


# --- checkpoint overhead --------------------------------------------------------------------------------------

class Small(TypedDict):
    n: int


def small_graph():
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(Small)
    for name in ("a", "b", "c"):
        graph.add_node(name, lambda state: {"n": state["n"] + 1})
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph, 3


def time_runs(saver, runs: int) -> float:
    graph, _ = small_graph()
    compiled = graph.compile(checkpointer=saver)
    for i in range(20):  # warm up (imports, connections, caches)
        compiled.invoke({"n": 0}, {"configurable": {"thread_id": f"warm{i}"}}, durability="sync")
    started = time.perf_counter()
    for i in range(runs):
        compiled.invoke({"n": 0}, {"configurable": {"thread_id": f"t{i}"}}, durability="sync")
    return time.perf_counter() - started


def checkpoint_overhead(database_url: str, workdir: Path, runs: int) -> dict[str, float]:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    _, steps = small_graph()
    baseline = time_runs(InMemorySaver(), runs)
    connection = sqlite3.connect(workdir / "bench-checkpoints.sqlite", check_same_thread=False)
    sqlite_time = time_runs(SqliteSaver(connection), runs)
    connection.close()
    kwargs = {"autocommit": True, "row_factory": dict_row, "prepare_threshold": None}
    with ConnectionPool(database_url, kwargs=kwargs, min_size=1, max_size=2, open=True) as pool:
        saver = PostgresSaver(pool)
        saver.setup()
        postgres_time = time_runs(saver, runs)
    per_step = runs * steps
    return {"memory": baseline / per_step * 1000, "sqlite": (sqlite_time - baseline) / per_step * 1000,
            "postgres": (postgres_time - baseline) / per_step * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="distinct requests (each delivered twice)")
    parser.add_argument("--senders", type=int, default=32, help="concurrent senders")
    parser.add_argument("--graph-runs", type=int, default=200, help="graph runs per checkpointer")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cachebot-bench-replicas-"))
    name, url = create_database()
    fake = FakeSlack()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CACHEBOT_CONFIG")}
    env |= {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.api_url,
            "CACHEBOT_DATABASE_URL": url}
    processes = []
    try:
        replicas = []
        for replica in ("a", "b"):
            process, port = start_replica(replica, workdir, env)
            processes.append(process)
            replicas.append(SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET))
        print(f"2 replicas up on one PostgreSQL database ({name})")

        deliveries = []
        for i in range(args.requests):
            ts = f"{1900000000 + i}.000100"
            payload = event_payload(mention("help", user=f"U{i:05d}", channel=CHANNEL, ts=ts))
            first = random.randrange(2)
            deliveries += [(ts, payload, replicas[first], None), (ts, payload, replicas[1 - first], 1)]
        random.shuffle(deliveries)
        sent_at: dict[str, float] = {}
        failures = []

        def deliver(item) -> None:
            ts, payload, sender, retry = item
            sent_at.setdefault(ts, time.time())
            status, _, _ = sender.event({}, payload=payload, retry_num=retry)
            if status != 200:
                failures.append(status)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.senders) as pool:
            list(pool.map(deliver, deliveries))
        sending = time.perf_counter() - started

        def first_replies() -> dict[str, float]:
            firsts: dict[str, float] = {}
            for call in fake.calls_to("chat.postMessage", channel=CHANNEL):
                ts = call.args.get("thread_ts")
                if ts in sent_at and ts not in firsts:
                    firsts[ts] = call.at
            return firsts

        deadline = time.monotonic() + 300
        while len(first_replies()) < args.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        firsts = first_replies()

        def runs_recorded() -> tuple[int, int]:
            with psycopg.connect(url, autocommit=True) as db:
                return db.execute("SELECT count(*), count(finished_at) FROM audit_requests").fetchone()

        # every run finished (its audit row has finished_at), then quiet for 2 s: late duplicates would show now
        while runs_recorded()[1] < args.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        with psycopg.connect(url, autocommit=True) as db:
            runs = db.execute("SELECT count(*) FROM audit_requests").fetchone()[0]
            per_thread = db.execute("SELECT count(*) FROM (SELECT thread_id FROM audit_requests GROUP BY thread_id "
                                    "HAVING count(*) > 1) d").fetchone()[0]
        posts = [c.args.get("thread_ts") for c in fake.calls_to("chat.postMessage", channel=CHANNEL)]
        latencies = [firsts[ts] - sent_at[ts] for ts in firsts]

        print(f"deliveries: {len(deliveries)} ({args.requests} distinct + {args.requests} duplicates) "
              f"in {sending:.1f}s, non-200: {len(failures)}")
        print(f"runs started: {runs} (floor: exactly {args.requests}){'  OK' if runs == args.requests else '  FAIL'}")
        print(f"duplicates suppressed: {len(deliveries) - runs}; threads with more than one run: {per_thread}; "
              f"threads with more than one reply: {sum(1 for n in __import__('collections').Counter(posts).values() if n > 1)}")
        if latencies:
            print(f"time to first reply: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                  f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                  f"({len(latencies)}/{args.requests} answered)")
        overhead = checkpoint_overhead(url, workdir, args.graph_runs)
        print(f"checkpoint overhead per graph step ({args.graph_runs} runs × 3 steps, durability=sync): "
              f"SQLite {overhead['sqlite']:.2f} ms, PostgreSQL {overhead['postgres']:.2f} ms "
              f"(InMemorySaver baseline {overhead['memory']:.2f} ms/step)")
        return 0 if runs == args.requests and len(latencies) == args.requests else 1
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        fake.close()
        drop_database(name)


if __name__ == "__main__":
    raise SystemExit(main())
