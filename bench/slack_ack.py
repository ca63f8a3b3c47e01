"""Ack latency of the Slack app in HTTP mode under load, and exactly-once runs.

The real app (Bolt + cachebot's listeners + claims + Agent on SQLite) on a loopback port, as ``cachebot slack
--http --workers W`` runs it (intake and agent runs in worker processes; ``--workers 0``: thread pools in the app
process), a loopback Slack Web API (tests/fakes/slack.py) in its own process (the real Slack is never in the
app's process, nor under its GIL), and N concurrent senders (processes, closed loop: each posts its next event
as soon as the last is acked) posting signed ``app_mention`` events for D seconds. Every fifth event is
delivered again as a Slack retry (same event_id, ``X-Slack-Retry-Num: 1``). Messages are "help", so no cache
is touched (the config's only layer is an unreachable address that is never used).

Prints p50/p99/max ack latency and checks that every distinct event produced exactly one agent run (counted
from the audit trail: one ``audit_requests`` row per ``Agent.ask``) and exactly one reply in its thread.

    python bench/slack_ack.py --seconds 10 [--senders 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from agent.storage.tables import requests as audit_requests  # noqa: E402
from agent.config import parse_config  # noqa: E402
from slack_app.server import SlackHTTPServer, SlackSettings, build_front_end  # noqa: E402
from tests.fakes.slack import FakeSlackProcess, SlackSender, event_payload, mention  # noqa: E402

SECRET = "bench-signing-secret"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def send(worker: int, url: str, start_at: float, seconds: float, queue) -> None:
    """One sender: signed app_mention events back to back; every fifth one delivered twice (a Slack retry)."""
    sender = SlackSender(url, SECRET)
    while time.time() < start_at:
        time.sleep(0.005)
    deadline = time.monotonic() + seconds
    latencies, failures, threads, retries, n = [], [], [], 0, 0
    while time.monotonic() < deadline:
        n += 1
        ts = f"{1900000000 + worker}.{n:06d}"
        payload = event_payload(mention("help", user=f"U{worker:04d}", channel="CBENCH", ts=ts))
        for retry in ([None, 1] if n % 5 == 0 else [None]):
            status, _, elapsed = sender.event({}, payload=payload, retry_num=retry)
            latencies.append(elapsed)
            retries += retry is not None
            if status != 200:
                failures.append(f"{ts}: HTTP {status}")
        threads.append(f"CBENCH:{ts}")
    queue.put({"latencies": latencies, "failures": failures, "threads": threads, "retries": retries})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the senders send (default 30)")
    parser.add_argument("--senders", type=int, default=20, help="concurrent senders (default 20)")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="how long to wait for runs to finish")
    parser.add_argument("--workers", type=int, default=2,
                        help="run worker processes, as `cachebot slack --workers` (default 2; 0: threads in-process)")
    parser.add_argument("--intake-workers", type=int, default=1, help="intake worker processes (default 1)")
    parser.add_argument("--worker-nice", type=int, default=None, help="niceness added to workers (default 19, as `cachebot slack`)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cachebot-bench-"))
    config = parse_config({
        "sites": [{"name": "bench", "hosts": ["bench.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "approval": {"approvers": ["UALICE"]},
        "storage": {"sqlite_path": str(workdir / "state.sqlite")},
    })
    fake = FakeSlackProcess()
    settings = SlackSettings(bot_token="xoxb-bench", signing_secret=SECRET, app_token=None, api_url=fake.api_url)
    front = build_front_end(config, settings, workers=args.workers, intake_processes=args.intake_workers,
                            worker_nice=args.worker_nice)
    agent = front.agent
    server = SlackHTTPServer(front.app, port=0).start()
    sender = SlackSender(server.url + "/slack/events", SECRET)

    # the senders are separate processes (Slack is not in the app's process, nor under its GIL)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0
    procs = [ctx.Process(target=send, args=(i, sender.url, start_at, args.seconds, queue)) for i in range(args.senders)]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)  # the app process: HTTP, Bolt, our listeners, queueing
    latencies: list[float] = []
    failures: list[str] = []
    threads_sent: list[str] = []
    retries = 0
    for _ in procs:
        part = queue.get(timeout=args.seconds + 120)
        latencies += part["latencies"]
        failures += part["failures"]
        threads_sent += part["threads"]
        retries += part["retries"]
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for p in procs:
        p.join()
    started = start_at - time.time() + time.monotonic()
    sent_for = args.seconds
    drained = front.wait_idle(args.drain_timeout)
    drain = time.monotonic() - started - sent_for

    server.stop()
    front.close()
    with agent.audit.engine.connect() as db:  # one audit request per Agent.ask, whichever process ran it
        runs: Counter[str] = Counter(dict(db.execute(
            select(audit_requests.c.thread_id, func.count()).group_by(audit_requests.c.thread_id)).all()))
    agent.close()
    replies = Counter(c.get("thread_ts") for c in fake.calls("chat.postMessage"))
    fake.close()

    events = len(threads_sent)
    wrong = {t: runs.get(t, 0) for t in threads_sent if runs.get(t, 0) != 1}
    extra = set(runs) - set(threads_sent)
    mode = (f"{args.workers} run + {args.intake_workers} intake worker processes" if args.workers
            else "thread pools in the app process")
    print(f"app: {mode}")
    print(f"senders {args.senders}, {sent_for:.1f} s: {len(latencies)} requests ({events} events + {retries} retries), "
          f"{len(latencies) / sent_for:.0f} req/s")
    print(f"ack latency: p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms,"
          f" max {max(latencies) * 1000:.1f} ms; non-200: {len(failures)}; over 3 s: "
          f"{sum(1 for x in latencies if x > 3)}")
    app_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    print(f"app process CPU while sending: {app_cpu:.1f} s ({app_cpu / max(1, len(latencies)) * 1000:.2f} ms per "
          f"request) on {os.cpu_count()} CPUs shared with the senders, the fake Slack and the workers")
    print(f"runs: {sum(runs.values())} for {events} events; drained in {drain:.1f} s after the senders stopped"
          f"{'' if drained else ' (NOT drained: timeout)'}")
    print(f"Slack replies: {sum(replies.values())} chat.postMessage, threads with != 1 reply: "
          f"{sum(1 for t in threads_sent if replies.get(t.split(':', 1)[1], 0) != 1)}")
    ok = drained and not failures and not wrong and not extra
    print("exactly one run per event: " + ("yes" if ok else f"NO ({len(wrong)} wrong, {len(extra)} unexpected)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
