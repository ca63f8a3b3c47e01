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


def test_the_console_indexes_come_and_go_with_their_migration(empty_database_url):
    """0005_console_indexes replaces three indexes with ones the console walks in order, and adds three; taking
    it back leaves 0004's indexes, and upgrading again puts them back."""
    from alembic import command
    from sqlalchemy import inspect

    from agent.storage.migrations import alembic_config, migration_lock

    def indexes() -> set[str]:
        return {ix["name"] for table in ("audit_requests", "audit_plan_items", "audit_results")
                for ix in inspect(engine).get_indexes(table)}

    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        console = {"ix_audit_plan_items_request_id_site", "ix_audit_requests_status_received_at",
                   "ix_audit_requests_outcome_received_at", "ix_audit_requests_requested_by_received_at",
                   "ix_audit_plan_items_request_id_id", "ix_audit_results_request_id_id"}
        replaced = {"ix_audit_requests_requested_by", "ix_audit_plan_items_request_id", "ix_audit_results_request_id"}
        assert console <= indexes() and not replaced & indexes()
        with migration_lock(engine) as connection:
            command.downgrade(alembic_config(empty_database_url, connection), "0004_leases")
            connection.commit()
        engine.dispose()
        assert replaced <= indexes() and not console & indexes()
        upgrade(empty_database_url)
        engine.dispose()
        assert console <= indexes() and not replaced & indexes()
    finally:
        engine.dispose()
