"""Graph state holds the typed records; checkpoints written before that (JSON dicts) still load and resume."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from agent.models import ItemStatus
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

    waiting = agent.result(LEGACY_THREAD)
    assert waiting.pending and waiting.needs_approval and waiting.results == []
    assert waiting.approval.status == "pending" and waiting.approval.refusals[0].startswith("mallory:")
    assert len(waiting.plan) == 24 and "over the approval threshold of 2" in waiting.pending["reason"]

    done = agent.decide(LEGACY_THREAD, "approve", user="alice")
    assert done.approval.status == "approved" and done.approval.by == "alice" and done.pending is None
    assert {r.status for r in done.results} <= {ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED}
    assert "$99" in through_edge(fresh_stack, "/products/shoes/runner").text
