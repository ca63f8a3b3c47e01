"""One URL on the demo stack, from the message to the verified report: where the time goes.

The demo stack (origin behind a Redis app cache, Varnish with xkey, an nginx edge: real daemons on loopback) with
its config; before each request /pricing is cached on every layer and then changed at the origin, so the purge
has something to clear and verification something to compare. The message is the demo's "these still show the
old price: https://shop.example/pricing" (2 pages: the home page shows the prices; 6 purges).

- terminal: one `Agent`, started once (what `cachebot chat` holds), then timed requests; per phase from the
  agent's own progress events: understand + resolve (to the URLs found), plan (with tag discovery at the
  origin), execute (the purges), verify (every layer against the origin), report (the answer and its record);
- Slack: the Slack app (Bolt, cachebot's listeners, the same Agent) on a loopback port and a loopback Slack Web
  API in its own process (tests/fakes/slack.py); a signed app_mention goes in, timed to the first message in
  the thread and to the report posted there.

The baseline is another tree (default: the commit before issue #13's latency work, checked out in a temporary
git worktree) run by this same script in a child process, in the same run, on its own stack. Printed: median
and best per phase, before and after, and the ratio. Figures, not a pass/fail test:

    python bench/one_url.py [--runs 7] [--baseline REV | --no-baseline] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = Path(os.environ.get("ONE_URL_TREE", ROOT))  # the code measured: this tree, or the baseline's worktree
sys.path.insert(0, str(ROOT))  # tests.fakes: the loopback Slack
sys.path.insert(0, str(TREE))

import httpx  # noqa: E402

from agent.demo.stack import start_stack  # noqa: E402
from agent.config import parse_config  # noqa: E402
from agent.service.agent import Agent  # noqa: E402
from agent.service.events import PlanReady, StepDone, UrlsFound  # noqa: E402

BEFORE = "6392035"  # main before issue #13's latency work
MESSAGE = "these still show the old price: https://shop.example/pricing"
PHASES = ("understand", "plan", "execute", "verify", "report", "total")
SECRET = "bench-signing-secret"


def make_stale(stack, round_: int) -> None:
    """Every layer holds the old /pricing (and /), then the origin changes it."""
    stack.content.edit("/pricing", f"Pro plan: ${10 + round_}/month.")
    with httpx.Client(timeout=10) as client:
        for path in ("/pricing", "/"):
            for _ in range(2):  # the second look is the HIT that shows every layer holds it
                client.get(stack.nginx_url + path, headers={"Host": stack.host})
    stack.content.edit("/pricing", f"Pro plan: ${10 + round_}.50/month.")


def terminal(stack, config, runs: int) -> dict[str, list[float]]:
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    with Agent(config) as agent:
        for round_ in range(runs + 1):  # the first request warms up (imports on first use, connections)
            make_stale(stack, round_)
            marks: dict[str, float] = {}

            def on_event(event, marks=marks) -> None:
                now = time.perf_counter()
                if isinstance(event, UrlsFound):
                    marks["understand"] = now
                elif isinstance(event, PlanReady):
                    marks["plan"] = now
                elif isinstance(event, StepDone):
                    marks.setdefault("execute" if event.step == "purged" else "verify", now)
                    if event.step == "verified":
                        marks["verify"] = now  # after a repair pass too: the last verification

            started = time.perf_counter()
            result = agent.ask(MESSAGE, user="bob", on_event=on_event)
            ended = time.perf_counter()
            fresh = [r for r in result.results if r.status.value == "purged_verified"]
            if len(fresh) != len(result.results) or not result.results:
                raise SystemExit(f"not every layer verified fresh:\n{result.reply}")
            if round_ == 0:
                continue
            previous = started
            for name in PHASES[:-2]:
                phases[name].append(marks[name] - previous)
                previous = marks[name]
            phases["report"].append(ended - previous)
            phases["total"].append(ended - started)
    return phases


def slack(stack, config, runs: int, workers: int) -> dict[str, list[float]]:
    from slack_app.server import SlackHTTPServer, SlackSettings, build_front_end
    from tests.fakes.slack import FakeSlackProcess, SlackSender, event_payload, is_report, mention

    fake = FakeSlackProcess()
    settings = SlackSettings(bot_token="xoxb-bench", signing_secret=SECRET, app_token=None, api_url=fake.api_url)
    front = build_front_end(config, settings, workers=workers)
    server = SlackHTTPServer(front.app, port=0).start()
    sender = SlackSender(server.url + "/slack/events", SECRET)
    timings: dict[str, list[float]] = {"ack": [], "first message": [], "report": []}
    try:
        for round_ in range(runs + 1):
            make_stale(stack, 100 + round_)
            ts = f"1900000000.{round_:06d}"
            started = time.perf_counter()
            status, _, ack = sender.event({}, payload=event_payload(mention(MESSAGE, user="UBOB", channel="CBENCH",
                                                                             ts=ts)))
            if status != 200:
                raise SystemExit(f"the Slack app answered HTTP {status}")
            first = report = None
            while report is None:
                if time.perf_counter() - started > 60:
                    raise SystemExit("no report in the thread after 60 s")
                posted = [c for c in fake.calls("chat.postMessage") if c.get("thread_ts") == ts]
                if posted and first is None:
                    first = time.perf_counter()
                if any(is_report(c) for c in posted):
                    report = time.perf_counter()
                time.sleep(0.005)
            if round_ == 0:
                continue
            timings["ack"].append(ack)
            timings["first message"].append(first - started)
            timings["report"].append(report - started)
    finally:
        server.stop()
        front.close()
        front.agent.close()
        fake.close()
    return timings


def measure(runs: int, workers: int) -> dict[str, dict[str, list[float]]]:
    """This process's tree, on a stack of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="cachebot-one-url-"))
    stack = start_stack(workdir / "stack")
    try:
        data = stack.config_dict()
        data["storage"] = {"sqlite_path": str(workdir / "state" / "state.sqlite")}
        config = parse_config(data)
        return {"terminal": terminal(stack, config, runs), "slack": slack(stack, config, runs, workers)}
    finally:
        stack.stop()


def baseline(revision: str, runs: int, workers: int) -> dict[str, dict[str, list[float]]]:
    tree = Path(tempfile.mkdtemp(prefix="cachebot-one-url-baseline-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(tree), revision],
                   check=True, capture_output=True)
    try:
        env = dict(os.environ, ONE_URL_TREE=str(tree), PYTHONPATH=str(tree))
        done = subprocess.run([sys.executable, __file__, "--runs", str(runs), "--workers", str(workers), "--json"],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the baseline failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def show(title: str, before: dict[str, list[float]] | None, after: dict[str, list[float]], target: str) -> None:
    print(f"{title}{target}")
    print(f"  {'phase':<16} {'baseline ms':>18} {'this tree ms':>18} {'ratio':>6}")
    for name, values in after.items():
        a = statistics.median(values)
        line = f"  {name:<16} "
        if before is not None:
            b = statistics.median(before[name])
            line += f"{b * 1000:8.0f} (min {min(before[name]) * 1000:4.0f}) "
        else:
            line += f"{'':>18} "
        line += f"{a * 1000:8.0f} (min {min(values) * 1000:4.0f})"
        if before is not None:
            line += f" {a / max(statistics.median(before[name]), 1e-9):5.2f}×"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed requests per front end (default 7)")
    parser.add_argument("--baseline", default=BEFORE, help=f"git revision to compare with (default {BEFORE})")
    parser.add_argument("--no-baseline", action="store_true", help="only this tree")
    parser.add_argument("--workers", type=int, default=0, help="the Slack app's worker processes (default 0)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the baseline's child process
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a `timeout` still removes the baseline worktree
    if args.json:
        print(json.dumps(measure(args.runs, args.workers)))
        return 0
    before = None if args.no_baseline else baseline(args.baseline, args.runs, args.workers)
    after = measure(args.runs, args.workers)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.runs} timed requests each after one "
          f"warm-up; baseline {'none' if before is None else args.baseline}; message: {MESSAGE!r}")
    show("terminal (`cachebot chat` after start-up), ms", before and before["terminal"], after["terminal"],
         "; target: total under 1000 ms")
    show("Slack (event in -> report posted), ms", before and before["slack"], after["slack"],
         "; target: report under 1000 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
