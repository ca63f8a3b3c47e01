"""Every table cachebot keeps, in one SQLAlchemy metadata: the queries use these definitions.

The migrations in ``agent/storage/migrations`` create the tables (on SQLite and PostgreSQL alike); a migration
is history and spells out its own DDL, and ``tests/agent/storage/test_tables.py`` checks that a migrated
database and this metadata agree, so a new column is added here and in a new migration together
(``alembic revision --autogenerate`` compares against this metadata).

- ``audit_*``: the audit trail (``agent.storage.audit``);
- ``cachebot_claims``: exactly-once claims (``agent.storage.claims``);
- ``cachebot_runs``: every run's lease and heartbeat, for takeover and crash recovery (``agent.storage.runs``);
- ``cachebot_approval_copies``: where each run's approval request was posted (``agent.storage.copies``);
- ``cachebot_purges_in_flight``: each batch of purges a run is about to send (``agent.storage.in_flight``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text, TypeDecorator, false,
)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on SQLite (no time zones) as on PostgreSQL (timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


metadata = MetaData()

requests = Table(
    "audit_requests", metadata,
    Column("id", String(32), primary_key=True),
    Column("thread_id", String(128), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("interface", String(20), nullable=False),
    Column("channel", String(200)),
    Column("text", Text, nullable=False),
    Column("intent", String(20)),
    Column("understood_by", String(20)),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("status", String(20), nullable=False),
    Column("outcome", String(20)),
    Column("page_count", Integer, nullable=False, default=0),
    Column("purge_count", Integer, nullable=False, default=0),
    Column("llm_model", String(100)),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("total_tokens", Integer),
    Column("received_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Index("ix_audit_requests_thread_id", "thread_id"),
    Index("ix_audit_requests_received_at", "received_at"),
    # the console's filters, newest first (migration 0005_console_indexes)
    Index("ix_audit_requests_requested_by_received_at", "requested_by", "received_at"),
    Index("ix_audit_requests_status_received_at", "status", "received_at"),
    Index("ix_audit_requests_outcome_received_at", "outcome", "received_at"),
)

plan_items = Table(
    "audit_plan_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("audit_requests.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("url_hash", String(64), nullable=False),
    Column("site", String(100), nullable=False),
    Column("layer", String(100), nullable=False),
    Column("operation", String(20), nullable=False),
    Column("target", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested", Boolean, nullable=False),
    # a request's items in order: its page reads the first 200 of 25,000 without sorting them
    Index("ix_audit_plan_items_request_id_id", "request_id", "id"),
    Index("ix_audit_plan_items_url_hash", "url_hash"),
    Index("ix_audit_plan_items_request_id_site", "request_id", "site"),  # the console's site filter
)

decisions = Table(
    "audit_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("audit_requests.id", ondelete="CASCADE"), nullable=False),
    Column("thread_id", String(128), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("interface", String(20), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("decided_at", UTCDateTime, nullable=False),
    Index("ix_audit_decisions_request_id", "request_id"),
)

results = Table(
    "audit_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), ForeignKey("audit_requests.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("url_hash", String(64), nullable=False),
    Column("site", String(100), nullable=False),
    Column("path", Text, nullable=False),
    Column("layer", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("evidence", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("found_stale", Boolean, nullable=False, default=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_audit_results_request_id_id", "request_id", "id"),  # as for plan items
    Index("ix_audit_results_url_hash", "url_hash"),
    Index("ix_audit_results_site_layer", "site", "layer"),
)

AUDIT_CHILD_TABLES = (results, decisions, plan_items)
AUDIT_TABLES = (requests, plan_items, decisions, results)

claims = Table(
    "cachebot_claims", metadata,
    Column("key", String(512), primary_key=True),
    Column("claimed_at", Float, nullable=False),  # time.time(): compared with plain seconds, never shown
    Index("ix_cachebot_claims_claimed_at", "claimed_at"),
)

runs = Table(
    "cachebot_runs", metadata,
    Column("thread_id", String(128), primary_key=True),
    Column("request_id", String(32)),
    Column("status", String(20), nullable=False),
    Column("interface", String(20)),
    Column("channel", String(200)),
    Column("owner", String(200), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("reply_to", Text),  # JSON: where the final message goes, and what was asked (a front end's business)
    Column("takeovers", Integer, nullable=False, default=0, server_default="0"),
    Column("told", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_cachebot_runs_status_heartbeat", "status", "heartbeat_at"),
)

approval_copies = Table(
    "cachebot_approval_copies", metadata,
    Column("thread_id", String(128), primary_key=True),
    Column("channel", String(200), primary_key=True),
    Column("ts", String(64), primary_key=True),
    Column("posted_at", UTCDateTime, nullable=False),
)

purges_in_flight = Table(
    "cachebot_purges_in_flight", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("thread_id", String(128), nullable=False),
    Column("run_pass", String(10), nullable=False),  # "first" or "repair": execute's pass
    Column("layer", String(100), nullable=False),
    Column("operation", String(20), nullable=False),
    Column("targets", Text, nullable=False),  # JSON list: one row per batch, never one per URL
    Column("sent_at", UTCDateTime, nullable=False),
    Index("ix_cachebot_purges_in_flight_thread", "thread_id", "run_pass"),
)
