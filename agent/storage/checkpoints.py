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

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiosqlite
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
