"""One database URL picks the store; Alembic creates and migrates it; checkpoints follow it to PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from typer.testing import CliRunner

from agent.cli.main import app
from agent.config import StorageConfig
from agent.storage import (
    ENV_VAR, VERSION_TABLE, current_revision, display_url, head_revision, is_postgres, libpq_url, make_engine,
    resolve_database_url, upgrade,
)
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
    assert agent._checkpointer.kind == ("postgres" if is_postgres(empty_database_url) else "sqlite")
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
