"""Where approval requests were posted: recorded once per place, read back per run, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone


def run_ids(n: int) -> list[str]:
    """Thread ids of this test only (the PostgreSQL database is shared by the session)."""
    return [f"C1:{uuid.uuid4().int % 10**10}.{i}" for i in range(n)]


def test_copies_are_kept_per_run_oldest_first_and_recorded_once(make_agent):
    copies = make_agent().storage.approval_copies
    run, other, never = run_ids(3)
    start = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
    copies.add(run, "C1", "1.3", at=start)
    copies.add(run, "CAPPROVERS", "9.1", at=start + timedelta(seconds=1))
    copies.add(run, "C1", "1.3", at=start + timedelta(seconds=2))  # the same place again: no second row
    copies.add(other, "C1", "5.7", at=start)
    assert copies.of(run) == [("C1", "1.3"), ("CAPPROVERS", "9.1")]
    assert copies.of(never) == []


def test_is_copy_names_exactly_the_recorded_places(make_agent):
    copies = make_agent().storage.approval_copies
    run, other = run_ids(2)
    copies.add(run, "CAPPROVERS", "9.1")
    assert copies.is_copy(run, "CAPPROVERS", "9.1")
    assert not copies.is_copy(run, "CAPPROVERS", "9.2")
    assert not copies.is_copy(other, "CAPPROVERS", "9.1")  # another run's copy
    assert not copies.is_copy(run, "CAPPROVERS", None)
