"""Running the Alembic migrations in this directory: ``upgrade`` (every Agent start, ``cachebot db upgrade``),
``current_revision`` and ``head_revision``.

Alembic's settings (``alembic.ini``) ship in the package and the script location is set at run time, so
migrating works from any directory. The version table is ``cachebot_alembic_version``, not Alembic's default:
the database may be shared with other applications.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from agent.storage.database import make_engine, sqlalchemy_url

MIGRATIONS = Path(__file__).parent
VERSION_TABLE = "cachebot_alembic_version"  # not "alembic_version": the database may be shared with other apps
MIGRATION_LOCK = 7_240_517_301  # pg_advisory_lock key: replicas starting together migrate one at a time


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    """Alembic's configuration, built from the package (``alembic.ini`` beside this file): works from any cwd."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    # '%' must be doubled for configparser; the URL is only used when no connection is passed in.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """One connection to migrate on; on PostgreSQL it holds an advisory lock so replicas take turns."""
    with engine.connect() as connection:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        try:
            yield connection
        finally:
            if postgres:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()


def upgrade(url: str, engine: Engine | None = None, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision``; idempotent, safe with several replicas starting."""
    own = engine is None
    engine = engine or make_engine(url)
    try:
        with migration_lock(engine) as connection:
            command.upgrade(alembic_config(url, connection), revision)
            connection.commit()
    finally:
        if own:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
