"""Graph state holds the typed records; checkpoints written before that (JSON dicts) still load and resume."""

from __future__ import annotations

import base64
import json
import sqlite3
from enum import Enum
from pathlib import Path
from typing import Annotated, get_args, get_origin, get_type_hints

import pytest
from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import BaseModel

from agent.graph import build_graph
from agent.models import ApprovalRecord, ItemStatus, Operation, Plan, PlanItem, PurgeOutcome, PurgeStatus
from agent.state import STATE_ENUMS, STATE_MODELS, ModelValue, PurgeState, checkpoint_serializer
from tests.agent.conftest import through_edge, warm
from tests.agent.test_approval import BIG

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


@pytest.fixture
def serde_events():
    """What LangGraph's serializer reported while reading checkpoints: classes it revived unregistered or blocked."""
    events: list[dict] = []
    stop = register_serde_event_listener(events.append)
    yield events
    stop()


def small_threshold(make_agent):
    return make_agent(approval={"threshold": 2, "approvers": ["alice", "carol"], "expiry_minutes": 30})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the rows are SqliteSaver's
def test_a_pending_approval_from_before_typed_state_still_resumes(fresh_stack, make_agent, tmp_path, serde_events):
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
    assert serde_events == []


def test_state_holds_records_and_checkpoints_revive_them_without_a_warning(make_agent, serde_events):
    waiting = small_threshold(make_agent).ask(BIG, user="bob")
    restarted = small_threshold(make_agent)  # a new process: everything below comes from the checkpoint
    values = restarted.graph.get_state(restarted._config(waiting.thread_id)).values
    assert isinstance(values["plan"], Plan) and isinstance(values["approval"], ApprovalRecord)
    assert all(isinstance(item, PlanItem) for item in values["plan"].items)

    restarted.decide(waiting.thread_id, "approve", user="alice")
    values = restarted.graph.get_state(restarted._config(waiting.thread_id)).values
    assert all(isinstance(outcome, PurgeOutcome) for outcome in values["purge_outcomes"])
    assert values["purge_outcomes"] and values["results"]
    assert serde_events == []  # every class in them is allowed: none revived unregistered, none blocked


class Intruder(BaseModel):
    command: str


def test_the_checkpoint_serializer_revives_the_state_records_and_nothing_else(serde_events):
    serde = checkpoint_serializer()
    item = PlanItem(url="https://shop.example/", site="shop", layer="edge", operation=Operation.PURGE_URL,
                    target="https://shop.example/", reason="you asked", requested=True)
    assert serde.loads_typed(serde.dumps_typed(item)) == item
    assert serde_events == []

    revived = serde.loads_typed(serde.dumps_typed(Intruder(command="rm -rf /")))
    assert revived == {"command": "rm -rf /"}  # plain data: the class named in the bytes was never called
    assert serde_events == [{"kind": "msgpack_blocked", "module": __name__, "name": "Intruder"}]


def classes_in(annotation, found: set[type]) -> set[type]:
    """Every pydantic model and enum a value of ``annotation`` can hold, nested fields included."""
    if get_origin(annotation) is Annotated or get_args(annotation):
        for arg in get_args(annotation):
            classes_in(arg, found)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in found:
        found.add(annotation)
        for field in annotation.model_fields.values():
            classes_in(field.annotation, found)
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        found.add(annotation)
    return found


def test_every_class_the_state_can_hold_is_on_the_serializer_allow_list():
    hints = get_type_hints(PurgeState, include_extras=True)
    held = set().union(*(classes_in(hint, set()) for hint in hints.values()))
    assert held == set(STATE_MODELS) | set(STATE_ENUMS)


def test_record_fields_turn_json_into_records_and_pass_records_through():
    channels = build_graph().channels
    assert {key for key, channel in channels.items() if isinstance(channel, ModelValue)} == {
        "rejected", "dropped_query", "plan", "approval", "purge_outcomes", "repair", "results", "checks"}

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
