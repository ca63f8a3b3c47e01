"""Leases: every run holds one, at every step, with a heartbeat (``cachebot_runs`` grows into the lease table).

A row now lives from the moment a front end accepts a request until its final message is out:
``accepted`` (taken in, nothing run yet) → ``running`` → ``executing`` (sending purges) → ``answering`` (the run
ended; the final message is being posted) → ``finished``. Its holder beats ``heartbeat_at``; a replica's sweeper
takes over a row whose heartbeat stopped (``agent/service/sweeper.py``). ``reply_to`` says where and how the
final message goes (and, for a request not started yet, what was asked), ``takeovers`` how often it was picked
up again, ``told`` whether its thread was told so. Finished rows are kept a while, then pruned.

Revision ID: 0004_leases
Revises: 0003_approval_copies
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_leases"
down_revision = "0003_approval_copies"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cachebot_runs") as table:
        table.add_column(sa.Column("heartbeat_at", TS))
        table.add_column(sa.Column("finished_at", TS))
        table.add_column(sa.Column("reply_to", sa.Text))
        table.add_column(sa.Column("takeovers", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("told", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute("UPDATE cachebot_runs SET heartbeat_at = updated_at")
    op.create_index("ix_cachebot_runs_status_heartbeat", "cachebot_runs", ["status", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_cachebot_runs_status_heartbeat", table_name="cachebot_runs")
    with op.batch_alter_table("cachebot_runs") as table:
        for column in ("told", "takeovers", "reply_to", "finished_at", "heartbeat_at"):
            table.drop_column(column)
