"""``agent/storage/tables.py`` is the one definition of the tables: a migrated database matches it exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agent.storage.database import make_engine
from agent.storage.migrations import VERSION_TABLE, upgrade
from agent.storage.tables import metadata


def test_the_migrations_build_exactly_the_tables_the_code_queries(empty_database_url):
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []
