"""How fast does cachebot purge a big batch, against the speed limit of each layer's API?

A site with real Redis, Varnish and nginx (started here on loopback) plus Cloudflare- and Fastly-shaped
loopback APIs that add 50 ms to every request. 500 distinct URLs go through the execution engine; printed:
wall time, requests per layer, the lower bound (max over layers of ceil(items/batch)/concurrency × latency),
wall / lower bound, and in the same run the naive way (one URL at a time, one layer after another). Then
5,000 URLs, to show time and memory grow linearly. Every run notes each batch before sending it in a journal of
purges in flight (agent/storage/in_flight.py: one committed row per batch, on SQLite by default), as a real run
does; the 500 URLs also go once without it (the baseline for its cost), and once on PostgreSQL unless
``--journal sqlite``. Figures, not a pass/fail test:

    python bench/purge_throughput.py [--urls 500] [--big 5000] [--latency 0.05] [--skip-naive]
                                     [--journal sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import AppConfig, parse_config  # noqa: E402
from agent.demo.stack import start_stack  # noqa: E402
from agent.layers import build_layer  # noqa: E402
from agent.mapping import plan_items  # noqa: E402
from agent.models import PlanItem, PurgeOutcome, PurgeStatus  # noqa: E402
from agent.nodes.execute import execute_plan, unique_targets  # noqa: E402
from agent.state import AgentContext  # noqa: E402
from agent.storage.database import make_engine  # noqa: E402
from agent.storage.in_flight import FIRST, PurgeJournal  # noqa: E402
from agent.storage.migrations import upgrade  # noqa: E402
from bench.scratch_db import create_database, drop_database  # noqa: E402
from tests.fakes import FakeCloudflare, FakeFastly  # noqa: E402

CF_CONCURRENCY, FASTLY_CONCURRENCY = 4, 16


class RemoteFake:
    """A loopback fake API in its own process, as a real CDN API is: its threads must not take the GIL
    from the engine being measured. Its request log is fetched over a pipe."""

    def __init__(self, kind: str, latency: float):
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=_serve_fake, args=(kind, latency, child), daemon=True)
        self._process.start()
        self.url, self.token, self.zone_or_service = self._conn.recv()

    def ask(self, command: str):
        self._conn.send(command)
        return self._conn.recv()

    def close(self) -> None:
        self._process.terminate()
        self._process.join()


def _serve_fake(kind: str, latency: float, conn) -> None:
    fake = FakeCloudflare(latency_seconds=latency) if kind == "cloudflare" else FakeFastly(latency_seconds=latency)
    ident = (fake.token, fake.zone_id) if kind == "cloudflare" else (fake.key, fake.service_id)
    conn.send((fake.url, *ident))
    purged_kind = "files" if kind == "cloudflare" else "url"
    while True:
        command = conn.recv()
        if command == "requests":
            conn.send(len(fake.requests))
        elif command == "purged":
            conn.send(fake.purged(purged_kind))
        elif command == "reset":
            fake.reset_stats()
            fake.purges.clear()
            conn.send(True)


def bench_config(stack, cloudflare: RemoteFake, fastly: RemoteFake) -> AppConfig:
    data = stack.config_dict()
    data["sites"][0]["layers"] = ["appcache", "varnish", "edge", "cloudflare", "fastly"]
    data["sites"][0]["dependencies"] = []
    data["sites"][0]["discover_tags"] = False
    for layer in data["layers"]:
        layer["concurrency"] = 4  # local daemons answer in well under a millisecond
    data["layers"] += [
        {"name": "cloudflare", "kind": "cloudflare", "endpoint": cloudflare.url, "concurrency": CF_CONCURRENCY,
         "credentials": {"api_token": cloudflare.token}, "options": {"zone_id": cloudflare.zone_or_service}},
        {"name": "fastly", "kind": "fastly", "endpoint": fastly.url, "concurrency": FASTLY_CONCURRENCY,
         "credentials": {"api_key": fastly.token}, "options": {"service_id": fastly.zone_or_service}},
    ]
    return parse_config(data)


def plan_for(urls: list[str], config: AppConfig) -> list[PlanItem]:
    layers = {c.name: build_layer(c) for c in config.layers}
    return plan_items({url: (True, "requested") for url in urls}, {}, layers, config)


def lower_bound(items: list[PlanItem], config: AppConfig, latency: float) -> tuple[float, dict[str, float]]:
    """max over the latency-bearing layers of ceil(items / batch) / concurrency × latency."""
    bounds = {}
    for (name, operation), targets in unique_targets(items).items():
        if name not in ("cloudflare", "fastly"):
            continue  # local daemons add no artificial latency
        layer = build_layer(config.layer_named(name))
        requests = math.ceil(len(targets) / layer.items_per_request(operation.value))
        bounds[name] = requests / layer.config.concurrency * latency
    return max(bounds.values()), bounds


async def naive(urls: list[str], config: AppConfig) -> float:
    """The way a script would do it: each URL, each layer, one request at a time."""
    layers = [build_layer(c) for c in config.layers]
    start = time.perf_counter()
    try:
        for url in urls:
            for layer in layers:
                await layer.purge_urls([url])
    finally:
        for layer in layers:
            await layer.aclose()
    return time.perf_counter() - start


def open_journal(url: str) -> PurgeJournal:
    engine = make_engine(url)
    upgrade(url, engine)
    return PurgeJournal(engine)


def journal_calls(store: PurgeJournal | None):
    """What the execute node hands execute_plan: one noted batch per call, for one thread and pass."""
    if store is None:
        return None
    return lambda layer, operation, targets: store.sending("bench", FIRST, layer, operation.value, targets)


def run_engine(
    items: list[PlanItem], config: AppConfig, *, measure_memory: bool = False, journal: PurgeJournal | None = None,
) -> tuple[float, list[PurgeOutcome], int]:
    """One engine run: wall time, outcomes, and (when asked: tracemalloc slows Python down) peak memory."""
    if measure_memory:
        tracemalloc.start()
    start = time.perf_counter()
    outcomes = asyncio.run(execute_plan(items, AgentContext(config=config), lambda event: None, run_id="bench",
                                        journal=journal_calls(journal)))
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if measure_memory else 0
    tracemalloc.stop()
    return wall, outcomes, peak


def check_nothing_lost(items: list[PlanItem], outcomes: list[PurgeOutcome], cloudflare, fastly, urls) -> str:
    expected = {(layer, target) for (layer, _), targets in unique_targets(items).items() for target in targets}
    reported = Counter((o.layer, o.target) for o in outcomes)
    lost = expected - set(reported)
    doubled = [key for key, count in reported.items() if count > 1]
    failed = [o for o in outcomes if o.status == PurgeStatus.FAILED]
    cf_files = Counter(cloudflare.ask("purged"))
    fastly_urls = Counter(fastly.ask("purged"))
    api_lost = len(set(urls) - set(cf_files)) + len(urls) - len(fastly_urls)
    api_doubled = sum(1 for c in cf_files.values() if c > 1) + sum(1 for c in fastly_urls.values() if c > 1)
    return (f"lost {len(lost)}, double-reported {len(doubled)}, failed {len(failed)}; "
            f"API side: missing {api_lost}, purged twice {api_doubled}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=500)
    parser.add_argument("--big", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--journal", choices=("sqlite", "postgres", "both"), default="both",
                        help="where the batches are noted (the 5,000-URL run uses the first)")
    args = parser.parse_args()

    cloudflare, fastly = RemoteFake("cloudflare", args.latency), RemoteFake("fastly", args.latency)
    scratch, journals = None, {}
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp))
        try:
            config = bench_config(stack, cloudflare, fastly)
            if args.journal in ("sqlite", "both"):
                journals["sqlite"] = open_journal(f"sqlite:///{Path(tmp) / 'audit.sqlite'}")
            if args.journal in ("postgres", "both"):
                scratch, url = create_database("cachebot_throughput")
                journals["postgres"] = open_journal(url)
            journal = next(iter(journals.values()))
            urls = [f"https://shop.example/bench/page-{i}" for i in range(args.urls)]
            items = plan_for(urls, config)
            bare_wall = min(run_engine(items, config)[0] for _ in range(2))  # the first one warms up too
            cloudflare.ask("reset")
            fastly.ask("reset")
            walls = {}
            for name, store in journals.items():
                walls[name], outcomes, _ = run_engine(items, config, journal=store)
                if name != list(journals)[-1]:
                    cloudflare.ask("reset")
                    fastly.ask("reset")
            wall = walls[next(iter(journals))]
            bound, bounds = lower_bound(items, config, args.latency)

            print(f"== {len(urls)} distinct URLs × 5 layers ({args.latency * 1000:.0f} ms per CDN API request)")
            print(f"wall time                 {wall:8.3f} s")
            per_layer = Counter(o.layer for o in outcomes)
            print("requests per layer        "
                  f"cloudflare {cloudflare.ask('requests')}, fastly {fastly.ask('requests')}, "
                  + ", ".join(f"{name} {per_layer[name]} items" for name in ("appcache", "varnish", "edge")))
            print("lower bound               " + ", ".join(f"{k} {v:.3f} s" for k, v in bounds.items())
                  + f" → {bound:.3f} s")
            print(f"wall / lower bound        {wall / bound:8.2f}   (floor: ≤ 2.0)")
            print(f"without the journal       {bare_wall:8.3f} s   wall / lower bound {bare_wall / bound:.2f}")
            for name, noted in walls.items():
                print(f"journal on {name:<14} {noted:8.3f} s   wall / lower bound {noted / bound:.2f}"
                      f"   ({noted / bare_wall:.2f}× without; floor: ≤ 1.25 × lower bound)")
            print(f"correctness               {check_nothing_lost(items, outcomes, cloudflare, fastly, urls)}")

            if not args.skip_naive:
                naive_wall = asyncio.run(naive(urls, config))
                print(f"naive sequential          {naive_wall:8.3f} s   → engine is {naive_wall / wall:.1f}× faster"
                      " (floor: ≥ 20×)")

            big = [f"https://shop.example/bench/big-{i}" for i in range(args.big)]
            cloudflare.ask("reset")
            fastly.ask("reset")
            big_items = plan_for(big, config)
            big_wall, big_outcomes, _ = run_engine(big_items, config, journal=journal)
            big_bound, _ = lower_bound(big_items, config, args.latency)
            scale = args.big / args.urls
            print(f"== {args.big} URLs (×{scale:.0f})")
            print(f"wall time                 {big_wall:8.3f} s   (×{big_wall / wall:.1f} for ×{scale:.0f} the URLs;"
                  f" wall / lower bound {big_wall / big_bound:.2f})")
            print(f"correctness               {check_nothing_lost(big_items, big_outcomes, cloudflare, fastly, big)}")
            # memory in separate runs: tracemalloc slows Python down too much to time the same run
            small_peak = run_engine(items, config, measure_memory=True, journal=journal)[2]
            big_peak = run_engine(big_items, config, measure_memory=True, journal=journal)[2]
            print(f"peak traced memory        {small_peak / 1e6:.1f} MB for {len(urls)} URLs, {big_peak / 1e6:.1f} MB for"
                  f" {len(big)} (×{big_peak / small_peak:.1f} for ×{scale:.0f} the URLs)")
        finally:
            for store in journals.values():
                store.engine.dispose()
            if scratch is not None:
                drop_database(scratch)
            stack.stop()
            cloudflare.close()
            fastly.close()


if __name__ == "__main__":
    main()
