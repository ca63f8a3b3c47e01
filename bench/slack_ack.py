"""Ack latency of the Slack app in HTTP mode under load, and exactly-once runs.

The real app (Bolt + cachebot's listeners + claims + Agent on SQLite) on a loopback port, a loopback Slack Web API
(tests/fakes/slack.py), and N concurrent senders posting signed ``app_mention`` events for D seconds. Every
fifth event is delivered again as a Slack retry (same event_id, ``X-Slack-Retry-Num: 1``). Messages are "help",
so no cache is touched (the config's only layer is an unreachable address that is never used).

Prints p50/p99/max ack latency and checks that every distinct event produced exactly one agent run.

    python bench/slack_ack.py --seconds 10 [--senders 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import parse_config  # noqa: E402
from agent.runner import Agent  # noqa: E402
from slack_app.app import SlackFrontEnd, slack_context  # noqa: E402
from slack_app.server import SlackHTTPServer, make_client  # noqa: E402
from tests.fakes.slack import FakeSlack, SlackSender, event_payload, mention  # noqa: E402

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
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cachebot-bench-"))
    config = parse_config({
        "sites": [{"name": "bench", "hosts": ["bench.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "approval": {"approvers": ["UALICE"]},
        "storage": {"sqlite_path": str(workdir / "state.sqlite")},
    })
    fake = FakeSlack()
    client = make_client("xoxb-bench", fake.api_url)
    agent = Agent(config, context=slack_context(config, client))
    runs: Counter[str] = Counter()
    runs_lock = threading.Lock()
    real_ask = agent.ask

    def counting_ask(message, **kwargs):
        with runs_lock:
            runs[kwargs["thread_id"]] += 1
        return real_ask(message, **kwargs)

    agent.ask = counting_ask  # type: ignore[method-assign]
    front = SlackFrontEnd(agent, client, signing_secret=SECRET)
    server = SlackHTTPServer(front.app, port=0).start()
    sender = SlackSender(server.url + "/slack/events", SECRET)

    # the senders are separate processes (Slack is not in the app's process, nor under its GIL)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0
    procs = [ctx.Process(target=send, args=(i, sender.url, start_at, args.seconds, queue)) for i in range(args.senders)]
    for p in procs:
        p.start()
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
    for p in procs:
        p.join()
    started = start_at - time.time() + time.monotonic()
    sent_for = args.seconds
    drained = front.wait_idle(args.drain_timeout)
    drain = time.monotonic() - started - sent_for

    server.stop()
    front.close()
    agent.close()
    fake.close()

    events = len(threads_sent)
    wrong = {t: runs.get(t, 0) for t in threads_sent if runs.get(t, 0) != 1}
    extra = set(runs) - set(threads_sent)
    replies = Counter(c.args.get("thread_ts") for c in fake.calls_to("chat.postMessage"))
    print(f"senders {args.senders}, {sent_for:.1f} s: {len(latencies)} requests ({events} events + {retries} retries), "
          f"{len(latencies) / sent_for:.0f} req/s")
    print(f"ack latency: p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms,"
          f" max {max(latencies) * 1000:.1f} ms; non-200: {len(failures)}; over 3 s: "
          f"{sum(1 for x in latencies if x > 3)}")
    print(f"runs: {sum(runs.values())} for {events} events; drained in {drain:.1f} s after the senders stopped"
          f"{'' if drained else ' (NOT drained: timeout)'}")
    print(f"Slack replies: {sum(replies.values())} chat.postMessage, threads with != 1 reply: "
          f"{sum(1 for t in threads_sent if replies.get(t.split(':', 1)[1], 0) != 1)}")
    ok = drained and not failures and not wrong and not extra
    print("exactly one run per event: " + ("yes" if ok else f"NO ({len(wrong)} wrong, {len(extra)} unexpected)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
