"""Running the Alembic migrations in this directory: ``upgrade`` (every Agent start, ``cachebot db upgrade``),
``current_revision`` and ``head_revision``.

Alembic's settings (``alembic.ini``) ship in the package and the script location is set at run time, so
migrating works from any directory. The version table is ``cachebot_alembic_version``, not Alembic's default:
the database may be shared with other applications.

Alembic itself is imported only when there is something to migrate: ``upgrade`` first compares the database's
version with the head read from the files in ``versions/`` (``head_on_disk``), so a command that only reads the
audit trail (``cachebot history``) does not pay for loading Alembic (as long as SQLAlchemy) on every start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from agent.storage.database import make_engine, sqlalchemy_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent
VERSION_TABLE = "cachebot_alembic_version"  # not "alembic_version": the database may be shared with other apps
MIGRATION_LOCK = 7_240_517_301  # pg_advisory_lock key: replicas starting together migrate one at a time
REVISION_LINE = re.compile(r"^revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
DOWN_REVISION_LINE = re.compile(r"^down_revision\s*(?::[^=]*)?=(.*)$", re.MULTILINE)


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    """Alembic's configuration, built from the package (``alembic.ini`` beside this file): works from any cwd."""
    from alembic.config import Config

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
        if revision == "head" and is_current(engine):
            return  # the usual start: nothing to do, and Alembic need not load
        from alembic import command

        with migration_lock(engine) as connection:
            command.upgrade(alembic_config(url, connection), revision)
            connection.commit()
    finally:
        if own:
            engine.dispose()


def is_current(engine: Engine) -> bool:
    """The database is at the head revision of the files in ``versions/``: one version row, equal to it. Anything
    else (no version table yet, an older or unknown version, files whose head is not clear) is left to Alembic."""
    head = head_on_disk()
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            versions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    except DBAPIError:  # no version table: a new database
        return False
    return versions == [head]


def head_on_disk() -> str | None:
    """The head revision, read from the ``revision`` / ``down_revision`` lines of the files in ``versions/`` (what
    Alembic reads too, without importing it); None when there is not exactly one head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = REVISION_LINE.search(source)
        if revision is None:
            continue  # not a migration (__init__.py)
        down = DOWN_REVISION_LINE.search(source)
        if down is None:
            return None
        revisions.add(revision[1])
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down[1]))  # one, none, or a merge's tuple
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
