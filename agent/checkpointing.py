"""The LangGraph checkpointer for a database URL: ``SqliteSaver`` on one machine, ``PostgresSaver`` for a team.

- SQLite (``sqlite:///…`` or no URL): checkpoints in ``storage.sqlite_path`` (or the Agent's
  ``checkpoint_path``), one ``sqlite3`` connection shared across threads (the saver locks around it).
- PostgreSQL (``postgresql://…``): ``PostgresSaver`` on a small psycopg pool whose connections are opened with
  ``autocommit=True, row_factory=dict_row, prepare_threshold=None`` (what the saver requires; the last keeps it
  working behind PgBouncer). ``setup()`` creates/migrates the saver's tables; it is idempotent and runs under a
  PostgreSQL advisory lock so replicas starting at once do not race.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from langgraph.checkpoint.base import BaseCheckpointSaver

from agent.storage import is_postgres, libpq_url

SETUP_LOCK = 7_240_517_302  # pg_advisory_lock key for PostgresSaver.setup()


@dataclass
class Checkpointer:
    saver: BaseCheckpointSaver
    kind: str  # "sqlite" or "postgres"
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def close(self) -> None:
        self._close()


def open_checkpointer(database_url: str | None, sqlite_path: str | os.PathLike[str], *, pool_size: int = 4) -> Checkpointer:
    """A saver for ``database_url`` when it is PostgreSQL, else SQLite at ``sqlite_path``."""
    if database_url and is_postgres(database_url):
        return _postgres(libpq_url(database_url), pool_size)
    return _sqlite(Path(sqlite_path))


def _sqlite(path: Path) -> Checkpointer:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False)
    return Checkpointer(SqliteSaver(connection), "sqlite", connection.close)


def _postgres(conninfo: str, pool_size: int) -> Checkpointer:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "prepare_threshold": None}
    with psycopg.connect(conninfo, **kwargs) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
        try:
            PostgresSaver(connection).setup()
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
    pool = ConnectionPool(conninfo, kwargs=kwargs, min_size=1, max_size=pool_size, open=True,
                          check=ConnectionPool.check_connection, name="cachebot-checkpoints")
    return Checkpointer(PostgresSaver(pool), "postgres", pool.close)


# --- async: what ``astream`` needs (the sync savers raise on async methods) -----------------------------------

SQLITE_BUSY_SECONDS = 30  # an async run's connection waits this long for another connection's write


@asynccontextmanager
async def open_async_checkpointer(
    database_url: str | None, sqlite_path: str | os.PathLike[str]
) -> AsyncIterator[BaseCheckpointSaver]:
    """The async saver (``AsyncPostgresSaver`` / ``AsyncSqliteSaver``) for ``astream``, on the database and tables
    ``open_checkpointer`` uses. Its connection belongs to the event loop it was opened on, so it is opened for one
    run and closed after it. It does not set the tables up: ``open_checkpointer`` does (the Agent opens that once,
    when it starts; SQLite's async saver also creates its tables itself if they are missing)."""
    if database_url and is_postgres(database_url):
        async with _async_postgres(libpq_url(database_url)) as saver:
            yield saver
    else:
        async with _async_sqlite(Path(sqlite_path)) as saver:
            yield saver


@asynccontextmanager
async def _async_sqlite(path: Path) -> AsyncIterator[BaseCheckpointSaver]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    # its own connection, beside the sync saver's and other runs': wait for SQLite's writer lock, do not fail
    async with aiosqlite.connect(path, timeout=SQLITE_BUSY_SECONDS) as connection:
        yield AsyncSqliteSaver(connection)


@asynccontextmanager
async def _async_postgres(conninfo: str) -> AsyncIterator[BaseCheckpointSaver]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    # one connection is enough for one run (the saver takes turns on it); the sync pool's settings (PgBouncer-safe)
    async with await AsyncConnection.connect(conninfo, autocommit=True, row_factory=dict_row,
                                             prepare_threshold=None) as connection:
        yield AsyncPostgresSaver(connection)
