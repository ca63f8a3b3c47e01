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

psycopg and the PostgreSQL savers are imported only for a PostgreSQL database: on SQLite they are a third of what
starting the Agent imports besides LangGraph itself (bench/startup.py).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agent.storage.database import Database, libpq_url
# reading a thread's history back lives in agent.storage.history (no LangGraph there); its names, as before:
from agent.storage.history import (  # noqa: F401
    ATTEMPT_KEY, REQUEST_ID_KEY, RESUMED_AT_KEY, CheckpointRecord, Record, light_loads, uuid6_time,
)

log = logging.getLogger(__name__)

SETUP_LOCK = 7_240_517_302  # pg_advisory_lock key for PostgresSaver.setup()
POOL_SIZE = 4
SQLITE_BUSY_SECONDS = 30  # an async run's connection waits this long for another connection's write


def saver_connection() -> dict[str, Any]:
    """What PostgresSaver and AsyncPostgresSaver need from their connections (langgraph-checkpoint-postgres docs)."""
    from psycopg.rows import dict_row

    return {"autocommit": True, "row_factory": dict_row, "prepare_threshold": None}


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
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    with psycopg.connect(libpq_url(database_url), **saver_connection()) as connection:
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
        import psycopg
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        # one connection is enough for one run (the saver takes turns on it), with the sync pool's settings
        async with await psycopg.AsyncConnection.connect(libpq_url(database.url), **saver_connection()) as connection:
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
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg_pool import ConnectionPool

    prepare_postgres(database_url)
    pool = ConnectionPool(libpq_url(database_url), kwargs=saver_connection(), min_size=1, max_size=pool_size, open=True,
                          check=ConnectionPool.check_connection, name="cachebot-checkpoints")
    return Checkpointer(PostgresSaver(pool, serde=serde), "postgres", pool.close)
