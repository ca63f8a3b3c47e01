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
