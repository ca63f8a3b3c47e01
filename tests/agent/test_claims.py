"""The exactly-once claim store: one winner per key, across threads and processes; release; housekeeping."""

from __future__ import annotations

import multiprocessing
import threading
import time

from agent.claims import CLAIMS_FILE, ClaimStore, claims_path
from agent.config import parse_config


def test_first_claim_wins_and_release_frees_it(tmp_path):
    store = ClaimStore(tmp_path / "c.sqlite")
    assert store.claim("event:Ev1") is True
    assert store.claim("event:Ev1") is False
    assert store.claim("event:Ev2") is True
    store.release("event:Ev1")
    assert store.claim("event:Ev1") is True


def test_a_second_store_on_the_same_file_sees_the_claims(tmp_path):
    ClaimStore(tmp_path / "c.sqlite").claim("decision:C1:1.2:abc")
    assert ClaimStore(tmp_path / "c.sqlite").claim("decision:C1:1.2:abc") is False


def test_exactly_one_of_many_threads_wins(tmp_path):
    store = ClaimStore(tmp_path / "c.sqlite")
    wins: list[bool] = []
    barrier = threading.Barrier(16)

    def racer() -> None:
        barrier.wait()
        wins.append(store.claim("same-key"))

    threads = [threading.Thread(target=racer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and len(wins) == 16


def _claim_in_process(path: str, key: str, start: float, queue) -> None:
    while time.time() < start:
        time.sleep(0.001)
    queue.put(ClaimStore(path).claim(key))


def test_exactly_one_of_many_processes_wins(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ClaimStore(path)  # create the table before the race
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = time.time() + 2.0
    procs = [ctx.Process(target=_claim_in_process, args=(path, "k", start, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results.count(True) == 1


def test_path_is_next_to_the_checkpoint_database(tmp_path):
    config = parse_config({
        "sites": [{"name": "s", "hosts": ["s.example"], "layers": ["v"]}],
        "layers": [{"name": "v", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "storage": {"sqlite_path": str(tmp_path / "db" / "state.sqlite")},
    })
    assert claims_path(config) == tmp_path / "db" / CLAIMS_FILE
    assert ClaimStore.for_config(config).claim("x") and (tmp_path / "db" / CLAIMS_FILE).is_file()


def test_forget_older_than(tmp_path):
    store = ClaimStore(tmp_path / "c.sqlite")
    store.claim("old")
    time.sleep(0.05)
    assert store.forget_older_than(0.01) == 1
    assert store.claim("old") is True


# --- on the configured database: PostgreSQL table or SQLite file (ClaimStore.open) --------------------------

from agent.claims import PostgresClaimStore, ThreadLocks  # noqa: E402


def _fresh_claims(database_url: str, tmp_path):
    store = ClaimStore.open(database_url, tmp_path / "state.sqlite")
    if isinstance(store, PostgresClaimStore):
        store.forget_older_than(-1e9)  # the session's PostgreSQL database is shared between tests
    return store


def test_open_picks_the_store_for_the_database(database_url, tmp_path):
    store = _fresh_claims(database_url, tmp_path)
    try:
        assert store.kind == ("postgres" if database_url.startswith("postgresql") else "sqlite")
        assert store.claim("event:EvA") is True
        assert store.claim("event:EvA") is False
        store.release("event:EvA")
        assert store.claim("event:EvA") is True
        assert store.forget_older_than(-1) >= 1 and store.claim("event:EvA") is True
    finally:
        store.close()


def _claim_on(url: str, sqlite_path: str, key: str, start: float, queue) -> None:
    store = ClaimStore.open(url, sqlite_path)
    while time.time() < start:
        time.sleep(0.001)
    queue.put(store.claim(key))
    store.close()


def test_exactly_one_process_wins_on_the_configured_database(database_url, tmp_path):
    _fresh_claims(database_url, tmp_path).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = time.time() + 4.0
    procs = [ctx.Process(target=_claim_on, args=(database_url, str(tmp_path / "state.sqlite"), "decision:C:1:i",
                                                 start, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results.count(True) == 1


HOLDER = """
import sys, time
from agent.claims import ThreadLocks
locks = ThreadLocks.open(sys.argv[1], sys.argv[2])
with locks.hold(sys.argv[3]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_thread_lock_holds_across_processes_and_dies_with_its_holder(database_url, tmp_path):
    import signal
    import subprocess
    import sys

    locks = ThreadLocks.open(database_url, tmp_path / "state.sqlite")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database_url, str(tmp_path / "state.sqlite"), "C1:1.2"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with locks.try_hold("C1:1.2") as got:
            assert got is False  # another process runs this thread
        with locks.try_hold("C1:9.9") as got:
            assert got is True  # other threads are free
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while True:  # PostgreSQL notices the closed connection at once; allow it a moment
            with locks.try_hold("C1:1.2") as got:
                if got or time.monotonic() > deadline:
                    break
            time.sleep(0.05)
        assert got is True
        with locks.hold("C1:1.2"):
            pass
    finally:
        holder.kill()
        holder.wait(10)
        locks.close()
