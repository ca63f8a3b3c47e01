"""Where cachebot keeps its records: one database URL picks SQLite (one machine) or PostgreSQL (a team).

The rule (``resolve_database_url``):

1. ``$CACHEBOT_DATABASE_URL`` when set, else
2. ``storage.database_url`` from the config, else
3. ``sqlite:///<dir of storage.sqlite_path>/audit.sqlite`` — a file next to the checkpoint file.

With a ``postgresql://`` URL the same database holds the LangGraph checkpoints (``PostgresSaver``) and the
audit tables, so every replica sees every pending approval and every record. With SQLite the checkpoints stay
in ``storage.sqlite_path`` (``SqliteSaver``, its own connection and tables) and the audit goes to its own file:
two files so the checkpointer's connection and SQLAlchemy's never wait on SQLite's single writer lock, and the
audit file can be copied, pruned or vacuumed on its own.

The schema is created and migrated by Alembic (``agent/storage/migrations``): ``upgrade()`` there runs on
every Agent start (a no-op when current) and from ``cachebot db upgrade``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL

from agent.config import StorageConfig

ENV_VAR = "CACHEBOT_DATABASE_URL"
AUDIT_FILE = "audit.sqlite"


def resolve_database_url(storage: StorageConfig, checkpoint_path: str | os.PathLike[str] | None = None) -> str:
    """The database for the audit (and, for PostgreSQL, the checkpoints): env, then config, then SQLite."""
    explicit = os.environ.get(ENV_VAR) or storage.database_url
    if explicit:
        return explicit
    checkpoint = Path(checkpoint_path or storage.sqlite_path)
    return f"sqlite:///{checkpoint.parent / AUDIT_FILE}"


def is_postgres(url: str) -> bool:
    return sqlalchemy_url(url).get_backend_name() == "postgresql"


def sqlalchemy_url(url: str) -> URL:
    """``postgresql://`` / ``postgres://`` use psycopg 3 (the driver PostgresSaver needs too)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def libpq_url(url: str) -> str:
    """The URL as psycopg/libpq takes it (no SQLAlchemy driver suffix), for the checkpointer's connections."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def display_url(url: str) -> str:
    """For messages and logs: the password is never shown."""
    parsed = sqlalchemy_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=True)


def sqlite_file(url: str) -> Path | None:
    parsed = sqlalchemy_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    """An engine for the audit database; SQLite files get their directory, WAL, a busy timeout and FKs."""
    parsed = sqlalchemy_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # pool_pre_ping: a restarted Postgres (or a PgBouncer recycle) costs one retry, not a failed request.
    # prepare_threshold=None: no server-side prepared statements, so PgBouncer in transaction mode works.
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         connect_args={"prepare_threshold": None})
