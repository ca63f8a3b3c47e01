"""Exactly-once claims and per-thread locks, in this process and across processes and replicas.

LangGraph has no per-thread lock and chat platforms deliver events more than once (retries, double clicks,
several app replicas). Two primitives close that gap:

Claims (``claim(key) -> bool``: the first caller wins, everyone after gets ``False``)
    A front end claims ``event:<id>`` before starting a run and ``decision:<thread>:<interrupt>`` before
    resuming one. On PostgreSQL the arbiter is a row in ``cachebot_claims`` (created by the Alembic migration
    ``0002_claims``, in the same database as the audit and the checkpoints) inserted with
    ``INSERT … ON CONFLICT DO NOTHING``; on one machine it is a SQLite file next to the checkpoints
    (``INSERT OR IGNORE``). ``ClaimStore.open(database_url, sqlite_path)`` picks one.

Thread locks (``ThreadLocks.hold(thread_id)``)
    Every run or resume of one thread holds its lock, so two processes never run the same thread at once
    (which would fork its history). On PostgreSQL: a session advisory lock keyed by a 64-bit hash of the
    thread id, held on its own connection for the run; on SQLite: an ``fcntl.flock`` on one of a fixed set of
    lock files next to the database (threads hash to a bucket; two threads sharing a bucket only take turns).
    Either lock dies with its process (the connection closes, the file is closed), which is what crash
    recovery relies on: ``try_hold`` succeeds on a thread whose runner died, and fails on one still running.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from agent.config import AppConfig

CLAIMS_FILE = "claims.sqlite"
LOCKS_DIR = "locks"
LOCK_BUCKETS = 1024
THREAD_LOCK_NAMESPACE = "cachebot:thread:"


def claims_path(config: AppConfig) -> Path:
    """Where the claims live on one machine: next to the checkpoint database."""
    return Path(config.storage.sqlite_path).parent / CLAIMS_FILE


class Claims(Protocol):
    def claim(self, key: str) -> bool: ...
    def release(self, key: str) -> None: ...
    def forget_older_than(self, seconds: float) -> int: ...
    def close(self) -> None: ...


class ClaimStore:
    """SQLite claims: ``claim(key)`` is True for exactly one caller per key, across threads and processes.

    ``ClaimStore.open(url, sqlite_path)`` / ``ClaimStore.for_config(config)`` give the PostgreSQL store instead
    when the database URL is PostgreSQL."""

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, claimed_at REAL NOT NULL)")

    @classmethod
    def open(cls, database_url: str | None, sqlite_path: str | os.PathLike[str], *, engine: Any = None) -> Claims:
        """PostgreSQL claims when ``database_url`` is PostgreSQL (``engine``: reuse one), else SQLite next to
        ``sqlite_path`` (the checkpoint file)."""
        from agent.storage.database import is_postgres

        if database_url and is_postgres(database_url):
            return PostgresClaimStore(database_url, engine=engine)
        return cls(Path(sqlite_path).parent / CLAIMS_FILE)

    @classmethod
    def for_config(cls, config: AppConfig, database_url: str | None = None) -> Claims:
        from agent.storage.database import resolve_database_url

        url = database_url or resolve_database_url(config.storage)
        return cls.open(url, config.storage.sqlite_path)

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

    def close(self) -> None:
        pass

    def _connect(self) -> _Connection:
        return _Connection(self.path)


class PostgresClaimStore:
    """Claims in ``cachebot_claims`` on PostgreSQL: one winner per key across every replica."""

    kind = "postgres"

    def __init__(self, database_url: str, *, engine: Any = None):
        from agent.storage.database import make_engine
        from agent.storage.migrations import upgrade

        self._own = engine is None
        self.engine = engine or make_engine(database_url)
        if self._own:
            upgrade(database_url, self.engine)  # the table comes from migration 0002_claims

    def claim(self, key: str) -> bool:
        from sqlalchemy import text

        with self.engine.begin() as db:
            inserted = db.execute(text("INSERT INTO cachebot_claims (key, claimed_at) VALUES (:key, :at) "
                                       "ON CONFLICT (key) DO NOTHING RETURNING key"),
                                  {"key": key, "at": time.time()}).first()
        return inserted is not None

    def release(self, key: str) -> None:
        from sqlalchemy import text

        with self.engine.begin() as db:
            db.execute(text("DELETE FROM cachebot_claims WHERE key = :key"), {"key": key})

    def forget_older_than(self, seconds: float) -> int:
        from sqlalchemy import text

        with self.engine.begin() as db:
            return db.execute(text("DELETE FROM cachebot_claims WHERE claimed_at < :cutoff"),
                              {"cutoff": time.time() - seconds}).rowcount or 0

    def close(self) -> None:
        if self._own:
            self.engine.dispose()


class _Connection:
    """One short-lived autocommit connection per operation: safe from any thread, no shared cursor state."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, *exc: object) -> None:
        self._db.close()


# ------------------------------------------------------------------------------------------- thread locks


def lock_key(thread_id: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` (stable across processes, unlike ``hash()``)."""
    digest = hashlib.blake2b((THREAD_LOCK_NAMESPACE + thread_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ThreadLocks:
    """One lock per LangGraph thread, held across processes: ``with locks.hold(tid): …`` waits for it,
    ``with locks.try_hold(tid) as got: …`` does not wait (``got`` is False when someone holds it).

    Inside one process a ``threading.Lock`` per thread comes first, so the cross-process lock is asked for
    by at most one thread of this process at a time."""

    def __init__(self) -> None:
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @classmethod
    def open(cls, database_url: str | None, sqlite_path: str | os.PathLike[str]) -> ThreadLocks:
        from agent.storage.database import is_postgres

        if database_url and is_postgres(database_url):
            return PostgresThreadLocks(database_url)
        return FileThreadLocks(Path(sqlite_path).parent / LOCKS_DIR)

    def _local_lock(self, thread_id: str) -> threading.Lock:
        with self._guard:
            return self._local.setdefault(thread_id, threading.Lock())

    @contextmanager
    def hold(self, thread_id: str) -> Iterator[None]:
        with self._local_lock(thread_id):
            with self._shared(thread_id, wait=True):
                yield

    @contextmanager
    def try_hold(self, thread_id: str) -> Iterator[bool]:
        local = self._local_lock(thread_id)
        if not local.acquire(blocking=False):
            yield False
            return
        try:
            with self._shared(thread_id, wait=False) as got:
                yield got
        finally:
            local.release()

    @contextmanager
    def _shared(self, thread_id: str, *, wait: bool) -> Iterator[bool]:
        yield True

    def close(self) -> None:
        pass


class FileThreadLocks(ThreadLocks):
    """``flock`` on ``<dir>/thread-<bucket>.lock``: for processes sharing one machine's SQLite files."""

    def __init__(self, directory: str | os.PathLike[str], buckets: int = LOCK_BUCKETS):
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.buckets = buckets

    def path_for(self, thread_id: str) -> Path:
        return self.directory / f"thread-{lock_key(thread_id) % self.buckets:04d}.lock"

    @contextmanager
    def _shared(self, thread_id: str, *, wait: bool) -> Iterator[bool]:
        fd = os.open(self.path_for(thread_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class PostgresThreadLocks(ThreadLocks):
    """Session advisory locks (``pg_advisory_lock(key)``) on connections of their own (a lock held for a whole
    run must not take a connection from the audit's pool). A dead process's connection closes and PostgreSQL
    releases its locks."""

    def __init__(self, database_url: str, pool_size: int = 16):
        super().__init__()
        from sqlalchemy import create_engine

        from agent.storage.database import sqlalchemy_url

        self.engine = create_engine(sqlalchemy_url(database_url), pool_pre_ping=True, pool_size=pool_size,
                                    max_overflow=pool_size, connect_args={"prepare_threshold": None})

    @contextmanager
    def _shared(self, thread_id: str, *, wait: bool) -> Iterator[bool]:
        from sqlalchemy import text

        key = lock_key(thread_id)
        with self.engine.connect() as db:
            db.execution_options(isolation_level="AUTOCOMMIT")
            if wait:
                db.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            elif not db.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one():
                yield False
                return
            try:
                yield True
            finally:
                try:
                    db.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except Exception:  # a broken connection is discarded by the pool; the server released the lock
                    db.invalidate()

    def close(self) -> None:
        self.engine.dispose()
