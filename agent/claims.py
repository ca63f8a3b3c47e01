"""Exactly-once claims: the first caller to claim a key wins, in this process or any other.

LangGraph has no per-thread lock and chat platforms deliver events more than once (retries, double clicks,
two app instances). A front end claims ``event:<id>`` before starting a run and ``decision:<thread>:<interrupt>``
before resuming one; whoever gets ``False`` does nothing. A SQLite row with a PRIMARY KEY is the arbiter
(``INSERT OR IGNORE``), so it holds across processes sharing the file. The interface is deliberately tiny
(``claim``/``release``) so that another store (Postgres ``INSERT … ON CONFLICT DO NOTHING``) can replace it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from agent.config import AppConfig

CLAIMS_FILE = "claims.sqlite"


def claims_path(config: AppConfig) -> Path:
    """Where the claims live: next to the checkpoint database."""
    return Path(config.storage.sqlite_path).parent / CLAIMS_FILE


class ClaimStore:
    """``claim(key)`` is True for exactly one caller per key, across threads and processes."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, claimed_at REAL NOT NULL)")

    @classmethod
    def for_config(cls, config: AppConfig) -> ClaimStore:
        return cls(claims_path(config))

    def claim(self, key: str) -> bool:
        """True only for the first caller that claims ``key``; everyone after gets False."""
        with self._connect() as db:
            cursor = db.execute("INSERT OR IGNORE INTO claims (key, claimed_at) VALUES (?, ?)", (key, time.time()))
            return cursor.rowcount == 1

    def release(self, key: str) -> None:
        """Give a claim back (the work it guarded did not happen, so a later attempt may claim it again)."""
        with self._connect() as db:
            db.execute("DELETE FROM claims WHERE key = ?", (key,))

    def forget_older_than(self, seconds: float) -> int:
        """Drop claims older than ``seconds`` (housekeeping; keep this longer than any retry window)."""
        with self._connect() as db:
            return db.execute("DELETE FROM claims WHERE claimed_at < ?", (time.time() - seconds,)).rowcount

    def _connect(self) -> _Connection:
        return _Connection(self.path)


class _Connection:
    """One short-lived autocommit connection per operation: safe from any thread, no shared cursor state."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, *exc: object) -> None:
        self._db.close()
