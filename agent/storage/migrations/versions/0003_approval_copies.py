"""Where each approval request was posted (``cachebot_approval_copies``).

An approval card is posted in the request's thread and, when configured, copied to the approvers' channel and
to approvers' direct messages (``approval.channel``, ``approval.dm_approvers``). A decision on any copy updates
every copy, so each copy's place (channel, message ts) is kept per run (thread).

Revision ID: 0003_approval_copies
Revises: 0002_claims
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_approval_copies"
down_revision = "0002_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cachebot_approval_copies",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(200), primary_key=True),
        sa.Column("ts", sa.String(64), primary_key=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cachebot_approval_copies")
