"""Where each run's approval request was posted (``cachebot_approval_copies``): the card in the request's thread
and its copies in the approvers' channel and direct messages. A decision on any of them updates them all, and a
click on a message that is not one of them cannot decide anything.

Front ends record a place after posting there and read them back to update; which places get a copy is policy
(``agent.policy.approval_recipients``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from agent.periods import utc_now
from agent.storage.database import upsert_insert
from agent.storage.tables import approval_copies


class ApprovalCopies:
    """The ``cachebot_approval_copies`` rows on the audit database's engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._insert = upsert_insert(engine)

    def add(self, thread_id: str, channel: str, ts: str, *, at: datetime | None = None) -> None:
        """Remember that the approval request of ``thread_id`` is shown at (``channel``, ``ts``)."""
        statement = (self._insert(approval_copies).values(thread_id=thread_id, channel=channel, ts=ts,
                                                          posted_at=at or utc_now())
                     .on_conflict_do_nothing(index_elements=[approval_copies.c.thread_id, approval_copies.c.channel,
                                                             approval_copies.c.ts]))
        with self.engine.begin() as db:
            db.execute(statement)

    def of(self, thread_id: str) -> list[tuple[str, str]]:
        """Every (channel, ts) showing this run's approval request, oldest first."""
        query = (select(approval_copies.c.channel, approval_copies.c.ts)
                 .where(approval_copies.c.thread_id == thread_id).order_by(approval_copies.c.posted_at))
        with self.engine.connect() as db:
            return [(row.channel, row.ts) for row in db.execute(query)]

    def is_copy(self, thread_id: str, channel: str, ts: str | None) -> bool:
        """True when (``channel``, ``ts``) shows this run's approval request."""
        return bool(ts) and (channel, ts) in self.of(thread_id)
