"""Where cachebot keeps its records: one database URL picks SQLite (one machine) or PostgreSQL (a team).

``Database.choose`` makes that decision once (``agent.storage.Storage.open`` calls it); every store is then
built from the ``Database`` it returns, so no two parts of cachebot can pick different places.

The rule (``resolve_database_url``):

1. ``$CACHEBOT_DATABASE_URL`` when set, else
2. ``storage.database_url`` from the config, else
3. ``sqlite:///<dir of storage.sqlite_path>/audit.sqlite`` — a file next to the checkpoint file.

With a ``postgresql://`` URL the same database holds the LangGraph checkpoints (``PostgresSaver``) and the
audit tables, so every replica sees every pending approval and every record. With SQLite the checkpoints stay
in ``storage.sqlite_path`` (``SqliteSaver``, its own connection and tables) and the audit goes to its own file:
two files so the checkpointer's connection and SQLAlchemy's never wait on SQLite's single writer lock, and the
audit file can be copied, pruned or vacuumed on its own. On SQLite the claims (``claims.sqlite``) and the
thread-lock files (``locks/``) are next to the checkpoint file too; on PostgreSQL both live in the database.

The schema is created and migrated by Alembic (``agent/storage/migrations``): ``upgrade()`` there runs on
every Agent start (a no-op when current) and from ``cachebot db upgrade``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL

from agent.config import StorageConfig

ENV_VAR = "CACHEBOT_DATABASE_URL"
AUDIT_FILE = "audit.sqlite"
CLAIMS_FILE = "claims.sqlite"
LOCKS_DIR = "locks"


@dataclass(frozen=True)
class Database:
    """The decision: the database URL (audit and runs; checkpoints, claims and locks too on PostgreSQL) and,
    for SQLite, the checkpoint file whose directory holds the other files."""

    url: str
    checkpoint_file: Path

    @classmethod
    def choose(cls, storage: StorageConfig, *, checkpoint_path: str | os.PathLike[str] | None = None,
               database_url: str | None = None) -> Database:
        """``database_url`` (given by the caller) wins, then the rule of ``resolve_database_url``."""
        checkpoint = Path(checkpoint_path or storage.sqlite_path)
        return cls(database_url or resolve_database_url(storage, checkpoint), checkpoint)

    @property
    def postgres(self) -> bool:
        return is_postgres(self.url)

    @property
    def kind(self) -> str:
        return "postgres" if self.postgres else "sqlite"

    @property
    def claims_file(self) -> Path:
        """On SQLite: the claims' own file, so the Slack ack path never waits behind the audit's writes."""
        return self.checkpoint_file.parent / CLAIMS_FILE

    @property
    def locks_dir(self) -> Path:
        """On SQLite: the directory of the thread-lock files (``flock``)."""
        return self.checkpoint_file.parent / LOCKS_DIR


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


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``; SQLite files get their directory, WAL, a busy timeout and FKs."""
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
    return create_engine(parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
                         connect_args={"prepare_threshold": None})


def upsert_insert(engine: Engine) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_nothing`` / ``on_conflict_do_update``) for ``engine``'s
    database. Imported for the database in use: the PostgreSQL dialect costs SQLite users 25 ms of every start."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert
