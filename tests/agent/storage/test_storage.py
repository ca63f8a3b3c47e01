"""One database URL picks the store; Alembic creates and migrates it; checkpoints follow it to PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import StorageConfig, parse_config
from agent.storage import Storage
from agent.storage.database import ENV_VAR, display_url, is_postgres, libpq_url, make_engine, resolve_database_url
from agent.storage.migrations import VERSION_TABLE, current_revision, head_on_disk, head_revision, is_current, upgrade
from tests.agent.test_approval import BIG

AUDIT_TABLES = {"audit_requests", "audit_plan_items", "audit_decisions", "audit_results"}


def test_the_environment_wins_then_the_config_then_a_sqlite_file_next_to_the_checkpoints(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    derived = resolve_database_url(StorageConfig(sqlite_path="/var/lib/cachebot/state.sqlite"))
    assert derived == "sqlite:////var/lib/cachebot/audit.sqlite"
    assert resolve_database_url(StorageConfig(), "/tmp/x/cp.sqlite") == "sqlite:////tmp/x/audit.sqlite"
    configured = StorageConfig(database_url="postgresql://cachebot:pw@db/cachebot")
    assert resolve_database_url(configured) == "postgresql://cachebot:pw@db/cachebot"
    monkeypatch.setenv(ENV_VAR, "postgresql://other@db2/cb")
    assert resolve_database_url(configured) == "postgresql://other@db2/cb"


def test_url_forms():
    assert is_postgres("postgresql://u@h/db") and is_postgres("postgres://u@h/db")
    assert not is_postgres("sqlite:///x.sqlite")
    assert libpq_url("postgres://u:p@h:5433/db") == "postgresql://u:p@h:5433/db"
    assert "p4ss" not in display_url("postgresql://u:p4ss@h/db")


def test_migrations_create_the_schema_on_an_empty_database_and_are_idempotent(empty_database_url):
    upgrade(empty_database_url)
    upgrade(empty_database_url)  # again: nothing to do, no error
    engine = make_engine(empty_database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert AUDIT_TABLES | {VERSION_TABLE} <= tables
        assert current_revision(engine) == head_revision() is not None
        columns = {c["name"] for c in inspect(engine).get_columns("audit_results")}
        assert {"url", "site", "layer", "status", "attempts", "evidence", "found_stale", "recorded_at"} <= columns
    finally:
        engine.dispose()


def test_a_database_at_an_older_revision_is_migrated_to_the_head(empty_database_url):
    """The quick look that spares Alembic on a current database (``is_current``) must never take an older one
    for current: the head it reads from the migration files is Alembic's own."""
    assert head_on_disk() == head_revision() is not None
    upgrade(empty_database_url, revision="0002_claims")
    engine = make_engine(empty_database_url)
    try:
        assert not is_current(engine)
        upgrade(empty_database_url)
        assert is_current(engine) and current_revision(engine) == head_revision()
        assert "cachebot_approval_copies" in inspect(engine).get_table_names()  # 0003's table
    finally:
        engine.dispose()


def test_cachebot_db_upgrade_works_from_any_directory(empty_database_url, tmp_path, monkeypatch):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(ENV_VAR, empty_database_url)
    monkeypatch.delenv("CACHEBOT_CONFIG", raising=False)
    first = CliRunner().invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"schema at revision {head_revision()}" in first.output
    second = CliRunner().invoke(app, ["db", "upgrade"])
    assert second.exit_code == 0, second.output
    engine = make_engine(empty_database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert AUDIT_TABLES <= tables
    if is_postgres(empty_database_url):
        assert {"checkpoints", "checkpoint_writes", "checkpoint_blobs"} <= tables  # PostgresSaver.setup()


def test_an_agent_migrates_on_start_and_picks_the_checkpointer_from_the_url(make_agent, empty_database_url):
    agent = make_agent(storage={"database_url": empty_database_url})
    assert agent.database_url == empty_database_url
    assert agent.storage.kind == ("postgres" if is_postgres(empty_database_url) else "sqlite")
    assert type(agent.graph.checkpointer).__name__ == ("PostgresSaver" if is_postgres(empty_database_url)
                                                       else "SqliteSaver")
    assert current_revision(agent.audit.engine) == head_revision()


def test_a_pending_approval_survives_an_agent_restart(make_agent, database_url, tmp_path):
    settings = {"storage": {"database_url": database_url},
                "approval": {"threshold": 2, "approvers": ["alice"], "expiry_minutes": 30}}
    first = make_agent(**settings)
    waiting = first.ask(BIG, user="bob")
    assert waiting.pending
    first.close()

    # On PostgreSQL the checkpoint lives in the database, so even another checkpoint file finds it
    # (another replica, another machine); on SQLite the restarted agent opens the same file.
    restarted = make_agent(checkpoint="other.sqlite" if is_postgres(database_url) else "state.sqlite", **settings)
    assert restarted.result(waiting.thread_id).pending
    done = restarted.decide(waiting.thread_id, "approve", user="alice")
    assert done.approval.status == "approved" and done.approval.by == "alice"
    assert done.results
    if is_postgres(database_url):
        assert not Path(tmp_path / "other.sqlite").exists()  # nothing went to SQLite
    [entry] = restarted.audit.history(user="bob")
    assert entry.thread_id == waiting.thread_id and entry.approved_by == "alice" and entry.status == "done"


def config_in(directory: Path, **storage) -> object:
    return parse_config({
        "sites": [{"name": "s", "hosts": ["s.example"], "layers": ["v"]}],
        "layers": [{"name": "v", "kind": "varnish", "endpoint": "http://127.0.0.1:9"}],
        "storage": {"sqlite_path": str(directory / "state.sqlite"), **storage},
    })


def test_one_decision_places_every_sqlite_file_next_to_the_checkpoints(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    storage = Storage.open(config_in(tmp_path / "configured"), checkpoint_path=tmp_path / "elsewhere" / "cp.sqlite")
    try:
        assert storage.kind == "sqlite" and storage.url == f"sqlite:///{tmp_path / 'elsewhere' / 'audit.sqlite'}"
        assert storage.claims.claim("event:Ev1") and (tmp_path / "elsewhere" / "claims.sqlite").is_file()
        assert storage.locks.directory == tmp_path / "elsewhere" / "locks"
        assert (tmp_path / "elsewhere" / "cp.sqlite").is_file()
        assert not (tmp_path / "configured").exists()  # nothing follows storage.sqlite_path when told otherwise
    finally:
        storage.close()


def test_on_postgresql_every_store_shares_the_database(database_url, tmp_path):
    storage = Storage.open(config_in(tmp_path, database_url=database_url))
    try:
        assert storage.url == database_url
        if storage.kind == "postgres":
            assert storage.claims.engine is storage.audit.engine is storage.runs.engine
            assert type(storage.locks).__name__ == "PostgresThreadLocks"
            assert not (tmp_path / "claims.sqlite").exists() and not (tmp_path / "state.sqlite").exists()
        else:
            assert storage.claims.engine is not storage.audit.engine  # its own file: no wait behind audit writes
    finally:
        storage.close()
