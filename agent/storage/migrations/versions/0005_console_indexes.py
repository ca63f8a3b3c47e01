"""Indexes for the web console's filters over 100,000 requests (bench/console.py measures them).

- ``audit_plan_items (request_id, site)``: the site filter asks, request by request from the newest, whether the
  request planned anything on that site; with ``site`` in the index that is an index-only probe, not a visit to
  every plan item of the request (424 ms at 20,000 requests without it);
- ``audit_requests (status, received_at)`` and ``(outcome, received_at)``: the status filter (waiting for
  approval, verified, not verified, …) and the page of requests waiting for approval walk only the matching
  requests, newest first, instead of every request;
- ``audit_requests (requested_by, received_at)`` replaces ``(requested_by)``: a person's requests newest first,
  without sorting all of them (``cachebot history --user`` reads it too);
- ``audit_plan_items (request_id, id)`` and ``audit_results (request_id, id)`` replace ``(request_id)``: a
  request's page shows its first 200 items in order; PostgreSQL walked the primary key in order instead and
  filtered on the request (half a second for a purge of 5,000 pages on five layers among 600,000 rows).

Revision ID: 0005_console_indexes
Revises: 0004_leases
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005_console_indexes"
down_revision = "0004_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_plan_items_request_id_site", "audit_plan_items", ["request_id", "site"])
    op.create_index("ix_audit_requests_status_received_at", "audit_requests", ["status", "received_at"])
    op.create_index("ix_audit_requests_outcome_received_at", "audit_requests", ["outcome", "received_at"])
    op.create_index("ix_audit_requests_requested_by_received_at", "audit_requests", ["requested_by", "received_at"])
    op.drop_index("ix_audit_requests_requested_by", table_name="audit_requests")
    for table in ("audit_plan_items", "audit_results"):
        op.create_index(f"ix_{table}_request_id_id", table, ["request_id", "id"])
        op.drop_index(f"ix_{table}_request_id", table_name=table)


def downgrade() -> None:
    for table in ("audit_plan_items", "audit_results"):
        op.create_index(f"ix_{table}_request_id", table, ["request_id"])
        op.drop_index(f"ix_{table}_request_id_id", table_name=table)
    op.create_index("ix_audit_requests_requested_by", "audit_requests", ["requested_by"])
    op.drop_index("ix_audit_requests_requested_by_received_at", table_name="audit_requests")
    op.drop_index("ix_audit_requests_outcome_received_at", table_name="audit_requests")
    op.drop_index("ix_audit_requests_status_received_at", table_name="audit_requests")
    op.drop_index("ix_audit_plan_items_request_id_site", table_name="audit_plan_items")
