"""The exactly-once claim store: one winner per key, across threads and processes; release; housekeeping."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from agent.config import parse_config
from agent.storage.claims import ClaimStore
from agent.storage.database import CLAIMS_FILE, Database


def test_first_claim_wins_and_release_frees_it(tmp_path):
    store = ClaimStore.in_file(tmp_path / "c.sqlite")
    assert store.claim("event:Ev1") is True
    assert store.claim("event:Ev1") is False
    assert store.claim("event:Ev2") is True
    store.release("event:Ev1")
    assert store.claim("event:Ev1") is True


def test_claimed_tells_whether_a_key_was_taken_without_taking_it(tmp_path):
    store = ClaimStore.in_file(tmp_path / "claims.sqlite")
    assert not store.claimed("assistant:D1:1.2")
    assert not store.claimed("assistant:D1:1.2")  # asking does not claim
    assert store.claim("assistant:D1:1.2")
    assert store.claimed("assistant:D1:1.2")
    store.release("assistant:D1:1.2")
    assert not store.claimed("assistant:D1:1.2")
    store.close()


def test_a_second_store_on_the_same_file_sees_the_claims(tmp_path):
    ClaimStore.in_file(tmp_path / "c.sqlite").claim("decision:C1:1.2:abc")
    assert ClaimStore.in_file(tmp_path / "c.sqlite").claim("decision:C1:1.2:abc") is False


def test_exactly_one_of_many_threads_wins(tmp_path):
    store = ClaimStore.in_file(tmp_path / "c.sqlite")
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
    queue.put(ClaimStore.in_file(path).claim(key))


def test_exactly_one_of_many_processes_wins(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ClaimStore.in_file(path)  # create the table before the race
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
    assert Database.choose(config.storage).claims_file == tmp_path / "db" / CLAIMS_FILE
    assert ClaimStore.open(Database.choose(config.storage)).claim("x") and (tmp_path / "db" / CLAIMS_FILE).is_file()


def test_forget_older_than(tmp_path):
    store = ClaimStore.in_file(tmp_path / "c.sqlite")
    store.claim("old")
    time.sleep(0.05)
    assert store.forget_older_than(0.01) == 1
    assert store.claim("old") is True


# --- on the configured database: PostgreSQL table or SQLite file (ClaimStore.open) --------------------------


def _fresh_claims(database_url: str, tmp_path):
    store = ClaimStore.open(Database(database_url, tmp_path / "state.sqlite"))
    if store.kind == "postgres":
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
    store = ClaimStore.open(Database(url, Path(sqlite_path)))
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


def test_a_claims_file_from_before_keeps_its_claims(tmp_path):
    import sqlite3

    path = tmp_path / "claims.sqlite"
    with sqlite3.connect(path) as db:  # the table as claims.sqlite held it before it had the shared name
        db.execute("CREATE TABLE claims (key TEXT PRIMARY KEY, claimed_at REAL NOT NULL)")
        db.execute("INSERT INTO claims VALUES ('digest:C1:2026-W48', 1.0)")
    db.close()
    store = ClaimStore.in_file(path)
    assert store.claim("digest:C1:2026-W48") is False
    assert store.claim("event:Ev1") is True
