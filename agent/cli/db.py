"""``cachebot db``: create or migrate the schema, and prune audit rows past the retention."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from agent.cli.options import ConfigOption, audit_or_exit, storage_or_exit
from agent.cli.output import console

# The storage (SQLAlchemy, Alembic, the checkpoint savers) is imported inside each command, when it runs: `cachebot
# --help` imports this module too (tests/agent/cli/test_startup.py).

db_app = typer.Typer(help="The database: create/migrate the schema, prune old audit rows.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create or migrate the schema (audit tables via Alembic; PostgreSQL checkpoint tables). Idempotent."""
    from agent.storage.checkpoints import prepare_postgres
    from agent.storage.database import display_url, is_postgres
    from agent.storage.migrations import head_revision, upgrade

    settings, url = storage_or_exit(config)
    upgrade(url)
    if is_postgres(url):
        prepare_postgres(url)  # PostgresSaver.setup()
    console.print(f"{display_url(url)}: schema at revision {head_revision()}", soft_wrap=True)


@db_app.command("prune")
def db_prune(
    days: Annotated[Optional[float], typer.Option("--days", help="default: storage.retention_days (90)")] = None,
    config: ConfigOption = None,
) -> None:
    """Delete audit rows older than the retention period (also done on every start)."""
    from agent.config import StorageConfig

    settings, _ = storage_or_exit(config)
    keep = days if days is not None else (settings.storage if settings else StorageConfig()).retention_days
    store = audit_or_exit(config)
    try:
        removed = store.prune(older_than_days=keep)
    finally:
        store.close()
    console.print(f"deleted {removed} request(s) older than {keep:g} days, with their plans, decisions and results")
