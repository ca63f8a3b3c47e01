"""The runs sending purges right now (``cachebot_runs``), which is what crash recovery looks at.

While a run sends purges the Agent keeps its thread's row, status ``executing``, and holds the thread's lock
(``agent.storage.locks``); a finished or failed run deletes the row. A row whose lock can be taken was left by a
process that died mid-run: ``agent/service/recovery.py`` finishes that run or reports it interrupted.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from agent.periods import utc_now
from agent.storage.tables import runs

EXECUTING = "executing"


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RunTracker:
    """The ``cachebot_runs`` rows: which threads are sending purges right now."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def executing(self, thread_id: str, *, request_id: str | None, interface: str | None, channel: str | None,
                  at: datetime | None = None) -> None:
        at = at or utc_now()
        row = {"request_id": request_id, "status": EXECUTING, "interface": interface, "channel": channel,
               "owner": process_owner(), "updated_at": at}
        with self.engine.begin() as db:
            # the thread lock is held, so nobody else writes this thread's row meanwhile
            if db.execute(update(runs).where(runs.c.thread_id == thread_id).values(**row)).rowcount == 0:
                db.execute(insert(runs).values(thread_id=thread_id, started_at=at, **row))

    def finished(self, thread_id: str) -> None:
        with self.engine.begin() as db:
            db.execute(delete(runs).where(runs.c.thread_id == thread_id))

    def get(self, thread_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(runs).where(runs.c.thread_id == thread_id)).mappings().first()
        return dict(row) if row else None

    def all(self) -> list[dict[str, Any]]:
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(select(runs).order_by(runs.c.started_at)).mappings()]
