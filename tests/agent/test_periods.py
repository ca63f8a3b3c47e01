"""Periods people name: ``--since`` values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agent.periods import parse_since


def test_parse_since():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="not a time"):
        parse_since("last tuesday", now)
