"""Purges in flight: what a run is about to send, written before it goes out (``cachebot_purges_in_flight``).

One row per batch (a layer, an operation, its targets) with the run's thread and pass (``first`` or ``repair``).
When the process dies with a batch sent but its answer not yet in the audit trail, the run's new holder finds the
batch here, looks at what the layer serves before sending it again, and sends only what is still stale
(``agent/nodes/resend.py``). A run that ends forgets its rows.

Revision ID: 0006_purges_in_flight
Revises: 0005_console_indexes
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_purges_in_flight"
down_revision = "0005_console_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cachebot_purges_in_flight",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("thread_id", sa.String(128), nullable=False),
        sa.Column("run_pass", sa.String(10), nullable=False),
        sa.Column("layer", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(20), nullable=False),
        sa.Column("targets", sa.Text, nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cachebot_purges_in_flight_thread", "cachebot_purges_in_flight", ["thread_id", "run_pass"])


def downgrade() -> None:
    op.drop_index("ix_cachebot_purges_in_flight_thread", table_name="cachebot_purges_in_flight")
    op.drop_table("cachebot_purges_in_flight")
