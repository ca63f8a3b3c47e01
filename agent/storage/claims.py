"""Exactly-once claims: ``claim(key)`` is True for exactly one caller per key, across threads, processes and
replicas; everyone after gets False.

LangGraph has no per-thread lock and chat platforms deliver events more than once (retries, double clicks,
several app replicas). A front end claims ``event:<id>`` before starting a run and
``decision:<thread>:<interrupt>`` before resuming one; the digest claims its week.

The arbiter is a row in ``cachebot_claims`` (``agent/storage/tables.py``), inserted with
``INSERT … ON CONFLICT DO NOTHING RETURNING key``: a row comes back only to the caller whose insert happened.
One store, two places (``ClaimStore.open`` follows the ``Database`` decision):

- PostgreSQL: the table in the shared database (migration ``0002_claims``), seen by every replica;
- SQLite: the table in its own file next to the checkpoints (``claims.sqlite``), so a claim on Slack's ack path
  never waits behind the audit's writes for SQLite's single writer lock. Except the claims of requests being
  taken in (``Storage.intake_claims``): those are written with the request's lease (``Agent.take_in``), so they
  are in the audit database's table, in the lease's transaction (that path writes the lease there anyway).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import Engine, delete, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable

from agent.storage.database import Database, make_engine, upsert_insert
from agent.storage.migrations import upgrade
from agent.storage.tables import claims

LEGACY_TABLE = "claims"  # what claims.sqlite called the table before it was cachebot_claims


class ClaimStore:
    """Claims on one engine: the shared database's (PostgreSQL) or the claims file's (SQLite)."""

    def __init__(self, engine: Engine, *, owns_engine: bool = False):
        self.engine = engine
        self._owns_engine = owns_engine
        self._insert = upsert_insert(engine)

    @property
    def kind(self) -> str:
        return "postgres" if self.engine.dialect.name == "postgresql" else "sqlite"

    @classmethod
    def open(cls, database: Database, *, engine: Engine | None = None) -> ClaimStore:
        """The claims for ``database``. PostgreSQL: in the shared database, on ``engine`` (the audit's, already
        migrated) when given. SQLite: in the claims file, whatever ``engine`` is."""
        if not database.postgres:
            return cls.in_file(database.claims_file)
        if engine is not None:
            return cls(engine)
        engine = make_engine(database.url)
        upgrade(database.url, engine)  # the table comes from migration 0002_claims
        return cls(engine, owns_engine=True)

    @classmethod
    def in_file(cls, path: str | os.PathLike[str]) -> ClaimStore:
        """Claims in a SQLite file (created, with its table, when missing)."""
        engine = make_engine(f"sqlite:///{Path(path)}")
        try:
            _prepare_claims_file(engine)
        except Exception:
            engine.dispose()
            raise
        return cls(engine, owns_engine=True)

    def claim(self, key: str, *, db: Connection | None = None) -> bool:
        """True only for the first caller that claims ``key``; everyone after gets False. ``db``: claim inside that
        transaction (on this store's engine), so the claim and what it guards are written together."""
        statement = (self._insert(claims).values(key=key, claimed_at=time.time())
                     .on_conflict_do_nothing(index_elements=[claims.c.key]).returning(claims.c.key))
        if db is not None:
            return db.execute(statement).first() is not None
        with self.engine.begin() as own:
            return own.execute(statement).first() is not None

    def claimed(self, key: str) -> bool:
        """Whether ``key`` was claimed (a claim is also a durable mark: "this assistant thread was greeted")."""
        with self.engine.connect() as db:
            return db.execute(select(claims.c.key).where(claims.c.key == key)).first() is not None

    def release(self, key: str) -> None:
        """Give a claim back (the work it guarded did not happen, so a later attempt may claim it again)."""
        with self.engine.begin() as db:
            db.execute(delete(claims).where(claims.c.key == key))

    def forget_older_than(self, seconds: float) -> int:
        """Drop claims older than ``seconds`` (housekeeping; keep this longer than any retry window)."""
        with self.engine.begin() as db:
            return db.execute(delete(claims).where(claims.c.claimed_at < time.time() - seconds)).rowcount or 0

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


def _prepare_claims_file(engine: Engine) -> None:
    """Create the table in a claims file. ``BEGIN IMMEDIATE``: worker processes starting together take turns."""
    with engine.connect() as connection:
        db = connection.execution_options(isolation_level="AUTOCOMMIT")  # so the BEGIN below is ours
        db.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            db.execute(CreateTable(claims, if_not_exists=True))
            for index in claims.indexes:
                db.execute(CreateIndex(index, if_not_exists=True))
            _adopt_legacy_claims(db)
            db.exec_driver_sql("COMMIT")
        except Exception:
            db.exec_driver_sql("ROLLBACK")
            raise


def _adopt_legacy_claims(db: Connection) -> None:
    """A claims file written before the table had its shared name keeps its claims (a digest posted this week
    stays posted; an event already run is not run again after the upgrade)."""
    if not inspect(db).has_table(LEGACY_TABLE):
        return
    db.execute(text(f"INSERT OR IGNORE INTO {claims.name} (key, claimed_at) "
                    f"SELECT key, claimed_at FROM {LEGACY_TABLE}"))
    db.execute(text(f"DROP TABLE {LEGACY_TABLE}"))
