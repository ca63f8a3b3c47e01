"""The journal of purges in flight: one row per batch, read back per thread and pass, forgotten when the run ends,
on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from agent.storage.in_flight import FIRST, REPAIR, InFlight
from agent.storage.tables import purges_in_flight
from sqlalchemy import func, select


def thread_ids(n: int) -> list[str]:
    """Thread ids of this test only (the PostgreSQL database is shared by the session)."""
    return [f"C1:{uuid.uuid4().int % 10**10}.{i}" for i in range(n)]


def test_batches_are_read_back_per_thread_and_pass_in_the_order_they_went(make_agent):
    journal = make_agent().storage.purges_in_flight
    run, other = thread_ids(2)
    journal.sending(run, FIRST, "appcache", "purge_url", ["https://shop.example/a", "https://shop.example/b"])
    journal.sending(run, FIRST, "varnish", "purge_tag", ["pricing"])
    journal.sending(run, REPAIR, "edge", "purge_url", ["https://shop.example/a"])
    journal.sending(other, FIRST, "edge", "purge_url", ["https://shop.example/z"])

    assert journal.of(run, FIRST) == [
        InFlight("appcache", "purge_url", ("https://shop.example/a", "https://shop.example/b")),
        InFlight("varnish", "purge_tag", ("pricing",)),
    ]
    assert journal.of(run, REPAIR) == [InFlight("edge", "purge_url", ("https://shop.example/a",))]


def test_one_row_per_batch_however_many_pages_it_holds(make_agent):
    journal = make_agent().storage.purges_in_flight
    [run] = thread_ids(1)
    journal.sending(run, FIRST, "fastly", "purge_url", [f"https://shop.example/p{i}" for i in range(500)])
    with journal.engine.connect() as db:
        rows = db.execute(select(func.count()).select_from(purges_in_flight)
                          .where(purges_in_flight.c.thread_id == run)).scalar_one()
    assert rows == 1 and len(journal.of(run, FIRST)[0].targets) == 500


def test_a_thread_forgotten_has_nothing_in_flight_and_others_keep_theirs(make_agent):
    journal = make_agent().storage.purges_in_flight
    run, other = thread_ids(2)
    journal.sending(run, FIRST, "edge", "purge_url", ["https://shop.example/a"])
    journal.sending(other, FIRST, "edge", "purge_url", ["https://shop.example/b"])
    journal.forget(run)
    assert journal.of(run, FIRST) == []
    assert journal.of(other, FIRST) == [InFlight("edge", "purge_url", ("https://shop.example/b",))]
