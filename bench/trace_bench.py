"""How long does `cachebot trace` take for a big run? Target: under 1 s for a 5,000-URL run.

A real run of the graph (understand → … → approval → execute → verify → report, with an approval on the way)
over N URLs on three layers, written by the Agent to SQLite and, when a PostgreSQL is reachable
($CACHEBOT_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test, a database of its own created
and dropped here), to PostgreSQL. The layers answer at once (a loopback-free stand-in): what is measured is reading
the run back, not purging. Printed per database, with the data size (checkpoints, rows, bytes):

- ``load_trace`` + the text: what `cachebot trace` does once the process is up (median of --repeat);
- the baseline measured in the same run: one ``get_state`` of the last checkpoint (what reading a result costs),
  and LangGraph's ``get_state_history`` walked in full (the obvious way to build a trace); ratios against both;
- the whole command in a new process (`python -m agent.cli trace ID`, what the `cachebot` script runs), start-up
  included: this tree and, in the same run, a baseline commit (default ``main``) checked out in a temporary git
  worktree, both on this virtualenv's Python with ``PYTHONPATH`` naming the tree, runs alternating so a busy
  machine slows both alike (as bench/startup.py does). The baseline reads a copy of the same records, taken back
  to the schema its migrations know. Printed: median and best wall time, and the load average.

    python bench/trace_bench.py [--urls 5000] [--repeat 5] [--runs 5] [--baseline main] [--no-postgres]

``bench_trace(...)`` prints and returns the figures; bench/console.py runs it after the console's.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
                command: bool = True, verbose: bool = True, runs: int = 5, baseline: Path | None = None
                ) -> dict[str, Any]:
    """Record a run of ``urls`` pages on ``database_url`` (None: SQLite in a temp dir) and time reading it back;
    ``baseline``: another tree whose `cachebot trace` is timed on the same records. Prints the figures
    (``verbose``) and returns them."""
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
            figures.update(_command_seconds(config, directory, request_id, database_url, runs, baseline))
    if verbose:
        print_figures(figures)
    return figures


def _command_seconds(config: Any, directory: Path, request_id: str, database_url: str | None, runs: int,
                    baseline: Path | None) -> dict[str, Any]:
    """Wall times of `cachebot trace ID` in fresh processes: this tree, and ``baseline`` on a copy of the records
    at the schema it knows. Runs alternate between the trees."""
    trees = {"command": (ROOT, _write_config(config, directory, "cachebot.yaml"), database_url)}
    copy = None
    try:
        if baseline is not None:
            copy = _records_for(baseline, config, directory, database_url)
            trees["baseline_command"] = (baseline, copy[0], copy[1])
        times: dict[str, list[float]] = {name: [] for name in trees}
        loads = []
        for _ in range(runs):
            for name, (tree, path, url) in trees.items():
                times[name].append(_one_command(tree, path, request_id, url))
            loads.append(os.getloadavg()[0])
    finally:
        if copy is not None and copy[2] is not None:
            drop_database(copy[2])
    figures: dict[str, Any] = {"command_load": statistics.median(loads), "command_runs": runs}
    for name, measured in times.items():
        figures[f"{name}_seconds"], figures[f"{name}_best"] = statistics.median(measured), min(measured)
    return figures


def _write_config(config: Any, directory: Path, name: str, sqlite_path: Path | None = None) -> Path:
    import yaml

    data = config.model_dump(mode="json", exclude_none=True)
    if sqlite_path is not None:
        data["storage"]["sqlite_path"] = str(sqlite_path)
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def _records_for(tree: Path, config: Any, directory: Path, database_url: str | None
                 ) -> tuple[Path, str | None, str | None]:
    """(config file, database URL, database to drop) for the baseline: a copy of the records (SQLite files, or a
    PostgreSQL database made from the first as a template), taken back to the newest migration ``tree`` has: an
    older tree refuses a database at a revision it does not know."""
    from alembic import command
    from sqlalchemy import make_url

    from agent.storage.database import make_engine
    from agent.storage.migrations import alembic_config, migration_lock

    known = sorted(p.stem for p in (tree / "agent/storage/migrations/versions").glob("0*.py"))[-1]
    made = None
    if database_url is None:
        copied = directory / "baseline"
        copied.mkdir()
        for file in Path(config.storage.sqlite_path).parent.glob("*.sqlite*"):
            shutil.copy2(file, copied / file.name)
        url = f"sqlite:///{copied / 'audit.sqlite'}"
        path = _write_config(config, directory, "baseline.yaml", copied / Path(config.storage.sqlite_path).name)
    else:
        made, url = create_database("cachebot_bench_trace_baseline", template=make_url(database_url).database)
        path = _write_config(config, directory, "baseline.yaml")
    engine = make_engine(url)
    try:
        with migration_lock(engine) as connection:
            command.downgrade(alembic_config(url, connection), known)
            connection.commit()
    finally:
        engine.dispose()
    return path, (url if made else None), made


def _one_command(tree: Path, config_path: Path, request_id: str, database_url: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEBOT_", "OPENAI_", "SLACK_"))}
    env.update(PYTHONPATH=str(tree), COLUMNS="100", NO_COLOR="1",
               **({"CACHEBOT_DATABASE_URL": database_url} if database_url else {}))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "agent.cli", "trace", request_id, "--config", str(config_path)],
                          capture_output=True, text=True, env=env, cwd=config_path.parent, timeout=120)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cachebot trace failed in {tree}: {done.stdout}{done.stderr}")
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
        verdict = "OK" if f["command_seconds"] < 1 else "OVER"
        print(f"  `cachebot trace ID` in a new process:  {f['command_seconds'] * 1000:8.1f} ms (best "
              f"{f['command_best'] * 1000:.0f} ms; start-up included; median of {f['command_runs']}, load average "
              f"{f['command_load']:.1f})  [target < 1000 ms: {verdict}]")
    if "baseline_command_seconds" in f:
        print(f"  baseline ({f['baseline']}) in a new process: {f['baseline_command_seconds'] * 1000:6.1f} ms (best "
              f"{f['baseline_command_best'] * 1000:.0f} ms) → this tree / baseline = "
              f"{f['command_seconds'] / f['baseline_command_seconds']:.2f}×")


def main() -> None:
    from bench.startup import baseline_tree

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="fresh `cachebot trace` processes per tree")
    parser.add_argument("--baseline", default="main", help="git revision whose `cachebot trace` is the baseline "
                        "(default main; 'none' to skip)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"cachebot trace of a {args.urls:,}-URL run (load on this machine: {os.getloadavg()[0]:.1f})")
    tree = None if args.baseline == "none" else baseline_tree(args.baseline)
    try:
        run = {"runs": args.runs, "baseline": tree}
        for figures in _databases(args.urls, args.repeat, args.no_postgres, run):
            figures["baseline"] = args.baseline
            print_figures(figures)
    finally:
        if tree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def _databases(urls: int, repeat: int, no_postgres: bool, run: dict[str, Any]):
    yield bench_trace(urls, repeat, verbose=False, **run)
    if no_postgres:
        return
    made = postgres_database()
    if made is None:
        print("[postgres] skipped: no PostgreSQL reachable (set CACHEBOT_TEST_POSTGRES_URL)")
        return
    url, name = made
    try:
        yield bench_trace(urls, repeat, database_url=url, verbose=False, **run)
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
