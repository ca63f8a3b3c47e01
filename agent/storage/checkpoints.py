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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from langgraph.checkpoint.base import BaseCheckpointSaver

from agent.storage.database import is_postgres, libpq_url

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
