"""Where cachebot keeps its records, decided once.

``Storage.open(config)`` picks SQLite (one machine) or PostgreSQL (a team) through ``Database.choose``
(``$CACHEBOT_DATABASE_URL``, then ``storage.database_url``, then SQLite files next to the checkpoint file) and
hands out every store built from that one decision:

- ``checkpointer``: LangGraph's saver for the compiled graph (``SqliteSaver`` / ``PostgresSaver``);
- ``async_checkpointer()``: ``async with`` it for ``AsyncSqliteSaver`` / ``AsyncPostgresSaver`` on the same
  checkpoints, for async code;
- ``audit``: the audit trail (``AuditStore``);
- ``claims``: exactly-once claims (``ClaimStore``);
- ``intake_claims``: the claims of requests being taken in (Slack events), always in the database of the leases
  (``runs``), so claiming a request and writing its lease are one transaction on SQLite too (where ``claims``
  has a file of its own): a kill between the two cannot leave a request claimed with nobody to answer it;
- ``locks``: per-thread locks across processes (``ThreadLocks``);
- ``runs``: the runs sending purges right now, for crash recovery (``RunTracker``);
- ``approval_copies``: where each run's approval request was posted (``ApprovalCopies``);
- ``purges_in_flight``: each batch of purges a run is about to send, for its next holder (``PurgeJournal``).

The Agent opens one Storage; the Slack front end takes its claims from the Agent's, so the two always agree
on where they are. The rooms: ``database.py`` (URL, engine, placement), ``tables.py`` (every table),
``migrations/`` (Alembic), ``checkpoints.py``, ``audit.py``, ``redaction.py``, ``claims.py``, ``locks.py``,
``runs.py``, ``copies.py``, ``in_flight.py``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, ExitStack, closing
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from agent.storage.audit import AuditStore
from agent.storage.claims import ClaimStore
from agent.storage.copies import ApprovalCopies
from agent.storage.database import Database, make_engine
from agent.storage.in_flight import PurgeJournal
from agent.storage.locks import ThreadLocks
from agent.storage.migrations import upgrade
from agent.storage.runs import RunTracker

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.serde.base import SerializerProtocol

    from agent.config import AppConfig
    from agent.storage.checkpoints import Checkpointer
    from agent.storage.history import CheckpointRecord

# The checkpoint savers (LangGraph, psycopg, aiosqlite) are imported when a Storage opens, not with this package:
# `cachebot history` reads the audit trail (agent.storage.audit) and nothing else (tests/agent/cli/test_startup.py).
# A Storage opened ``checkpoints_when_needed`` (`cachebot trace`, which reads the checkpoints' tables directly
# through agent.storage.history) imports them only if something asks for the saver.


class Storage:
    """Every store on one decision (``database``); ``close()`` closes them all."""

    def __init__(self, database: Database, engine: Engine, checkpoints: Checkpointer | None, audit: AuditStore,
                 claims: ClaimStore, locks: ThreadLocks, runs: RunTracker, on_close: ExitStack,
                 serde: SerializerProtocol | Callable[[], SerializerProtocol] | None = None):
        self.database = database
        self._serde = serde  # the checkpoints' serializer (or what makes it), for the async saver too
        self.engine = engine  # the audit database's: audit, runs, and the claims on PostgreSQL
        self._checkpoints = checkpoints  # None: opened when first asked for
        self._opening = threading.Lock()
        self.audit = audit
        self.claims = claims
        # PostgreSQL: the same table; SQLite: the audit database's cachebot_claims (migration 0002), next to the
        # leases, not the claims file (which keeps the claims that guard no lease: decisions, commands, digests)
        self.intake_claims = claims if claims.engine is engine else ClaimStore(engine)
        self.locks = locks
        self.runs = runs
        self.approval_copies = ApprovalCopies(engine)
        self.purges_in_flight = PurgeJournal(engine)
        self._on_close = on_close

    @classmethod
    def open(cls, config: AppConfig, *, checkpoint_path: str | os.PathLike[str] | None = None,
             database_url: str | None = None,
             serde: SerializerProtocol | Callable[[], SerializerProtocol] | None = None,
             checkpoints_when_needed: bool = False) -> Storage:
        """Decide where the records go, migrate the schema (a no-op when current) and open every store.
        ``checkpoint_path`` / ``database_url`` override the config (tests, a second Agent on other files);
        ``serde`` writes and reads the checkpoints (the Agent's allow-lists the graph state's classes), or makes
        the serializer when first needed. ``checkpoints_when_needed``: the saver (LangGraph and its drivers) is
        opened the first time ``checkpointer`` is read, not now: for a reader that may never need it."""
        database = Database.choose(config.storage, checkpoint_path=checkpoint_path, database_url=database_url)
        with ExitStack() as opened:  # a store that fails to open closes the ones opened before it
            engine = make_engine(database.url)
            opened.callback(engine.dispose)
            upgrade(database.url, engine)
            checkpoints = None
            if not checkpoints_when_needed:
                from agent.storage.checkpoints import open_checkpointer

                checkpoints = opened.enter_context(closing(open_checkpointer(database, serde=_made(serde))))
            claims = opened.enter_context(closing(ClaimStore.open(database, engine=engine)))
            locks = opened.enter_context(closing(ThreadLocks.open(database)))
            storage = cls(database, engine, checkpoints, AuditStore(engine, config=config), claims, locks,
                          RunTracker(engine), opened.pop_all(), serde)
        return storage

    @property
    def url(self) -> str:
        return self.database.url

    @property
    def kind(self) -> str:
        """``"sqlite"`` or ``"postgres"``."""
        return self.database.kind

    @property
    def serde(self) -> SerializerProtocol | None:
        """The checkpoints' serializer (made now if it was given as a function)."""
        with self._opening:
            self._serde = _made(self._serde)
        return self._serde

    @property
    def checkpointer(self) -> BaseCheckpointSaver:
        """The synchronous saver to compile the graph with."""
        if self._checkpoints is None:
            serde = self.serde
            with self._opening:
                if self._checkpoints is None:
                    from agent.storage.checkpoints import open_checkpointer

                    self._checkpoints = open_checkpointer(self.database, serde=serde)
                    self._on_close.callback(self._checkpoints.close)
        return self._checkpoints.saver

    def async_checkpointer(self) -> AbstractAsyncContextManager[BaseCheckpointSaver]:
        """``async with storage.async_checkpointer() as saver:`` an async saver on the same checkpoints, open
        for the block (its connections belong to the running event loop)."""
        from agent.storage.checkpoints import open_async_checkpointer

        return open_async_checkpointer(self.database, serde=self.serde)

    def thread_history(self, thread_id: str) -> list[CheckpointRecord]:
        """The thread's checkpoints, oldest first: metadata, time and each step's writes (``cachebot trace``)."""
        from agent.storage.history import thread_history

        return thread_history(self.database, lambda: self.checkpointer, thread_id, engine=self.engine,
                              serde=lambda: self.serde)

    def close(self) -> None:
        self._on_close.close()


def _made(serde: SerializerProtocol | Callable[[], SerializerProtocol] | None) -> SerializerProtocol | None:
    """A serializer given as itself, or as the function that makes it (LangGraph's import costs a quarter second:
    a reader that never meets a write LangGraph's own encodings do not cover never pays it)."""
    return serde if serde is None or hasattr(serde, "loads_typed") else serde()
