"""What active expiry costs (agent/service/expiry.py): every replica runs the job on each sweep (15 s by default).

For N requests waiting for approval (SQLite files in a temporary directory, and with --postgres a fresh PostgreSQL
database made on the test server, $CACHEBOT_TEST_POSTGRES_URL, and dropped after):

- a sweep with nothing due: it reads the audit's waiting requests and each one's checkpoint (the steady cost every
  sweep pays), against the baseline of a sweep with nothing waiting at all, measured in the same run;
- the sweep that expires all N (each through the graph, recorded in the audit, told once: the notifier here
  only counts), per approval.

    python bench/expiry.py [--waiting 50 200] [--postgres]

Figures are wall-clock on whatever else the machine is doing: compare the ratios, not the milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from agent.config import parse_config  # noqa: E402
from agent.service.agent import Agent  # noqa: E402
from agent.service.expiry import expire_overdue  # noqa: E402
from agent.state import AgentContext  # noqa: E402
from bench.scratch_db import create_database, drop_database  # noqa: E402

MESSAGE = "purge https://bench.example/a https://bench.example/b https://bench.example/c"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def make_agent(workdir: Path, database_url: str | None, clock: Clock) -> Agent:
    storage = {"sqlite_path": str(workdir / "state.sqlite")} | ({"database_url": database_url} if database_url else {})
    config = parse_config({
        "sites": [{"name": "bench", "hosts": ["bench.example"], "layers": ["edge"]}],
        "layers": [{"name": "edge", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "approval": {"threshold": 1, "approvers": ["alice"], "expiry_minutes": 30},
        "storage": storage,
    })
    return Agent(config, context=AgentContext(config=config, now=clock))


def timed_sweeps(agent: Agent, repeats: int) -> float:
    """Median seconds of a sweep that expires nothing."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        assert expire_overdue(agent, lambda item: None) == 0
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(waiting: int, database_url: str | None, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="cachebot-bench-expiry-") as tmp:
        clock = Clock()
        agent = make_agent(Path(tmp), database_url, clock)
        try:
            agent.audit.prune(older_than_days=0, now=clock.now + timedelta(days=1))  # start empty on PostgreSQL
            for _ in range(waiting):
                assert agent.ask(MESSAGE, user="bob", channel="C1", thread_id=f"C1:{uuid.uuid4().hex}",
                                 interface="slack").pending
            idle = timed_sweeps(agent, repeats)
            clock.now += timedelta(minutes=31)
            told: list = []
            started = time.perf_counter()
            expired = expire_overdue(agent, told.append)
            expiring = time.perf_counter() - started
            assert expired == waiting == len(told), (expired, waiting, len(told))
            return {"idle": idle, "expiring": expiring}
        finally:
            agent.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="also on a fresh PostgreSQL database")
    args = parser.parse_args()
    places: list[tuple[str, str | None]] = [("SQLite", None)]
    made = None
    if args.postgres:
        made, url = create_database()
        places.append(("PostgreSQL", url))
    try:
        for where, url in places:
            baseline = measure(0, url, args.repeats)["idle"]
            print(f"{where}: a sweep with nothing waiting (baseline): {baseline * 1000:.1f} ms")
            for waiting in args.waiting:
                figures = measure(waiting, url, args.repeats)
                print(f"  {waiting} waiting, none due: {figures['idle'] * 1000:.1f} ms a sweep "
                      f"({figures['idle'] / baseline:.1f}× baseline); expiring all {waiting}: "
                      f"{figures['expiring']:.2f} s ({figures['expiring'] / waiting * 1000:.1f} ms each)")
    finally:
        if made:
            drop_database(made)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
