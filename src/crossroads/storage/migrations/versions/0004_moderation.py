"""Generations gain `moderation_latency_ms`: the time the moderation plugin took (None
when the request was not moderated, as for every record stored before).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("moderation_latency_ms", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("moderation_latency_ms")
