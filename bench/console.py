"""The web console's server time with 100,000 audited requests, on SQLite and PostgreSQL.

For each database: N requests are written straight into the audit tables (executemany on SQLite, COPY on
PostgreSQL: a few minutes of inserts through the Agent would measure nothing more), with 1-3 pages each on three
layers, a tenth not verified, some refused or denied, and one purge of 5,000 pages on five layers (25,000 plan
items and results). Then one real run is added through the Agent on the demo stack (approval refused once, then
given; a repair pass), so one request page draws a real trace.

Measured in process with Starlette's TestClient (the app's time, no network): the requests list (first page,
a deep page, each filter: URL, user, site, status, time), request pages (random requests, the 5,000-page purge,
the real run: first view and again), the page of requests waiting for approval (2% of them: 200 shown) and the
stats page (first view, then again: its figures are kept for a minute). The baseline is the same pages on a
database of 1,000 requests, measured in the same run: the ratio says how much the 100x bigger trail costs.
Target (issue #10): every list and request page p95 < 150 ms. Each figure is printed with the machine's load
average when it was taken: the machine is shared.

    python bench/console.py [--requests 100000] [--samples 200] [--databases sqlite,postgres] [--no-trace]

Needs the demo stack's programs (`make install`) and a PostgreSQL where the user may CREATE DATABASE
($CACHEBOT_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test); the bench database is dropped.
If bench/trace_bench.py has ``bench_trace``, it is run too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from agent.config import parse_config  # noqa: E402
from agent.state import AgentContext, checkpoint_serializer  # noqa: E402
from agent.storage import Storage  # noqa: E402
from agent.storage.database import sqlite_file  # noqa: E402
from agent.storage.tables import decisions, plan_items, requests, results  # noqa: E402
from agent.web.app import Console, create_app  # noqa: E402
from bench.scratch_db import create_database, drop_database  # noqa: E402

USERS = [f"U{n:04d}" for n in range(60)]
SITES = {"shop": "shop.example", "blog": "blog.example", "docs": "docs.example"}
LAYERS = ("appcache", "varnish", "edge")
TARGET_MS = 150


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the data ------------------------------------------------------------------------------------------------


def generated(count: int, now: datetime, seed: int = 7):
    """(requests, plan items, results, decisions) rows for ``count`` requests over the last 80 days."""
    rng = random.Random(seed)
    reqs, plans, outs, decided = [], [], [], []
    for n in range(count):
        request_id = uuid.UUID(int=rng.getrandbits(128)).hex
        received = now - timedelta(seconds=rng.uniform(60, 80 * 86400))
        site = rng.choice(list(SITES))
        pages = [f"https://{SITES[site]}/{rng.choice(['products', 'blog', 'pricing', 'about'])}/{rng.randrange(3000)}"
                 for _ in range(rng.randint(1, 3))]
        roll = rng.random()
        status, outcome = ("done", "verified") if roll < 0.86 else ("done", "failed") if roll < 0.96 else \
            ("denied", None) if roll < 0.98 else ("waiting_approval", None)
        took = rng.uniform(2, 90)
        reqs.append({"id": request_id, "thread_id": f"C0BENCH:{received.timestamp():.6f}", "requested_by":
                     rng.choice(USERS), "interface": "slack", "channel": "C0BENCH", "text": "purge " + " ".join(pages),
                     "intent": "purge", "understood_by": "rules", "dry_run": False, "status": status,
                     "outcome": outcome, "page_count": len(pages), "purge_count": len(pages) * len(LAYERS),
                     "received_at": received,
                     "finished_at": None if status == "waiting_approval" else received + timedelta(seconds=took)})
        for url in pages:
            key = hashlib.sha256(url.encode()).hexdigest()
            for layer in LAYERS:
                plans.append({"request_id": request_id, "url": url, "url_hash": key, "site": site, "layer": layer,
                              "operation": "purge_url", "target": url, "reason": "you asked for this page",
                              "requested": True})
                if outcome:
                    bad = outcome == "failed" and layer == "edge"
                    outs.append({"request_id": request_id, "url": url, "url_hash": key, "site": site,
                                 "path": url.split("/", 3)[3], "layer": layer,
                                 "status": "failed" if bad else "purged_verified", "detail": "purged",
                                 "evidence": "still HIT (Age: 120)" if bad else 'MISS→fresh (ETag "5d07" matches)',
                                 "attempts": 2 if bad else 1, "found_stale": bad, "recorded_at": received})
        if status == "denied":
            decided.append({"request_id": request_id, "thread_id": reqs[-1]["thread_id"], "decided_by": "U0001",
                            "interface": "slack", "decision": "deny", "status": "denied", "detail": "",
                            "decided_at": received + timedelta(seconds=30)})
    return reqs, plans, outs, decided


def big_request(now: datetime, pages: int = 5000, layers: int = 5):
    request_id = uuid.uuid4().hex
    received = now - timedelta(hours=1)
    req = {"id": request_id, "thread_id": "C0BENCH:big", "requested_by": "U0001", "interface": "slack",
           "channel": "C0BENCH", "text": f"purge {pages} pages", "intent": "purge", "understood_by": "rules",
           "dry_run": False, "status": "done", "outcome": "verified", "page_count": pages,
           "purge_count": pages * layers, "received_at": received, "finished_at": received + timedelta(minutes=4)}
    plans, outs = [], []
    for n in range(pages):
        url = f"https://shop.example/products/p{n}"
        key = hashlib.sha256(url.encode()).hexdigest()
        for layer in range(layers):
            plans.append({"request_id": request_id, "url": url, "url_hash": key, "site": "shop",
                          "layer": f"layer{layer}", "operation": "purge_url", "target": url, "reason": "asked",
                          "requested": True})
            outs.append({"request_id": request_id, "url": url, "url_hash": key, "site": "shop",
                         "path": f"/products/p{n}", "layer": f"layer{layer}", "status": "purged_verified",
                         "detail": "purged", "evidence": "MISS→fresh", "attempts": 1, "found_stale": False,
                         "recorded_at": received})
    return request_id, [req], plans, outs


def load(storage: Storage, rows: dict) -> None:
    """Bulk insert: COPY on PostgreSQL, executemany on SQLite."""
    order = [(requests, rows["requests"]), (plan_items, rows["plan_items"]), (results, rows["results"]),
             (decisions, rows["decisions"])]
    if storage.kind == "postgres":
        raw = storage.engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                for table, data in order:
                    if not data:
                        continue
                    columns = list(data[0])
                    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in data:
                            copy.write_row([row[c] for c in columns])
            raw.commit()
        finally:
            raw.close()
        with storage.engine.begin() as db:
            db.exec_driver_sql("ANALYZE")
        return
    with storage.engine.begin() as db:
        for table, data in order:
            for start in range(0, len(data), 20_000):
                db.execute(insert(table), data[start:start + 20_000])
    with storage.engine.begin() as db:
        db.exec_driver_sql("ANALYZE")


def data_size(storage: Storage) -> str:
    with storage.engine.connect() as db:
        counts = {t.name: db.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (requests, plan_items, results, decisions)}
        if storage.kind == "postgres":
            size = db.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        else:
            path = sqlite_file(storage.url)
            size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return ", ".join(f"{name} {n:,}" for name, n in counts.items()) + f"; {size / 1e6:.0f} MB on disk"


# --- a real run, for one request page with a real trace ----------------------------------------------------------


def real_run(config_data: dict, stack) -> str:
    """bob's request through the Agent on the demo stack: refused once (his own), approved by alice, a repair
    pass (a visitor refills the edge from Varnish mid-purge). Returns its request id."""
    from agent.service.agent import Agent
    from tests.agent.conftest import warm
    from tests.agent.nodes.test_verify import racing_layers

    stack.reset_content()
    stack.clear_caches()
    warm(stack, "/pricing", "/")
    stack.content.edit("/pricing", "Pro plan: $12/month.")
    config = parse_config(config_data)
    with Agent(config, context=AgentContext(config=config, layer_factory=racing_layers)) as agent:
        agent.ask("the old price still shows on https://shop.example/pricing", user="bob", thread_id="t-real")
        agent.decide("t-real", "approve", user="bob")
        agent.decide("t-real", "approve", user="alice")
        return agent.audit.latest_request("t-real")["id"]


# --- measuring ---------------------------------------------------------------------------------------------------


def timed(client: TestClient, path: str) -> float:
    started = time.perf_counter()
    answer = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return elapsed


def measure(client: TestClient, paths: list[str], rounds: int = 1) -> list[float]:
    return [timed(client, path) for _ in range(rounds) for path in paths]


def pages_of(storage: Storage, client: TestClient, samples: int, real_id: str | None, big_id: str | None,
             rng: random.Random) -> dict[str, tuple[list[float], float]]:
    """Page kind -> (milliseconds per view, the load average once measured)."""
    with storage.engine.connect() as db:
        ids = [r for (r,) in db.execute(select(requests.c.id).order_by(func.random()).limit(samples))]
        some_urls = [u for (u,) in db.execute(select(plan_items.c.url).order_by(func.random()).limit(samples))]
    few = max(20, samples // 4)
    kinds = {
        "list, first page": lambda: measure(client, ["/"], rounds=samples),
        "list, page 20": lambda: measure(client, ["/?page=20"], rounds=few),
        "list, URL filter": lambda: measure(client, [f"/?url={u}" for u in some_urls[:few]]),
        "list, user filter": lambda: measure(client, [f"/?user={rng.choice(USERS)}" for _ in range(few)]),
        "list, site filter": lambda: measure(client, [f"/?site={rng.choice(list(SITES))}" for _ in range(few)]),
        "list, status: not verified": lambda: measure(client, ["/?status=not_verified"], rounds=few),
        "list, status: waiting": lambda: measure(client, ["/?status=waiting_approval"], rounds=few),
        "list, time: since 7d": lambda: measure(client, ["/?since=7d"], rounds=few),
        "list, not verified, 7d": lambda: measure(client, ["/?status=not_verified&since=7d"], rounds=few),
        "request page": lambda: measure(client, [f"/requests/{i}" for i in ids]),
        "waiting for approval": lambda: measure(client, ["/waiting"], rounds=few),
        "stats, first view (30 days)": lambda: [timed(client, "/stats")],
        "stats, again (kept a minute)": lambda: measure(client, ["/stats"], rounds=few),
    }
    if big_id:
        kinds["request page, 5,000 pages x 5 layers"] = lambda: measure(client, [f"/requests/{big_id}"], rounds=20)
    if real_id:
        kinds["real run page, first view"] = lambda: [timed(client, f"/requests/{real_id}")]
        kinds["real run page (trace + drawing)"] = lambda: measure(client, [f"/requests/{real_id}"], rounds=30)
    return {name: (measured(), os.getloadavg()[0]) for name, measured in kinds.items()}


def under_target(name: str) -> bool:
    """Issue #10's floor: the requests list (any filter) and a request page, p95 under TARGET_MS."""
    return name.startswith(("list", "request page")) or name == "real run page (trace + drawing)"


def run_database(kind: str, count: int, samples: int, baseline_count: int, stack, workdir: Path) -> None:
    now = datetime.now(timezone.utc)
    rng = random.Random(11)
    for label, n in (("baseline", baseline_count), ("measured", count)):
        created = None
        if kind == "postgres":
            created, url = create_database("cachebot_bench_console")
        else:
            url = f"sqlite:///{workdir / f'{label}-audit.sqlite'}"
        data = stack.config_dict()
        data["approval"] = {**data["approval"], "approvers": ["alice"], "threshold": 1}
        data["storage"] = {"sqlite_path": str(workdir / f"{kind}-{label}" / "state.sqlite"), "database_url": url}
        try:
            config = parse_config(data)
            storage = Storage.open(config, serde=checkpoint_serializer())
            try:
                started = time.perf_counter()
                reqs, plans, outs, decided = generated(n, now)
                big_id, big_reqs, big_plans, big_outs = big_request(now)
                load(storage, {"requests": reqs + big_reqs, "plan_items": plans + big_plans,
                               "results": outs + big_outs, "decisions": decided})
                loaded = time.perf_counter() - started
                real_id = real_run(data, stack)
                client = TestClient(create_app(Console(config, storage)))
                figures = pages_of(storage, client, samples, real_id, big_id, rng)
                print(f"\n{kind}, {label}: {n:,} generated requests (+1 of 5,000 pages, +1 real run) loaded in "
                      f"{loaded:.1f} s; {data_size(storage)}")
                for name, (values, busy) in figures.items():
                    verdict = ""
                    if under_target(name) and label == "measured":
                        verdict = "  OK" if percentile(values, 0.95) < TARGET_MS else f"  OVER {TARGET_MS} ms"
                    print(f"  {name:<40} p50 {statistics.median(values):7.1f} ms   p95 "
                          f"{percentile(values, 0.95):7.1f} ms   (n={len(values)}, load {busy:.1f}){verdict}")
                run_database.results[(kind, label)] = {name: values for name, (values, _) in figures.items()}
            finally:
                storage.close()
        finally:
            if created:
                drop_database(created)
    base, big = run_database.results[(kind, "baseline")], run_database.results[(kind, "measured")]
    print(f"  ratio p95 {count:,} / {baseline_count:,} requests: " + ", ".join(
        f"{name} {percentile(big[name], 0.95) / percentile(base[name], 0.95):.2f}x"
        for name in ("list, first page", "request page", "list, site filter", "list, URL filter",
                     "waiting for approval", "real run page (trace + drawing)")))


run_database.results = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--no-trace", action="store_true", help="skip bench/trace_bench.py afterwards")
    args = parser.parse_args()

    from agent.demo.stack import start_stack

    with tempfile.TemporaryDirectory(prefix="cachebot-bench-console-") as tmp:
        workdir = Path(tmp)
        stack = start_stack(workdir / "stack")
        try:
            print(f"cachebot web: server time per page (TestClient, in process); {os.cpu_count()} CPUs, shared "
                  f"machine (load average {os.getloadavg()[0]:.1f} at the start): compare the ratios, not the "
                  "absolute figures")
            for kind in args.databases.split(","):
                with ThreadPoolExecutor(1) as worker:  # the Agent runs its own event loops
                    worker.submit(run_database, kind.strip(), args.requests, args.samples, args.baseline, stack,
                                  workdir).result()
        finally:
            stack.stop()
    trace_bench = ROOT / "bench" / "trace_bench.py"
    if trace_bench.exists() and not args.no_trace:
        sys.path.insert(0, str(trace_bench.parent))
        import trace_bench as module  # noqa: E402

        if hasattr(module, "bench_trace"):
            print("\nbench/trace_bench.py:")
            module.bench_trace()


if __name__ == "__main__":
    main()
