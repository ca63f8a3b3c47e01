"""Checkpointers on SQLite and PostgreSQL: the async saver (for async nodes) reads and writes the same
checkpoints as the sync one the Agent compiles its graph with."""

from __future__ import annotations

import asyncio
import operator
import uuid
from datetime import datetime, timedelta
from typing import Annotated, TypedDict

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph

from agent.models import Plan, PlanItem
from agent.state import checkpoint_serializer
from agent.storage import Storage
from agent.storage.checkpoints import Record
from tests.agent.storage.test_storage import config_in


class Counter(TypedDict):
    n: Annotated[int, operator.add]


def counting_graph() -> StateGraph:
    graph = StateGraph(Counter)
    graph.add_node("add_one", lambda state: {"n": 1})
    graph.add_edge(START, "add_one")
    graph.add_edge("add_one", END)
    return graph


def test_the_async_checkpointer_shares_the_checkpoints_of_the_sync_one(database_url, tmp_path):
    storage = Storage.open(config_in(tmp_path, database_url=database_url))
    written_sync, written_async = ({"configurable": {"thread_id": f"{name}-{uuid.uuid4().hex}"}}
                                   for name in ("sync", "async"))
    try:
        sync_graph = counting_graph().compile(checkpointer=storage.checkpointer)
        assert sync_graph.invoke({"n": 1}, written_sync) == {"n": 2}

        async def run_async() -> tuple[str, dict, dict]:
            async with storage.async_checkpointer() as saver:
                graph = counting_graph().compile(checkpointer=saver)
                ran = await graph.ainvoke({"n": 10}, written_async)
                earlier = await graph.aget_state(written_sync)
                return type(saver).__name__, ran, earlier.values

        saver, ran, earlier = asyncio.run(run_async())
        assert saver == ("AsyncPostgresSaver" if storage.kind == "postgres" else "AsyncSqliteSaver")
        assert ran == {"n": 11}
        assert earlier == {"n": 2}  # written by the sync saver, read by the async one
        assert sync_graph.get_state(written_async).values == {"n": 11}  # and the other way round
    finally:
        storage.close()


def test_both_savers_write_and_read_with_the_serializer_given(database_url, tmp_path):
    serde = JsonPlusSerializer(allowed_msgpack_modules=None)
    storage = Storage.open(config_in(tmp_path, database_url=database_url), serde=serde)
    try:
        assert storage.checkpointer.serde is serde

        async def async_serde():
            async with storage.async_checkpointer() as saver:
                return saver.serde

        assert asyncio.run(async_serde()) is serde
    finally:
        storage.close()


class Planned(TypedDict):
    n: Annotated[int, operator.add]
    plan: Plan


def test_thread_history_reads_what_langgraph_wrote_without_reviving_classes(database_url, tmp_path):
    """`cachebot trace` reads a thread's checkpoints and writes straight from the savers' tables: the same ids,
    times, metadata and writes LangGraph's own ``list()`` gives, with records as fields (no class called)."""
    graph = StateGraph(Planned)
    item = PlanItem(url="https://shop.example/", site="shop", layer="edge", operation="purge_url",
                    target="https://shop.example/", reason="you asked", requested=True)
    graph.add_node("plan", lambda state: {"n": 1, "plan": Plan(items=[item], pages=[item.url], purge_count=1)})
    graph.add_edge(START, "plan")
    graph.add_edge("plan", END)
    storage = Storage.open(config_in(tmp_path, database_url=database_url), serde=checkpoint_serializer())
    thread = {"configurable": {"thread_id": f"history-{uuid.uuid4().hex}"}, "metadata": {"cachebot_request_id": "r1"}}
    try:
        graph.compile(checkpointer=storage.checkpointer).invoke({"n": 1}, thread)
        history = storage.thread_history(thread["configurable"]["thread_id"])
        expected = list(reversed(list(storage.checkpointer.list(thread))))
        assert [h.checkpoint_id for h in history] == [t.config["configurable"]["checkpoint_id"] for t in expected]
        for record, stored in zip(history, expected):
            written = datetime.fromisoformat(stored.checkpoint["ts"])
            assert abs(record.ts - written) < timedelta(milliseconds=50)  # the id's time, not a second clock
            assert record.metadata["cachebot_request_id"] == "r1"
            assert record.metadata["source"] == stored.metadata["source"]
            assert [(task, channel) for task, channel, _ in record.writes] == \
                [(task, channel) for task, channel, _ in stored.pending_writes]
        plan = next(value for h in history for _, channel, value in h.writes if channel == "plan")
        assert isinstance(plan, Record) and plan.record_kind == "Plan" and plan.purge_count == 1
        assert plan.items[0]["operation"] == "purge_url"  # nested records were stored as their fields
    finally:
        storage.close()
