"""How long does `cachebot trace` take for a big run? Target: under 1 s for a 5,000-URL run.

A real run of the graph (understand → … → approval → execute → verify → report, with an approval on the way)
over N URLs on three layers, written by the Agent to SQLite and, when a PostgreSQL is reachable
($CACHEBOT_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test, a database of its own created
and dropped here), to PostgreSQL. The layers answer at once (a loopback-free stand-in): what is measured is reading
the run back, not purging. Printed per database, with the data size (checkpoints, rows, bytes):

- ``load_trace`` + the text: what `cachebot trace` does once the process is up (median of --repeat);
- the baseline measured in the same run: one ``get_state`` of the last checkpoint (what reading a result costs),
  and LangGraph's ``get_state_history`` walked in full (the obvious way to build a trace); ratios against both;
- the whole command in a new process (`cachebot trace ID`), start-up included.

    python bench/trace_bench.py [--urls 5000] [--repeat 5] [--no-postgres]

``bench_trace(...)`` prints and returns the figures; bench/console.py runs it after the console's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import parse_config  # noqa: E402
from agent.layers.base import Capability, CacheLayer, Observation, Outcome, Verification  # noqa: E402
from agent.service.agent import Agent  # noqa: E402
from agent.state import AgentContext  # noqa: E402
from agent.trace import load_trace  # noqa: E402
from agent.words import trace_text  # noqa: E402
from bench.scratch_db import create_database, drop_database  # noqa: E402

LAYERS = ("appcache", "varnish", "edge")


class InstantLayer(CacheLayer):
    """Takes every purge and shows every page fresh, at once: the run's records are what matter here."""

    kind = "instant"
    capabilities = frozenset({Capability.PURGE_URL, Capability.VERIFY})

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        return {url: Outcome("purged", "", 1) for url in urls}

    async def observe(self, url: str) -> Observation:
        return Observation(reachable=True, status_code=200)

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        return Verification(True, "fresh (bench)")


def bench_config(directory: Path, database_url: str | None, urls: int) -> Any:
    return parse_config({
        "sites": [{"name": "shop", "hosts": ["shop.example"], "layers": list(LAYERS)}],
        "layers": [{"name": name, "kind": "varnish", "endpoint": "http://127.0.0.1:9"} for name in LAYERS],
        "approval": {"threshold": 20, "approvers": ["alice"]},
        "limits": {"max_urls_per_request": urls + 10},
        "storage": {"sqlite_path": str(directory / "state.sqlite"),
                    **({"database_url": database_url} if database_url else {})},
    })


def record_run(config: Any, urls: int) -> tuple[str, str]:
    """Ask for N pages, approve: (request id, thread id)."""
    context = AgentContext(config=config, layer_factory=InstantLayer)
    message = "purge " + " ".join(f"https://shop.example/catalogue/item-{n}" for n in range(urls))
    with Agent(config, context=context) as agent:
        agent.ask(message, user="bob", thread_id="bench-trace")
        agent.decide("bench-trace", "approve", user="alice")
        return agent.audit.latest_request("bench-trace")["id"], "bench-trace"


def _median_seconds(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def data_size(agent: Agent, thread_id: str) -> dict[str, Any]:
    saver = agent.storage.checkpointer
    checkpoints = list(saver.list({"configurable": {"thread_id": thread_id}}))
    writes = sum(len(t.pending_writes or ()) for t in checkpoints)
    if agent.storage.kind == "sqlite":
        size = agent.storage.database.checkpoint_file.stat().st_size
    else:
        with agent.storage.engine.connect() as db:
            from sqlalchemy import text

            size = sum(db.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one() for table in
                       ("checkpoints", "checkpoint_blobs", "checkpoint_writes"))
    values = agent.snapshot(thread_id).values
    return {"checkpoints": len(checkpoints), "writes": writes, "checkpoint_bytes": size,
            "plan_items": len(values["plan"].items), "purge_outcomes": len(values["purge_outcomes"]),
            "results": len(values["results"])}


def bench_trace(urls: int = 5000, repeat: int = 5, database_url: str | None = None,
                command: bool = True, verbose: bool = True) -> dict[str, Any]:
    """Record a run of ``urls`` pages on ``database_url`` (None: SQLite in a temp dir) and time reading it back;
    prints the figures (``verbose``) and returns them."""
    with tempfile.TemporaryDirectory(prefix="cachebot-trace-bench-") as temp:
        directory = Path(temp)
        config = bench_config(directory, database_url, urls)
        started = time.perf_counter()
        request_id, thread_id = record_run(config, urls)
        recorded = time.perf_counter() - started
        with Agent(config) as agent:  # a new process would open the same records
            figures: dict[str, Any] = {"database": agent.storage.kind, "urls": urls, "record_seconds": recorded,
                                       **data_size(agent, thread_id)}
            steps = load_trace(agent.storage, request_id).steps
            figures["steps"] = len(steps)
            figures["trace_seconds"] = _median_seconds(
                lambda: trace_text(load_trace(agent.storage, request_id)), repeat)
            figures["get_state_seconds"] = _median_seconds(lambda: agent.snapshot(thread_id), repeat)
            config_dict = {"configurable": {"thread_id": thread_id}}
            figures["state_history_seconds"] = _median_seconds(
                lambda: list(agent.graph.get_state_history(config_dict)), max(1, repeat // 2))
        if command:
            figures["command_seconds"] = _command_seconds(config, directory, request_id, database_url)
    if verbose:
        print_figures(figures)
    return figures


def _command_seconds(config: Any, directory: Path, request_id: str, database_url: str | None) -> float:
    import yaml

    path = directory / "cachebot.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    cachebot = Path(sys.executable).with_name("cachebot")
    env = {**os.environ, **({"CACHEBOT_DATABASE_URL": database_url} if database_url else {})}
    started = time.perf_counter()
    done = subprocess.run([str(cachebot), "trace", request_id, "--config", str(path)], capture_output=True,
                          text=True, env=env, timeout=120)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cachebot trace failed: {done.stdout}{done.stderr}")
    return took


def postgres_database() -> tuple[str, str] | None:
    """(url, name) of a new database on the test PostgreSQL, or None when none is reachable."""
    import psycopg

    try:
        name, url = create_database()
    except psycopg.OperationalError:
        return None
    return url, name


def print_figures(figures: dict[str, Any]) -> None:
    f = figures
    print(f"[{f['database']}] {f['urls']:,} URLs → {f['plan_items']:,} plan items, {f['purge_outcomes']:,} purge "
          f"answers, {f['results']:,} results; {f['checkpoints']} checkpoints, {f['writes']} writes, "
          f"{f['checkpoint_bytes'] / 1e6:.1f} MB of checkpoints (recording the run took {f['record_seconds']:.1f} s)")
    verdict = "OK" if f["trace_seconds"] < 1 else "OVER"
    print(f"  load_trace + text ({f['steps']} steps): {f['trace_seconds'] * 1000:8.1f} ms  "
          f"[target < 1000 ms: {verdict}]")
    print(f"  baseline get_state (last checkpoint):  {f['get_state_seconds'] * 1000:8.1f} ms  "
          f"→ trace / get_state = {f['trace_seconds'] / f['get_state_seconds']:.1f}×")
    print(f"  baseline get_state_history (full):     {f['state_history_seconds'] * 1000:8.1f} ms  "
          f"→ trace / history = {f['trace_seconds'] / f['state_history_seconds']:.2f}×")
    if "command_seconds" in f:
        print(f"  `cachebot trace ID` in a new process:  {f['command_seconds'] * 1000:8.1f} ms (start-up included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"cachebot trace of a {args.urls:,}-URL run (load on this machine: {os.getloadavg()[0]:.1f})")
    bench_trace(args.urls, args.repeat)
    if args.no_postgres:
        return
    made = postgres_database()
    if made is None:
        print("[postgres] skipped: no PostgreSQL reachable (set CACHEBOT_TEST_POSTGRES_URL)")
        return
    url, name = made
    try:
        bench_trace(args.urls, args.repeat, database_url=url)
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
