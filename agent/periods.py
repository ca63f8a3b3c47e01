"""Periods of time people name: ``--since 24h`` on the command line, "what was purged yesterday?" in a chat."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """``24h``, ``7d``, ``30m``, ``2w``, a date (``2026-11-01``, midnight UTC) or an ISO datetime."""
    if not value:
        return None
    now = now or utc_now()
    if match := _RELATIVE.match(value):
        return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    if value.strip().lower() == "today":
        return datetime.combine(now.date(), time(), timezone.utc)
    if value.strip().lower() == "yesterday":
        return datetime.combine(now.date() - timedelta(days=1), time(), timezone.utc)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return datetime.combine(date.fromisoformat(value.strip()), time(), timezone.utc)
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a time: use 24h, 7d, 30m, 2w, or a date like 2026-11-01") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


_LAST_N = re.compile(r"\b(?:last|past|previous)\s+(\d+)\s*(hours?|days?|weeks?)\b", re.IGNORECASE)


def window_in(message: str, now: datetime) -> tuple[datetime | None, datetime | None, str]:
    """The time window a history question names: (since, until, how to say it). Default: the last 7 days."""
    words = message.lower()
    midnight = datetime.combine(now.astimezone(timezone.utc).date(), time(), timezone.utc)
    if match := _LAST_N.search(words):
        n, unit = int(match.group(1)), match.group(2).rstrip("s") + "s"
        return now - timedelta(**{unit: n}), None, f"in the last {n} {unit if n != 1 else unit[:-1]}"
    if re.search(r"\b(today|heute|aujourd'hui|hoy|vandaag)\b", words):
        return midnight, None, "today"
    if re.search(r"\b(yesterday|gestern|hier|ayer|gisteren)\b", words):
        return midnight - timedelta(days=1), midnight, "yesterday"
    if re.search(r"\b(this|last|past) week\b", words):
        return now - timedelta(days=7), None, "in the last 7 days"
    if re.search(r"\b(this|last|past) month\b", words):
        return now - timedelta(days=30), None, "in the last 30 days"
    return now - timedelta(days=7), None, "in the last 7 days"
