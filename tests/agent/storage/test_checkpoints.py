"""Checkpointers on SQLite and PostgreSQL: the async saver (for async nodes) reads and writes the same
checkpoints as the sync one the Agent compiles its graph with."""

from __future__ import annotations

import asyncio
import operator
import uuid
from typing import Annotated, TypedDict

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph

from agent.storage import Storage
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
