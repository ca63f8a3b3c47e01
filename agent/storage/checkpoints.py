"""The LangGraph checkpointer: ``SqliteSaver`` on one machine, ``PostgresSaver`` for a team, and their async
twins (``AsyncSqliteSaver``, ``AsyncPostgresSaver``) on the same checkpoints for async code.

- SQLite: checkpoints in the ``Database``'s checkpoint file (``storage.sqlite_path`` or the Agent's
  ``checkpoint_path``); the sync saver has one ``sqlite3`` connection shared across threads (the saver locks
  around it), the async one an ``aiosqlite`` connection.
- PostgreSQL: the savers on small psycopg pools whose connections are opened with ``autocommit=True,
  row_factory=dict_row, prepare_threshold=None`` (what the savers require; the last keeps them working behind
  PgBouncer). ``setup()`` creates/migrates the savers' tables; it is idempotent and runs under a PostgreSQL
  advisory lock so replicas starting at once do not race. ``open_checkpointer`` runs it, so the async saver
  (opened from a ``Storage``, after it) finds the tables ready.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import aiosqlite
import ormsgpack
import psycopg
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from agent.storage.database import Database, libpq_url

log = logging.getLogger(__name__)

# Checkpoint metadata the Agent adds (the savers copy a run's config metadata into each checkpoint it writes):
# which request wrote it and, for a run picked up again after a crash, which attempt and when that attempt began.
# `cachebot trace` (agent/trace.py) reads them back.
REQUEST_ID_KEY = "cachebot_request_id"
ATTEMPT_KEY = "cachebot_attempt"
RESUMED_AT_KEY = "cachebot_resumed_at"
SETUP_LOCK = 7_240_517_302  # pg_advisory_lock key for PostgresSaver.setup()
POOL_SIZE = 4
SQLITE_BUSY_SECONDS = 30  # an async run's connection waits this long for another connection's write
# what PostgresSaver and AsyncPostgresSaver need from their connections (langgraph-checkpoint-postgres docs)
SAVER_CONNECTION: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "prepare_threshold": None}


@dataclass
class Checkpointer:
    saver: BaseCheckpointSaver
    kind: str  # "sqlite" or "postgres"
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def close(self) -> None:
        self._close()


def open_checkpointer(database: Database, *, pool_size: int = POOL_SIZE,
                      serde: SerializerProtocol | None = None) -> Checkpointer:
    """The synchronous saver for ``database``: PostgreSQL's, else SQLite's checkpoint file. ``serde`` writes and
    reads the checkpoints (LangGraph's default when None)."""
    if database.postgres:
        return _postgres(database.url, pool_size, serde)
    return _sqlite(database.checkpoint_file, serde)


def prepare_postgres(database_url: str) -> None:
    """Create or migrate ``PostgresSaver``'s tables, one replica at a time (idempotent)."""
    with psycopg.connect(libpq_url(database_url), **SAVER_CONNECTION) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
        try:
            PostgresSaver(connection).setup()
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))


@asynccontextmanager
async def open_async_checkpointer(database: Database, *,
                                  serde: SerializerProtocol | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """The asynchronous saver (``AsyncPostgresSaver`` / ``AsyncSqliteSaver``) ``astream`` needs, on the same
    checkpoints, open for the ``async with`` block: its connection belongs to the event loop it was opened on, so
    it is opened for one run and closed after it. On PostgreSQL the tables must exist (``open_checkpointer`` or
    ``prepare_postgres`` first); SQLite creates its own. ``serde``: as for ``open_checkpointer``."""
    if database.postgres:
        # one connection is enough for one run (the saver takes turns on it), with the sync pool's settings
        async with await psycopg.AsyncConnection.connect(libpq_url(database.url), **SAVER_CONNECTION) as connection:
            yield AsyncPostgresSaver(connection, serde=serde)
        return
    database.checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
    # its own connection, beside the sync saver's and other runs': wait for SQLite's writer lock, do not fail
    async with aiosqlite.connect(database.checkpoint_file, timeout=SQLITE_BUSY_SECONDS) as connection:
        yield AsyncSqliteSaver(connection, serde=serde)


def _sqlite(path: Path, serde: SerializerProtocol | None) -> Checkpointer:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False)
    return Checkpointer(SqliteSaver(connection, serde=serde), "sqlite", connection.close)


def _postgres(database_url: str, pool_size: int, serde: SerializerProtocol | None) -> Checkpointer:
    prepare_postgres(database_url)
    pool = ConnectionPool(libpq_url(database_url), kwargs=SAVER_CONNECTION, min_size=1, max_size=pool_size, open=True,
                          check=ConnectionPool.check_connection, name="cachebot-checkpoints")
    return Checkpointer(PostgresSaver(pool, serde=serde), "postgres", pool.close)


# --- reading a thread's history back for `cachebot trace` (agent/trace.py) -----------------------------------
#
# LangGraph's ``list()`` revives every channel of every checkpoint: for a 5,000-page run, nine copies of a plan,
# purge answers and results of 15,000 records each (seconds). A trace needs each checkpoint's metadata and time
# and the writes its step made, so it reads those rows and decodes the writes into plain ``Record``s: no class
# named in the stored bytes is imported or called, which is also the safest way to read them. Should the savers'
# tables ever change shape, it falls back to ``list()``.


class Record:
    """A stored record (a pydantic model, a dataclass) as its fields: ``record.status``; ``record_kind`` is its
    class's name ("Plan", "PurgeOutcome"), ``fields`` the dict. Enums come back as their values."""

    __slots__ = ("fields", "record_kind")

    def __init__(self, fields: dict, kind: str):
        self.fields = fields
        self.record_kind = kind

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{self.record_kind}({self.fields!r})"


@dataclass
class CheckpointRecord:
    checkpoint_id: str
    ts: datetime
    metadata: dict[str, Any]
    writes: list[tuple[str, str, Any]]  # (task id, channel, value) in the order written


def _record_hook(code: int, data: bytes) -> Any:
    # LangGraph's msgpack extensions (langgraph.checkpoint.serde.jsonplus): each holds (module, name, payload…)
    parts = ormsgpack.unpackb(data, ext_hook=_record_hook, option=ormsgpack.OPT_NON_STR_KEYS)
    if not isinstance(parts, (list, tuple)) or len(parts) < 3:
        return parts
    payload = parts[2]
    return Record(payload, str(parts[1])) if isinstance(payload, dict) else payload


def light_loads(kind: str | None, blob: bytes | None, serde: SerializerProtocol | None = None) -> Any:
    """A stored write's value as plain data and ``Record``s. Never unpickles: an unknown encoding goes to
    ``serde`` (the checkpoints' own serializer, with its allow-list), else comes back as None."""
    if kind is None or kind == "null" or blob is None:
        return None
    if kind == "msgpack":
        return ormsgpack.unpackb(bytes(blob), ext_hook=_record_hook, option=ormsgpack.OPT_NON_STR_KEYS)
    if kind == "json":
        return json.loads(bytes(blob))
    if kind in ("bytes", "bytearray"):
        return bytes(blob)
    if serde is not None and kind != "pickle":
        return serde.loads_typed((kind, bytes(blob)))
    return None


def uuid6_time(checkpoint_id: str) -> datetime:
    """When a checkpoint was made, from its id (LangGraph's ids are UUIDv6: time first, 100 ns since 1582)."""
    value = uuid.UUID(checkpoint_id).int
    high, mid, low = value >> 96, (value >> 80) & 0xFFFF, (value >> 64) & 0x0FFF
    ticks = (high << 28) | (mid << 12) | low
    return UUID_EPOCH + timedelta(microseconds=ticks // 10)


UUID_EPOCH = datetime(1582, 10, 15, tzinfo=timezone.utc)


def thread_history(database: Database, checkpointer: Checkpointer | BaseCheckpointSaver, thread_id: str,
                   *, engine: Any = None, serde: SerializerProtocol | None = None) -> list[CheckpointRecord]:
    """The thread's checkpoints, oldest first, with their metadata, time and writes (root namespace only)."""
    try:
        if database.postgres:
            return _postgres_history(engine, thread_id, serde)
        return _sqlite_history(database.checkpoint_file, thread_id, serde)
    except (sqlite3.Error, psycopg.Error, LookupError, ValueError, TypeError):
        log.warning("reading checkpoints the quick way failed; reading them through LangGraph", exc_info=True)
    saver = checkpointer.saver if isinstance(checkpointer, Checkpointer) else checkpointer
    found = [CheckpointRecord(t.config["configurable"]["checkpoint_id"], datetime.fromisoformat(t.checkpoint["ts"]),
                              dict(t.metadata or {}), list(t.pending_writes or ()))
             for t in saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})]
    found.reverse()
    return found


def _assemble(checkpoints: list[tuple[str, Any]], writes: list[tuple[str, str, str, str | None, bytes | None]],
              serde: SerializerProtocol | None) -> list[CheckpointRecord]:
    by_id = {cid: CheckpointRecord(cid, uuid6_time(cid), meta if isinstance(meta, dict) else json.loads(meta or "{}"),
                                   []) for cid, meta in checkpoints}
    for cid, task_id, channel, kind, blob in writes:
        if cid in by_id:
            by_id[cid].writes.append((task_id, channel, light_loads(kind, blob, serde)))
    return sorted(by_id.values(), key=lambda record: record.checkpoint_id)


def _sqlite_history(path: Path, thread_id: str, serde: SerializerProtocol | None) -> list[CheckpointRecord]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_BUSY_SECONDS)) as db:
        checkpoints = db.execute("SELECT checkpoint_id, metadata FROM checkpoints WHERE thread_id = ? AND "
                                 "checkpoint_ns = '' ORDER BY checkpoint_id", (thread_id,)).fetchall()
        writes = db.execute("SELECT checkpoint_id, task_id, channel, type, value FROM writes WHERE thread_id = ? "
                            "AND checkpoint_ns = '' ORDER BY checkpoint_id, task_id, idx", (thread_id,)).fetchall()
    return _assemble(checkpoints, writes, serde)


def _postgres_history(engine: Any, thread_id: str, serde: SerializerProtocol | None) -> list[CheckpointRecord]:
    from sqlalchemy import text

    with engine.connect() as db:
        checkpoints = db.execute(text("SELECT checkpoint_id, metadata FROM checkpoints WHERE thread_id = :t AND "
                                      "checkpoint_ns = '' ORDER BY checkpoint_id"), {"t": thread_id}).all()
        writes = db.execute(text("SELECT checkpoint_id, task_id, channel, type, blob FROM checkpoint_writes WHERE "
                                 "thread_id = :t AND checkpoint_ns = '' ORDER BY checkpoint_id, task_id, idx"),
                            {"t": thread_id}).all()
    return _assemble([tuple(row) for row in checkpoints], [tuple(row) for row in writes], serde)
