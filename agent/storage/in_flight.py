"""Purges in flight (``cachebot_purges_in_flight``): each batch a run is about to send, written before it goes.

The audit trail records a batch once its layer answered, and a little after (``ProgressRecorder`` writes off the
event loop). A process killed in between leaves a batch the layer may have taken with no record of it; the run's
new holder would send it again. With this journal it knows which batches were (maybe) out: it looks at what the
layers serve for them first, and sends again only what is still stale (``agent/nodes/resend.py``).

One row per batch, not per URL: the write is on the purge path (bench/purge_throughput.py). Rows are superseded
by the audit trail (a target the audit shows answered is not "maybe sent") and forgotten when the run ends or a
new request starts on the thread. The targets are stored as the plan has them (URLs, tags): the checkpoints in the
same database hold the same plan, and the rows live only as long as the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from agent.periods import utc_now
from agent.storage.tables import purges_in_flight

FIRST, REPAIR = "first", "repair"


@dataclass(frozen=True)
class InFlight:
    """One batch a run sent (or was about to send) to a layer."""

    layer: str
    operation: str
    targets: tuple[str, ...]


class PurgeJournal:
    """The ``cachebot_purges_in_flight`` rows on the audit database's engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def sending(self, thread_id: str, run_pass: str, layer: str, operation: str, targets: list[str]) -> None:
        """Durably note a batch before it goes out (one INSERT, committed before this returns)."""
        with self.engine.begin() as db:
            db.execute(insert(purges_in_flight).values(
                thread_id=thread_id, run_pass=run_pass, layer=layer, operation=operation,
                targets=json.dumps(targets), sent_at=utc_now()))

    def of(self, thread_id: str, run_pass: str) -> list[InFlight]:
        """The batches noted for the thread's pass, oldest first."""
        query = (select(purges_in_flight.c.layer, purges_in_flight.c.operation, purges_in_flight.c.targets)
                 .where(purges_in_flight.c.thread_id == thread_id, purges_in_flight.c.run_pass == run_pass)
                 .order_by(purges_in_flight.c.id))
        with self.engine.connect() as db:
            return [InFlight(row.layer, row.operation, tuple(json.loads(row.targets))) for row in db.execute(query)]

    def forget(self, thread_id: str) -> None:
        """The thread's run ended (or a new one starts): nothing of it is in flight any more."""
        with self.engine.begin() as db:
            db.execute(delete(purges_in_flight).where(purges_in_flight.c.thread_id == thread_id))
