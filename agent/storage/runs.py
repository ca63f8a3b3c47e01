"""Every run's lease (``cachebot_runs``): who holds it, its heartbeat, how far it got, where its answer goes.

A row lives from the moment a front end takes a request in until its final message is out:

    accepted ──► running ──► executing ──► answering ──► finished
    (taken in)   (the graph)  (purges)     (run ended,    (kept a while
                                            posting)       to dedupe, then pruned)

The holder (``owner``: host, pid and a token per Agent) beats ``heartbeat_at`` while it holds the row
(``agent/service/leases.py``). While the graph runs it also holds the thread's lock (``agent.storage.locks``), so
a row ``running``/``executing`` whose lock can be taken belongs to a process that died. A row whose heartbeat
stopped is taken over by a sweeper (``agent/service/sweeper.py``) under the thread lock: the run goes on from
its last checkpoint and the final message is posted once (``agent/service/recovery.py``).

``reply_to`` is the front end's JSON (where the answer goes; for a request not yet started, what was asked):
this module stores it and never reads inside it.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from agent.periods import utc_now
from agent.storage.tables import runs

ACCEPTED = "accepted"
RUNNING = "running"
EXECUTING = "executing"
ANSWERING = "answering"
FINISHED = "finished"
LIVE = (ACCEPTED, RUNNING, EXECUTING, ANSWERING)
IN_GRAPH = (RUNNING, EXECUTING)  # the holder holds the thread lock in these


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_owner() -> str:
    """An owner token for one Agent: host and pid (for people reading the table) and a token (pids get reused)."""
    return f"{process_owner()}:{uuid.uuid4().hex[:8]}"


class RunTracker:
    """The ``cachebot_runs`` rows: one lease per thread."""

    def __init__(self, engine: Engine, owner: str | None = None):
        self.engine = engine
        self.owner = owner or new_owner()

    # --- a holder's side ------------------------------------------------------------------------------------

    def accept(self, thread_id: str, *, interface: str | None, channel: str | None, reply_to: dict[str, Any],
               at: datetime | None = None, db: Connection | None = None) -> None:
        """A front end took a request in (nothing run yet): the row says what was asked and where to answer, so
        another process can run it if this one dies before it starts. ``db``: inside that transaction."""
        at = at or utc_now()
        self._put(thread_id, {"status": ACCEPTED, "request_id": None, "interface": interface, "channel": channel,
                              "owner": self.owner, "started_at": at, "updated_at": at, "heartbeat_at": at,
                              "finished_at": None, "reply_to": json.dumps(reply_to), "takeovers": 0, "told": False},
                  db=db)

    def running(self, thread_id: str, *, request_id: str | None, interface: str | None, channel: str | None,
                reply_to: dict[str, Any] | None = None, at: datetime | None = None) -> None:
        """The graph runs for this thread (the caller holds its lock). A row accepted for it keeps what it said;
        a finished one (an earlier request on the thread) starts afresh."""
        at = at or utc_now()
        row = {"status": RUNNING, "request_id": request_id, "interface": interface, "channel": channel,
               "owner": self.owner, "updated_at": at, "heartbeat_at": at, "finished_at": None}
        if reply_to is not None:
            row["reply_to"] = json.dumps(reply_to)
        with self.engine.begin() as db:
            current = db.execute(select(runs.c.status, runs.c.reply_to).where(runs.c.thread_id == thread_id)).first()
            if reply_to is not None and current is not None and current.status != FINISHED:
                row["reply_to"] = json.dumps(_asked_kept(current.reply_to, reply_to))
            if current is None:
                db.execute(insert(runs).values(thread_id=thread_id, started_at=at, takeovers=0, told=False,
                                               **{"reply_to": None, **row}))
            elif current.status == FINISHED:
                db.execute(update(runs).where(runs.c.thread_id == thread_id).values(
                    started_at=at, takeovers=0, told=False, **{"reply_to": None, **row}))
            else:  # accepted by a front end, or taken over: keep where the answer goes and what was told
                db.execute(update(runs).where(runs.c.thread_id == thread_id).values(**row))

    def executing(self, thread_id: str, *, request_id: str | None, interface: str | None, channel: str | None,
                  at: datetime | None = None) -> None:
        """The graph's next step sends purges."""
        at = at or utc_now()
        row = {"request_id": request_id, "status": EXECUTING, "interface": interface, "channel": channel,
               "owner": self.owner, "updated_at": at, "heartbeat_at": at, "finished_at": None}
        with self.engine.begin() as db:
            # the thread lock is held, so nobody else writes this thread's row meanwhile
            if db.execute(update(runs).where(runs.c.thread_id == thread_id).values(**row)).rowcount == 0:
                db.execute(insert(runs).values(thread_id=thread_id, started_at=at, **row))

    def answering(self, thread_id: str, *, at: datetime | None = None) -> None:
        """The run ended; the front end is posting its final message (``finished`` when it is out)."""
        at = at or utc_now()
        self._set(thread_id, status=ANSWERING, owner=self.owner, updated_at=at, heartbeat_at=at)

    def finished(self, thread_id: str, *, at: datetime | None = None) -> None:
        """Done, final message out (or nobody to tell). The row stays until pruned: a retry finds it finished."""
        at = at or utc_now()
        self._set(thread_id, status=FINISHED, updated_at=at, finished_at=at)

    def beat(self, thread_ids: list[str], *, at: datetime | None = None) -> set[str]:
        """This holder is alive: refresh the heartbeat of the rows it still holds (a row taken over meanwhile has
        another owner and is left alone). Returns the thread ids still held."""
        if not thread_ids:
            return set()
        with self.engine.begin() as db:
            beaten = db.execute(update(runs).where(runs.c.thread_id.in_(thread_ids), runs.c.owner == self.owner,
                                                   runs.c.status.in_(LIVE))
                                .values(heartbeat_at=at or utc_now()).returning(runs.c.thread_id))
            return {row.thread_id for row in beaten}

    # --- a sweeper's side -----------------------------------------------------------------------------------

    def stale(self, *, older_than: float, statuses: tuple[str, ...] = LIVE,
              now: datetime | None = None) -> list[dict[str, Any]]:
        """Live rows whose heartbeat is older than ``older_than`` seconds: their holder stopped beating."""
        cutoff = (now or utc_now()) - timedelta(seconds=older_than)
        query = (select(runs).where(runs.c.status.in_(statuses),
                                    or_(runs.c.heartbeat_at.is_(None), runs.c.heartbeat_at < cutoff))
                 .order_by(runs.c.started_at))
        with self.engine.connect() as db:
            return [_row(r) for r in db.execute(query).mappings()]

    def take_over(self, thread_id: str, *, at: datetime | None = None) -> None:
        """This process holds the row now (the caller holds the thread lock and saw it stale)."""
        at = at or utc_now()
        with self.engine.begin() as db:
            db.execute(update(runs).where(runs.c.thread_id == thread_id).values(
                owner=self.owner, heartbeat_at=at, updated_at=at, takeovers=runs.c.takeovers + 1))

    def mark_told(self, thread_id: str) -> None:
        """The thread was told its request was picked up again (told once, whoever picks it up next)."""
        self._set(thread_id, told=True)

    def prune(self, *, older_than: float, now: datetime | None = None) -> int:
        """Drop finished rows older than ``older_than`` seconds."""
        cutoff = (now or utc_now()) - timedelta(seconds=older_than)
        with self.engine.begin() as db:
            return db.execute(delete(runs).where(runs.c.status == FINISHED, runs.c.finished_at < cutoff)).rowcount or 0

    # --- reading ----------------------------------------------------------------------------------------------

    def get(self, thread_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(runs).where(runs.c.thread_id == thread_id)).mappings().first()
        return _row(row) if row else None

    def all(self) -> list[dict[str, Any]]:
        """Every live row (not finished), oldest first."""
        with self.engine.connect() as db:
            return [_row(r) for r in db.execute(select(runs).where(runs.c.status.in_(LIVE))
                                                .order_by(runs.c.started_at)).mappings()]

    # --- internals --------------------------------------------------------------------------------------------

    def _set(self, thread_id: str, **values: Any) -> None:
        with self.engine.begin() as db:
            db.execute(update(runs).where(runs.c.thread_id == thread_id).values(**values))

    def _put(self, thread_id: str, row: dict[str, Any], db: Connection | None = None) -> None:
        if db is None:
            with self.engine.begin() as own:
                self._put(thread_id, row, own)
            return
        if db.execute(update(runs).where(runs.c.thread_id == thread_id).values(**row)).rowcount == 0:
            db.execute(insert(runs).values(thread_id=thread_id, **row))


def _asked_kept(recorded: str | None, reply_to: dict[str, Any]) -> dict[str, Any]:
    """A running request's ``reply_to`` over the one recorded when it was accepted: what was asked (kept for a
    takeover of a run killed before it got going) stays, when both are the same request's (same ``key``)."""
    before = json.loads(recorded) if recorded else {}
    if not isinstance(before, dict) or before.get("key") != reply_to.get("key"):
        return reply_to
    return {**before, **reply_to}


def _row(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["reply_to"] = json.loads(out["reply_to"]) if out.get("reply_to") else None
    return out
