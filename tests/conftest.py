"""Shared fixtures: a real local cache stack (demo origin + Redis app cache <- Varnish <- nginx) and daemons.

They run the real programs the FOSHttpCache way (free loopback port, config in a temp dir, wait for the
port, stop by pid, clear by restart). Nothing is skipped: a missing program fails the test with the reason
and the fix (`make test` installs the packages).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.devstack.procs import Daemon, DaemonError, MissingBinary, find_binary, start_memcached, start_redis
from agent.devstack.stack import Stack, start_stack

STACK_PROGRAMS = ("varnishd", "nginx", "redis-server")


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
    running = _start("the devstack", start_stack, tmp_path_factory.mktemp("devstack"))
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
