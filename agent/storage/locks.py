"""Per-thread locks across processes and replicas: every run or resume of one LangGraph thread holds its lock,
so two processes never run the same thread at once (which would fork its history).

- PostgreSQL: a session advisory lock keyed by a 64-bit hash of the thread id, held on its own connection for
  the run;
- SQLite (one machine): an ``fcntl.flock`` on one of a fixed set of lock files next to the checkpoints
  (threads hash to a bucket; two threads sharing a bucket only take turns).

Either lock dies with its process (the connection closes, the file is closed), which is what crash recovery
relies on: ``try_hold`` succeeds on a thread whose runner died, and fails on one still running.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from agent.storage.database import Database, make_engine

LOCK_BUCKETS = 1024
THREAD_LOCK_NAMESPACE = "cachebot:thread:"
LOCK_CONNECTIONS = 16  # runs holding a thread lock at once, per process, before more connections overflow


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
    def open(cls, database: Database) -> ThreadLocks:
        if database.postgres:
            return PostgresThreadLocks(database.url)
        return FileThreadLocks(database.locks_dir)

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

    def __init__(self, database_url: str, pool_size: int = LOCK_CONNECTIONS):
        super().__init__()
        self.engine = make_engine(database_url, pool_size=pool_size)

    @contextmanager
    def _shared(self, thread_id: str, *, wait: bool) -> Iterator[bool]:
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
