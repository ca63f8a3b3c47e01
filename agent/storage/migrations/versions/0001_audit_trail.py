"""The audit trail: requests, their plan, approval decisions and per-layer results.

Revision ID: 0001_audit_trail
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_audit_trail"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("thread_id", sa.String(128), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("interface", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(200)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("intent", sa.String(20)),
        sa.Column("understood_by", sa.String(20)),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(20)),
        sa.Column("page_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("purge_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("llm_model", sa.String(100)),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("total_tokens", sa.Integer),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_audit_requests_thread_id", "audit_requests", ["thread_id"])
    op.create_index("ix_audit_requests_requested_by", "audit_requests", ["requested_by"])
    op.create_index("ix_audit_requests_received_at", "audit_requests", ["received_at"])

    op.create_table(
        "audit_plan_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("audit_requests.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("url_hash", sa.String(64), nullable=False),  # sha256 of url: long URLs exceed a btree row
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("layer", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(20), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested", sa.Boolean, nullable=False),
    )
    op.create_index("ix_audit_plan_items_request_id", "audit_plan_items", ["request_id"])
    op.create_index("ix_audit_plan_items_url_hash", "audit_plan_items", ["url_hash"])

    op.create_table(
        "audit_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("audit_requests.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("thread_id", sa.String(128), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("interface", sa.String(20), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("decided_at", TS, nullable=False),
    )
    op.create_index("ix_audit_decisions_request_id", "audit_decisions", ["request_id"])

    op.create_table(
        "audit_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("audit_requests.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("url_hash", sa.String(64), nullable=False),
        sa.Column("site", sa.String(100), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("layer", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("evidence", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("found_stale", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_index("ix_audit_results_request_id", "audit_results", ["request_id"])
    op.create_index("ix_audit_results_url_hash", "audit_results", ["url_hash"])
    op.create_index("ix_audit_results_site_layer", "audit_results", ["site", "layer"])


def downgrade() -> None:
    for table in ("audit_results", "audit_decisions", "audit_plan_items", "audit_requests"):
        op.drop_table(table)
