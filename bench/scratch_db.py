"""A PostgreSQL database of its own for one benchmark run, created on the test server and dropped afterwards
(``$CACHEBOT_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``; the tests do the same in
tests/conftest.py). psycopg and SQLAlchemy are imported when a database is made: SQLite-only runs skip them."""

from __future__ import annotations

import os
import uuid

POSTGRES_ENV = "CACHEBOT_TEST_POSTGRES_URL"
POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    return os.environ.get(POSTGRES_ENV) or POSTGRES_DEFAULT


def create_database(prefix: str = "cachebot_bench", template: str | None = None) -> tuple[str, str]:
    """(name, url) of a new database, empty or a copy of ``template`` (a database nobody is connected to);
    psycopg.OperationalError when the server cannot be reached."""
    import psycopg
    from sqlalchemy import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as db:
        db.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name, make_url(admin_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
