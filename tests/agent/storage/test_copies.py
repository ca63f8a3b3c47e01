"""Where approval requests were posted: recorded once per place, read back per run, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def test_copies_are_kept_per_run_oldest_first_and_recorded_once(make_agent):
    copies = make_agent().storage.approval_copies
    start = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
    copies.add("C1:1.2", "C1", "1.3", at=start)
    copies.add("C1:1.2", "CAPPROVERS", "9.1", at=start + timedelta(seconds=1))
    copies.add("C1:1.2", "C1", "1.3", at=start + timedelta(seconds=2))  # the same place again: no second row
    copies.add("C1:5.6", "C1", "5.7", at=start)
    assert copies.of("C1:1.2") == [("C1", "1.3"), ("CAPPROVERS", "9.1")]
    assert copies.of("C9:0.0") == []


def test_is_copy_names_exactly_the_recorded_places(make_agent):
    copies = make_agent().storage.approval_copies
    copies.add("C1:1.2", "CAPPROVERS", "9.1")
    assert copies.is_copy("C1:1.2", "CAPPROVERS", "9.1")
    assert not copies.is_copy("C1:1.2", "CAPPROVERS", "9.2")
    assert not copies.is_copy("C1:5.6", "CAPPROVERS", "9.1")  # another run's copy
    assert not copies.is_copy("C1:1.2", "CAPPROVERS", None)
