"""Shared fixtures: a real local cache stack (demo origin + Redis app cache <- Varnish <- nginx) and daemons.

They run the real programs the FOSHttpCache way (free loopback port, config in a temp dir, wait for the
port, stop by pid, clear by restart). Nothing is skipped: a missing program fails the test with the reason
and the fix (`make test` installs the packages).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.demo.procs import Daemon, DaemonError, MissingBinary, find_binary, start_memcached, start_redis
from agent.demo.stack import Stack, start_stack

STACK_PROGRAMS = ("varnishd", "nginx", "redis-server")
# Settings from the developer's shell that would send tests to a real model or another database.
LEAKY_ENVIRONMENT = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CACHEBOT_DATABASE_URL", "CACHEBOT_CONFIG", "CACHEBOT_LLM_MODEL")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their model and storage themselves; a key in the shell must not reach OpenAI from a test."""
    for name in LEAKY_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def _require(*programs: str) -> None:
    for program in programs:
        try:
            find_binary(program)
        except MissingBinary as exc:
            pytest.fail(f"{exc}\nThese tests need the real daemons: run `make test`, which installs them.", pytrace=False)


def _start(what: str, starter, *args, **kwargs):
    try:
        return starter(*args, **kwargs)
    except MissingBinary as exc:
        pytest.fail(f"{what}: {exc}\nRun `make test`, which installs the packages.", pytrace=False)
    except DaemonError as exc:
        pytest.fail(f"{what} did not start:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack, started once per session (origin as its own process); stopped at the end.

    Tests that need empty caches or the seed content use ``fresh_stack``.
    """
    _require(*STACK_PROGRAMS)
    running = _start("the demo stack", start_stack, tmp_path_factory.mktemp("demo-stack"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_stack(stack: Stack) -> Stack:
    """The session stack with seed content and every cache empty (Varnish banned, nginx restarted, app keys gone)."""
    stack.reset_content()
    stack.clear_caches()
    return stack


@pytest.fixture
def stack_config(stack: Stack) -> dict:
    """A cachebot config dict pointing at the session stack."""
    return stack.config_dict()


@pytest.fixture(scope="session")
def redis_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A redis-server of its own (no persistence); ``.url`` is redis://127.0.0.1:PORT/0, ``.restart()`` empties it."""
    _require("redis-server")
    daemon = _start("redis-server", start_redis, tmp_path_factory.mktemp("redis"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def fresh_redis(redis_daemon: Daemon) -> Daemon:
    """``redis_daemon`` with every database flushed."""
    import redis

    client = redis.Redis.from_url(redis_daemon.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_daemon


@pytest.fixture(scope="session")
def memcached_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A memcached of its own on loopback TCP; ``.address`` is 127.0.0.1:PORT, ``.restart()`` empties it."""
    _require("memcached")
    daemon = _start("memcached", start_memcached, tmp_path_factory.mktemp("memcached"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def memcached_client(memcached_daemon: Daemon):
    """A client of the test memcached, emptied first. default_noreply=False: a set has landed before a layer, on
    its own connection, looks for it."""
    from pymemcache.client.base import Client

    client = Client(("127.0.0.1", memcached_daemon.port), connect_timeout=2, timeout=2, default_noreply=False)
    client.flush_all()
    yield client
    client.close()


# --- databases for the audit trail and checkpoints (agent/storage.py): SQLite files and a real PostgreSQL -------

POSTGRES_ENV = "CACHEBOT_TEST_POSTGRES_URL"
POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_admin_url() -> str:
    import os

    return os.environ.get(POSTGRES_ENV) or POSTGRES_DEFAULT


def _with_database(url: str, name: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _create_database(prefix: str) -> str:
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(_postgres_admin_url(), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {_postgres_admin_url()} is not reachable ({exc}).\n"
                    f"These tests need a real PostgreSQL: start one, or point {POSTGRES_ENV} at a server where this "
                    "user may CREATE DATABASE.", pytrace=False)
    return name


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_postgres_admin_url(), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (``cachebot_test_<random>``), dropped at the end."""
    name = _create_database("cachebot_test")
    try:
        yield _with_database(_postgres_admin_url(), name)
    finally:
        _drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> str:
    """An audit/checkpoint database URL, once SQLite (a file in tmp_path) and once the session's PostgreSQL
    database with the audit tables emptied. $CACHEBOT_DATABASE_URL is unset so the URL given is the one used."""
    monkeypatch.delenv("CACHEBOT_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite'}"
    url = request.getfixturevalue("postgres_database")
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        present = db.execute("SELECT to_regclass('audit_requests') IS NOT NULL").fetchone()[0]
        if present:
            db.execute("TRUNCATE audit_results, audit_decisions, audit_plan_items, audit_requests")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database dropped after the test."""
    monkeypatch.delenv("CACHEBOT_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty' / 'audit.sqlite'}"
        return
    name = _create_database("cachebot_empty")
    try:
        yield _with_database(_postgres_admin_url(), name)
    finally:
        _drop_database(name)
