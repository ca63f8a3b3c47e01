"""Exactly-once claims and the runs being executed (crash recovery), next to the audit trail.

- ``cachebot_claims``: one row per claimed key (Slack event ids, ``decision:<thread>:<interrupt>``, digests);
  ``INSERT … ON CONFLICT DO NOTHING`` makes ``claim()`` true for exactly one caller across replicas.
  (With SQLite the Slack app keeps its claims in ``claims.sqlite`` next to the checkpoints; the table is
  created here too so the schema is the same everywhere.)
- ``cachebot_runs``: a row per thread whose purges are being sent right now (status ``executing``), removed
  when the run finishes. A row left behind by a dead process is what ``agent/service/recovery.py`` finishes or
  reports as interrupted.

Revision ID: 0002_claims
Revises: 0001_audit_trail
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_claims"
down_revision = "0001_audit_trail"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cachebot_claims",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("claimed_at", sa.Float, nullable=False),
    )
    op.create_index("ix_cachebot_claims_claimed_at", "cachebot_claims", ["claimed_at"])
    op.create_table(
        "cachebot_runs",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("request_id", sa.String(32)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("interface", sa.String(20)),
        sa.Column("channel", sa.String(200)),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cachebot_runs")
    op.drop_index("ix_cachebot_claims_claimed_at", table_name="cachebot_claims")
    op.drop_table("cachebot_claims")
