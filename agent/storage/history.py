"""A thread's checkpoints read back for `cachebot trace` (``agent/trace.py``) and the web console, without LangGraph.

LangGraph's ``list()`` revives every channel of every checkpoint: for a 5,000-page run, nine copies of a plan,
purge answers and results of 15,000 records each (seconds). A trace needs each checkpoint's metadata and time
and the writes its step made, so it reads those rows and decodes the writes into plain ``Record``s: no class
named in the stored bytes is imported or called, which is also the safest way to read them. Should the savers'
tables ever change shape, it falls back to the saver's ``list()``.

This module imports neither LangGraph nor the savers nor psycopg (only ``sqlite3``, ``ormsgpack`` and SQLAlchemy's
``text``): `cachebot trace` in a new process spent most of its start-up importing LangGraph and LangChain for
them (tests/agent/cli/test_startup.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ormsgpack
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.serde.base import SerializerProtocol

    from agent.storage.database import Database

log = logging.getLogger(__name__)

# Checkpoint metadata the Agent adds (the savers copy a run's config metadata into each checkpoint it writes):
# which request wrote it and, for a run picked up again after a crash, which attempt and when that attempt began.
# `cachebot trace` (agent/trace.py) reads them back.
REQUEST_ID_KEY = "cachebot_request_id"
ATTEMPT_KEY = "cachebot_attempt"
RESUMED_AT_KEY = "cachebot_resumed_at"
SQLITE_BUSY_SECONDS = 30  # a reader waits this long for another connection's write


class Record:
    """A stored record (a pydantic model, a dataclass) as its fields, read as attributes (``record.status``);
    ``record_kind`` is its class's name ("Plan", "PurgeOutcome"). Enums come back as their values, records
    nested in a record as dicts (that is how LangGraph stores them). Fields live in the instance's ``__dict__``
    (``vars(record)``): reading them is as quick as a model's, which matters over 15,000 purge answers."""

    def __init__(self, fields: dict, kind: str):
        self.__dict__.update(fields)
        self.record_kind = kind

    def __repr__(self) -> str:
        return f"{self.record_kind}({ {k: v for k, v in vars(self).items() if k != 'record_kind'}!r})"


@dataclass
class CheckpointRecord:
    checkpoint_id: str
    ts: datetime
    metadata: dict[str, Any]
    writes: list[tuple[str, str, Any]]  # (task id, channel, value) in the order written


def _record_hooks() -> Callable[[int, bytes], Any]:
    """An ``ext_hook`` for LangGraph's msgpack extensions (``langgraph.checkpoint.serde.jsonplus``): each holds
    (module, name, payload…); a record's payload is its fields, others (an enum, a datetime) their value. It is
    called once per record and once per enum inside it (45,000 records, 135,000 calls for a 5,000-page run), so
    it is lean: records are made without copying their fields, and an enum met before (the same bytes) is not
    unpacked again. The memo lives as long as the hook: one stored write."""
    unpackb, option, new = ormsgpack.unpackb, ormsgpack.OPT_NON_STR_KEYS, object.__new__
    seen: dict[bytes, Any] = {}

    def hook(code: int, data: bytes) -> Any:
        found = seen.get(data)
        if found is not None:
            return found
        parts = unpackb(data, ext_hook=hook, option=option)
        if type(parts) is not list or len(parts) < 3:
            return parts
        payload = parts[2]
        if type(payload) is dict:
            record = new(Record)
            payload["record_kind"] = str(parts[1])
            record.__dict__ = payload
            return record
        if code == SINGLE_ARG and len(data) < MEMO_BYTES and type(payload) in (str, int):
            seen[data] = payload  # immutable: an enum's value, shared safely
        return payload

    return hook


SINGLE_ARG = 0  # jsonplus's EXT_CONSTRUCTOR_SINGLE_ARG: enums among others
MEMO_BYTES = 128


def light_loads(kind: str | None, blob: bytes | None, serde: SerializerProtocol | None = None) -> Any:
    """A stored write's value as plain data and ``Record``s. Never unpickles: an unknown encoding goes to
    ``serde`` (the checkpoints' own serializer, with its allow-list), else comes back as None."""
    if kind is None or kind == "null" or blob is None:
        return None
    if kind == "msgpack":
        return ormsgpack.unpackb(bytes(blob), ext_hook=_record_hooks(), option=ormsgpack.OPT_NON_STR_KEYS)
    if kind == "json":
        return json.loads(bytes(blob))
    if kind in ("bytes", "bytearray"):
        return bytes(blob)
    if serde is not None and kind != "pickle":
        return serde.loads_typed((kind, bytes(blob)))
    return None


def uuid6_time(checkpoint_id: str) -> datetime:
    """When a checkpoint was made, from its id (LangGraph's ids are UUIDv6: time first, 100 ns since 1582)."""
    value = uuid.UUID(checkpoint_id).int
    high, mid, low = value >> 96, (value >> 80) & 0xFFFF, (value >> 64) & 0x0FFF
    ticks = (high << 28) | (mid << 12) | low
    return UUID_EPOCH + timedelta(microseconds=ticks // 10)


UUID_EPOCH = datetime(1582, 10, 15, tzinfo=timezone.utc)


def thread_history(database: Database, saver: Callable[[], BaseCheckpointSaver], thread_id: str,
                   *, engine: Any = None, serde: Callable[[], SerializerProtocol | None] = lambda: None
                   ) -> list[CheckpointRecord]:
    """The thread's checkpoints, oldest first, with their metadata, time and writes (root namespace only).
    ``saver`` and ``serde`` are asked for only when needed: the saver if the tables cannot be read directly, the
    serializer for a write in an encoding other than LangGraph's own (msgpack, json, bytes)."""
    try:
        if database.postgres:
            return _postgres_history(engine, thread_id, serde)
        return _sqlite_history(database.checkpoint_file, thread_id, serde)
    except (sqlite3.Error, SQLAlchemyError, LookupError, ValueError, TypeError):
        log.warning("reading checkpoints the quick way failed; reading them through LangGraph", exc_info=True)
    found = [CheckpointRecord(t.config["configurable"]["checkpoint_id"], datetime.fromisoformat(t.checkpoint["ts"]),
                              dict(t.metadata or {}), list(t.pending_writes or ()))
             for t in saver().list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})]
    found.reverse()
    return found


def _assemble(checkpoints: list[tuple[str, Any]], writes: list[tuple[str, str, str, str | None, bytes | None]],
              serde: Callable[[], SerializerProtocol | None]) -> list[CheckpointRecord]:
    by_id = {cid: CheckpointRecord(cid, uuid6_time(cid), meta if isinstance(meta, dict) else json.loads(meta or "{}"),
                                   []) for cid, meta in checkpoints}
    for cid, task_id, channel, kind, blob in writes:
        if cid in by_id:
            value = light_loads(kind, blob) if kind in LIGHT_KINDS else light_loads(kind, blob, serde())
            by_id[cid].writes.append((task_id, channel, value))
    return sorted(by_id.values(), key=lambda record: record.checkpoint_id)


LIGHT_KINDS = frozenset({None, "null", "msgpack", "json", "bytes", "bytearray", "pickle"})  # read without serde


def _sqlite_history(path: Path, thread_id: str, serde: Callable[[], SerializerProtocol | None]
                    ) -> list[CheckpointRecord]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_BUSY_SECONDS)) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'writes'").fetchone():
            return []  # the saver makes its tables on first use: nothing was ever checkpointed here
        checkpoints = db.execute("SELECT checkpoint_id, metadata FROM checkpoints WHERE thread_id = ? AND "
                                 "checkpoint_ns = '' ORDER BY checkpoint_id", (thread_id,)).fetchall()
        writes = db.execute("SELECT checkpoint_id, task_id, channel, type, value FROM writes WHERE thread_id = ? "
                            "AND checkpoint_ns = '' ORDER BY checkpoint_id, task_id, idx", (thread_id,)).fetchall()
    return _assemble(checkpoints, writes, serde)


def _postgres_history(engine: Any, thread_id: str, serde: Callable[[], SerializerProtocol | None]
                      ) -> list[CheckpointRecord]:
    with engine.connect() as db:
        checkpoints = db.execute(text("SELECT checkpoint_id, metadata FROM checkpoints WHERE thread_id = :t AND "
                                      "checkpoint_ns = '' ORDER BY checkpoint_id"), {"t": thread_id}).all()
        writes = db.execute(text("SELECT checkpoint_id, task_id, channel, type, blob FROM checkpoint_writes WHERE "
                                 "thread_id = :t AND checkpoint_ns = '' ORDER BY checkpoint_id, task_id, idx"),
                            {"t": thread_id}).all()
    return _assemble([tuple(row) for row in checkpoints], [tuple(row) for row in writes], serde)


# --- what waiting runs wait for, many threads at once (the console's page of requests waiting for approval) --

INTERRUPT, RESUME = "__interrupt__", "__resume__"


def waiting_interrupts(database: Database, thread_ids: list[str], *, engine: Any = None) -> dict[str, Any]:
    """Thread id → what the interrupt its latest checkpoint waits at asks (the ``interrupt()`` value), for each
    of ``thread_ids`` that waits: an ``__interrupt__`` write on its latest checkpoint and no ``__resume__``.
    One query for them all (200 ``get_state`` calls took 100 ms and revived each run's whole state). Raises
    what the database raises (``sqlite3.Error``, ``SQLAlchemyError``) when the tables cannot be read."""
    if not thread_ids:
        return {}
    if database.postgres:
        rows = _postgres_latest_writes(engine, thread_ids)
    else:
        rows = _sqlite_latest_writes(database.checkpoint_file, thread_ids)
    asked: dict[str, Any] = {}
    resumed: set[str] = set()
    for thread_id, channel, kind, blob in rows:
        if channel == RESUME:
            resumed.add(thread_id)
        elif thread_id not in asked:
            interrupts = light_loads(kind, blob)
            first = interrupts[0] if isinstance(interrupts, (list, tuple)) and interrupts else interrupts
            asked[thread_id] = getattr(first, "value", first)
    return {thread_id: value for thread_id, value in asked.items() if thread_id not in resumed}


_LATEST_WRITES = ("SELECT w.thread_id, w.channel, w.type, w.{blob} FROM {writes} w JOIN (SELECT thread_id, "
                  "max(checkpoint_id) AS latest FROM checkpoints WHERE checkpoint_ns = '' AND thread_id IN ({ids}) "
                  "GROUP BY thread_id) c ON w.thread_id = c.thread_id AND w.checkpoint_id = c.latest "
                  "WHERE w.checkpoint_ns = '' AND w.channel IN ('__interrupt__', '__resume__') "
                  "ORDER BY w.thread_id, w.task_id, w.idx")


def _sqlite_latest_writes(path: Path, thread_ids: list[str]) -> list[tuple[str, str, str, bytes]]:
    if not path.exists():
        return []
    query = _LATEST_WRITES.format(blob="value", writes="writes", ids=", ".join("?" * len(thread_ids)))
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_BUSY_SECONDS)) as db:
        try:
            return db.execute(query, thread_ids).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # nothing was ever checkpointed here
                return []
            raise


def _postgres_latest_writes(engine: Any, thread_ids: list[str]) -> list[tuple[str, str, str, bytes]]:
    names = {f"t{n}": thread_id for n, thread_id in enumerate(thread_ids)}
    query = _LATEST_WRITES.format(blob="blob", writes="checkpoint_writes", ids=", ".join(f":{n}" for n in names))
    with engine.connect() as db:
        return [tuple(row) for row in db.execute(text(query), names)]
