"""Graph state holds the typed records; checkpoints written before that (JSON dicts) still load and resume."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from agent.graph import build_graph
from agent.models import ApprovalRecord, ItemStatus, Operation, Plan, PurgeOutcome, PurgeStatus
from agent.state import ModelValue
from tests.agent.conftest import through_edge, warm

LEGACY = Path(__file__).parents[1] / "data" / "legacy_pending_approval.json"
LEGACY_THREAD = "legacy-pending"
LEGACY_PAGES = ["/products/shoes/runner", "/products/shoes/hiker", "/products/shoes/loafer", "/products/hats/beanie"]


def restore_legacy_checkpoint(path: Path) -> None:
    """Put the rows an older cachebot wrote (tests/data/legacy_pending_approval.json) into a SQLite checkpoint file."""
    rows = json.loads(LEGACY.read_text())
    with sqlite3.connect(path) as db:
        SqliteSaver(db).setup()
        for table in ("checkpoints", "writes"):
            for row in rows[table]:
                blobs = {"checkpoint", "metadata", "value"}
                values = {k: base64.b64decode(v) if k in blobs else v for k, v in row.items()}
                db.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                           list(values.values()))


def small_threshold(make_agent):
    return make_agent(approval={"threshold": 2, "approvers": ["alice", "carol"], "expiry_minutes": 30})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the rows are SqliteSaver's
def test_a_pending_approval_from_before_typed_state_still_resumes(fresh_stack, make_agent, tmp_path):
    restore_legacy_checkpoint(tmp_path / "state.sqlite")
    warm(fresh_stack, *LEGACY_PAGES)
    fresh_stack.content.edit("/products/shoes/runner", "Runner: now $99.")
    agent = small_threshold(make_agent)

    stored = agent.graph.get_state(agent._config(LEGACY_THREAD)).values
    assert isinstance(stored["plan"], Plan) and isinstance(stored["approval"], ApprovalRecord)  # dicts, read as records
    waiting = agent.result(LEGACY_THREAD)
    assert waiting.pending and waiting.needs_approval and waiting.results == []
    assert waiting.approval.status == "pending" and waiting.approval.refusals[0].startswith("mallory:")
    assert len(waiting.plan) == 24 and "over the approval threshold of 2" in waiting.pending["reason"]

    done = agent.decide(LEGACY_THREAD, "approve", user="alice")
    assert done.approval.status == "approved" and done.approval.by == "alice" and done.pending is None
    assert {r.status for r in done.results} <= {ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED}
    assert "$99" in through_edge(fresh_stack, "/products/shoes/runner").text


def test_record_fields_turn_json_into_records_and_pass_records_through():
    channels = build_graph().channels
    assert {key for key, channel in channels.items() if isinstance(channel, ModelValue)} == {
        "rejected", "plan", "approval", "purge_outcomes", "repair", "results", "checks"}

    old = channels["plan"].from_checkpoint({"items": [], "pages": ["https://shop.example/"], "needs_approval": True,
                                            "expires_at": "2026-11-25T12:30:00Z"})
    assert isinstance(old.get(), Plan) and old.get().needs_approval and old.get().expires_at.minute == 30

    outcomes = channels["purge_outcomes"].copy()
    answer = PurgeOutcome(layer="edge", operation=Operation.PURGE_URL, target="https://shop.example/",
                          status=PurgeStatus.PURGED)
    outcomes.update([[answer, {"layer": "edge", "operation": "purge_tag", "target": "shoes", "status": "failed"}]])
    assert outcomes.get()[0] is answer and outcomes.get()[1].status == PurgeStatus.FAILED

    empty = channels["approval"].copy()
    empty.update([{}])  # JSON input (LangGraph Studio, an older front end): nothing decided, nothing asked
    assert empty.get() == ApprovalRecord()
