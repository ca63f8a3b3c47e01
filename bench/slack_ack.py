"""Slack acks and first replies while a big purge runs in the app, in the default mode and the old one.

The real app (Bolt + cachebot's listeners + claims + Agent on SQLite) on a loopback port, as ``cachebot slack
--http`` runs it, a loopback Slack Web API (tests/fakes/slack.py) and a Fastly-shaped loopback API that adds
``--latency`` to every request, each in its own process (neither is ever in the app's process, nor under its
GIL). Then:

1. one mention asks to purge ``--urls`` pages (5,000: no approval needed in this config); once its purges are
   going out (the Fastly fake has seen the first ones),
2. N senders (processes) send, for D seconds, a stream of ``help`` mentions, each followed by a click on Deny
   in that mention's thread (a click on a card with nothing pending: ack, claim, "Nothing to deny" to the
   clicker), one pair every ``--interval`` seconds each (20 senders every 2 s: 10 mentions and 10 clicks a
   second, a very busy workspace). Every fifth mention is delivered again as a Slack retry (same event_id,
   ``X-Slack-Retry-Num: 1``).

Printed per mode: ack latency (p50/p99/max; mentions and clicks), the time from each mention to the first
message in its thread (p50/p99: what the person sees first), whether the big purge was still going when the
stream ended, and the checks: one agent run per mention and exactly one message in its thread, the big run
finished with every URL purged once. Two modes in the same run: ``threads`` (intake and runs on thread pools in
the app process: the default until now, ``--workers 0``) is the baseline; ``default`` is what ``cachebot slack``
picks with no flag (``slack_app.dispatch.default_workers``: worker processes on more than one core).

    python bench/slack_ack.py [--seconds 10] [--senders 20] [--interval 2] [--urls 5000] [--modes threads,default]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from agent.config import parse_config  # noqa: E402
from agent.storage.tables import requests as audit_requests  # noqa: E402
from bench.purge_throughput import RemoteFake  # noqa: E402
from slack_app.blocks import DENY_ACTION  # noqa: E402
from slack_app.dispatch import default_workers  # noqa: E402
from slack_app.server import SlackHTTPServer, SlackSettings, build_front_end  # noqa: E402
from tests.fakes.slack import FakeSlackProcess, SlackSender, block_actions, event_payload, mention  # noqa: E402

SECRET = "bench-signing-secret"
CHANNEL = "CBENCH"
BIG_TS = "1800000000.000001"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def send(worker: int, url: str, ready, go, seconds: float, interval: float, queue) -> None:
    """One sender: a help mention, then a click on Deny in its thread; again every ``interval`` seconds (or as
    soon as both are acked, if that is later), until the time is up. Starts when ``go`` is set."""
    import json

    sender = SlackSender(url, SECRET)
    ready.release()
    go.wait()
    time.sleep(worker * interval / 20)  # spread out, not all senders in the same millisecond
    deadline = time.monotonic() + seconds
    acks = {"mention": [], "click": []}
    failures, mentions, retries, n = [], [], 0, 0
    while time.monotonic() < deadline:
        n += 1
        next_at = time.monotonic() + interval  # an open stream: its pace does not follow the acks
        ts = f"{1900000000 + worker}.{n:06d}"
        payload = event_payload(mention("help", user=f"U{worker:04d}", channel=CHANNEL, ts=ts))
        sent_at = time.time()
        for retry in ([None, 1] if n % 5 == 0 else [None]):
            status, _, elapsed = sender.event({}, payload=payload, retry_num=retry)
            acks["mention"].append(elapsed)
            retries += retry is not None
            if status != 200:
                failures.append(f"{ts}: HTTP {status}")
        mentions.append((ts, sent_at))
        value = json.dumps({"run": f"{CHANNEL}:{ts}", "interrupt": f"bench-{worker}-{n}"})
        click = block_actions(user=f"U{worker:04d}", channel=CHANNEL, message_ts=ts, thread_ts=ts,
                              action_id=DENY_ACTION, value=value)
        status, _, elapsed = sender.interaction(click)
        acks["click"].append(elapsed)
        if status != 200:
            failures.append(f"click in {ts}: HTTP {status}")
        time.sleep(max(0.0, next_at - time.monotonic()))
    queue.put({"acks": acks, "failures": failures, "mentions": mentions, "retries": retries})


def bench_config(workdir: Path, fastly: RemoteFake, urls: int):
    return parse_config({
        "sites": [{"name": "bench", "hosts": ["bench.example"], "layers": ["cdn"], "discover_tags": False}],
        "layers": [{"name": "cdn", "kind": "fastly", "endpoint": fastly.url, "concurrency": 16,
                    "credentials": {"api_key": fastly.token}, "options": {"service_id": fastly.zone_or_service}}],
        "approval": {"approvers": ["UALICE"], "threshold": urls + 1},
        "limits": {"max_urls_per_request": urls, "deadline_seconds": 900},
        "storage": {"sqlite_path": str(workdir / "state.sqlite")},
    })


def run_mode(mode: str, args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"cachebot-bench-{mode}-"))
    fastly = RemoteFake("fastly", args.latency)
    fake = FakeSlackProcess()
    config = bench_config(workdir, fastly, args.urls)
    settings = SlackSettings(bot_token="xoxb-bench", signing_secret=SECRET, app_token=None, api_url=fake.api_url)
    workers = 0 if mode == "threads" else None  # None: what `cachebot slack` picks without --workers
    front = build_front_end(config, settings, workers=workers)
    agent = front.agent
    server = SlackHTTPServer(front.app, port=0).start()
    url = server.url + "/slack/events"
    ctx = multiprocessing.get_context("spawn")
    queue, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=send, args=(i, url, ready, go, args.seconds, args.interval, queue))
             for i in range(args.senders)]
    for p in procs:
        p.start()
    for _ in procs:  # their imports done before the big purge starts, so the stream overlaps it
        ready.acquire(timeout=300)
    try:
        # the big run: one mention with every URL
        links = " ".join(f"https://bench.example/big/page-{i}" for i in range(args.urls))
        status, _, big_ack = SlackSender(url, SECRET).event(
            {}, payload=event_payload(mention(f"purge {links}", user="UBIG", channel=CHANNEL, ts=BIG_TS)))
        assert status == 200, f"the big mention was answered HTTP {status}"
        waited = time.monotonic()
        while fastly.ask("requests") == 0:  # understood, planned, and now purging
            if time.monotonic() - waited > args.drain_timeout:
                raise SystemExit("the big purge never started")
            time.sleep(0.05)
        purging_after = time.monotonic() - waited

        go.set()
        acks: dict[str, list[float]] = {"mention": [], "click": []}
        failures, mentions, retries = [], [], 0
        for _ in procs:
            part = queue.get(timeout=args.seconds + 300)
            for kind in acks:
                acks[kind] += part["acks"][kind]
            failures += part["failures"]
            mentions += part["mentions"]
            retries += part["retries"]
        for p in procs:
            p.join()
        purged_when_stream_ended = fastly.ask("requests")
        stream_done = time.monotonic()
        drained = front.wait_idle(args.drain_timeout)
        drain = time.monotonic() - stream_done
    finally:
        server.stop()
        front.close()
    with agent.audit.engine.connect() as db:  # one audit request per Agent.ask, whichever process ran it
        runs: Counter[str] = Counter(dict(db.execute(
            select(audit_requests.c.thread_id, func.count()).group_by(audit_requests.c.thread_id)).all()))
    agent.close()
    posted = fake.calls_at("chat.postMessage")
    fake.close()
    purged = Counter(fastly.ask("purged"))
    fastly.close()

    first_message: dict[str, float] = {}
    per_thread: Counter[str] = Counter()
    for call, at in posted:
        thread = call.get("thread_ts")
        per_thread[thread] += 1
        first_message[thread] = min(at, first_message.get(thread, at))
    to_first = [first_message[ts] - sent_at for ts, sent_at in mentions if ts in first_message]
    wrong_runs = [ts for ts, _ in mentions if runs.get(f"{CHANNEL}:{ts}", 0) != 1]
    wrong_replies = [ts for ts, _ in mentions if per_thread.get(ts, 0) != 1]
    # (a URL sent twice is a retry after a slow answer on a loaded machine: counted, not a failure)
    big_ok = runs.get(f"{CHANNEL}:{BIG_TS}") == 1 and len(purged) == args.urls
    all_acks = acks["mention"] + acks["click"]
    return {
        "mode": mode, "workers": 0 if workers == 0 else default_workers(), "big_ack": big_ack,
        "purging_after": purging_after, "acks": acks, "all": all_acks, "to_first": to_first,
        "mentions": len(mentions), "retries": retries, "failures": failures,
        "overlapped": purged_when_stream_ended < args.urls, "purged_when_stream_ended": purged_when_stream_ended,
        "drain": drain, "drained": drained, "wrong_runs": wrong_runs, "wrong_replies": wrong_replies,
        "big_ok": big_ok, "missing_first": len(mentions) - len(to_first),
        "big_runs": runs.get(f"{CHANNEL}:{BIG_TS}", 0), "big_purged": len(purged),
        "big_twice": sum(1 for n in purged.values() if n > 1),
    }


def report(r: dict, args) -> None:
    ms = 1000
    how = ("thread pools in the app process (--workers 0; the default until now)" if r["mode"] == "threads"
           else f"the default: {r['workers']} run worker processes + 1 intake" if r["workers"]
           else "the default: thread pools (one core)")
    print(f"== {r['mode']}: {how}")
    print(f"big purge: {args.urls} URLs, acked in {r['big_ack'] * ms:.0f} ms, purging after {r['purging_after']:.1f} s;"
          f" {'still purging' if r['overlapped'] else 'FINISHED'} when the stream ended "
          f"({r['purged_when_stream_ended']} of {args.urls} sent)")
    print(f"stream: {args.senders} senders, each a mention and a click every {args.interval:g} s for "
          f"{args.seconds:.0f} s: {r['mentions']} mentions (+{r['retries']} retries),"
          f" {len(r['acks']['click'])} clicks")
    for name, values in (("ack, all", r["all"]), ("ack, mentions", r["acks"]["mention"]),
                         ("ack, clicks", r["acks"]["click"])):
        print(f"{name:26s} p50 {statistics.median(values) * ms:7.1f} ms   p99 {percentile(values, 0.99) * ms:7.1f} ms"
              f"   max {max(values) * ms:7.1f} ms")
    first = r["to_first"]
    print(f"{'event → first message':26s} p50 {statistics.median(first) * ms:7.1f} ms   p99 "
          f"{percentile(first, 0.99) * ms:7.1f} ms   max {max(first) * ms:7.1f} ms")
    ok = (r["drained"] and not r["failures"] and not r["wrong_runs"] and not r["wrong_replies"] and r["big_ok"]
          and not r["missing_first"])
    print(f"checks: non-200 {len(r['failures'])}; mentions without exactly one run {len(r['wrong_runs'])}, without "
          f"exactly one message in the thread {len(r['wrong_replies'])}; big run once, every URL purged: "
          f"{'yes' if r['big_ok'] else 'NO'} ({r['big_runs']} run, {r['big_purged']} URLs purged, "
          f"{r['big_twice']} of them twice); drained {r['drain']:.1f} s after the stream"
          f"{'' if r['drained'] else ' (NOT drained)'} → {'ok' if ok else 'NOT OK'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the stream lasts (default 10)")
    parser.add_argument("--senders", type=int, default=20, help="concurrent senders (default 20)")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="each sender sends a mention and a click every this many seconds (default 2)")
    parser.add_argument("--urls", type=int, default=5000, help="URLs in the big purge (default 5000)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per Fastly API request (default 0.05)")
    parser.add_argument("--modes", default="threads,default", help="threads (the baseline), default, or both")
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    args = parser.parse_args()

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (figures from a shared machine are noisy)")
    results = [run_mode(mode, args) for mode in args.modes.split(",")]
    for r in results:
        report(r, args)
    if len(results) == 2:
        base, new = results
        p99 = percentile(new["all"], .99) / percentile(base["all"], .99)
        p50 = statistics.median(new["all"]) / statistics.median(base["all"])
        first = statistics.median(new["to_first"]) / statistics.median(base["to_first"])
        print(f"== {new['mode']} / {base['mode']}: ack p99 {p99:.2f}×, ack p50 {p50:.2f}×, "
              f"event → first message p50 {first:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
