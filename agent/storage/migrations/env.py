"""Alembic environment for cachebot's tables (``agent/storage/tables.py``).

``agent.storage.migrations.upgrade`` passes an open connection (holding the PostgreSQL advisory lock) in
``config.attributes["connection"]``; run by hand, the URL comes from ``-x url=...``, then
``$CACHEBOT_DATABASE_URL``, then the ini's ``sqlalchemy.url``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from agent.storage.database import sqlalchemy_url
from agent.storage.migrations import VERSION_TABLE
from agent.storage.tables import metadata

config = context.config


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("CACHEBOT_DATABASE_URL") \
        or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass -x url=... or set CACHEBOT_DATABASE_URL")
    return url


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,  # what `alembic revision --autogenerate` compares the database with
        version_table=config.attributes.get("version_table", VERSION_TABLE),
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE on SQLite goes through batch mode
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=str(sqlalchemy_url(database_url())), literal_binds=True,
                      version_table=config.attributes.get("version_table", VERSION_TABLE))
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
    else:
        engine = create_engine(sqlalchemy_url(database_url()))
        with engine.connect() as own:
            run(own)
            own.commit()
        engine.dispose()
