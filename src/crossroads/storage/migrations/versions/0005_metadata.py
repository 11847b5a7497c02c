"""Generations gain `request_metadata` and `trace`: the request's own `metadata` (at most
16 text pairs) and `trace` object, as the client sent them, shown by GET /generation.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("request_metadata", sa.JSON, nullable=True))
    op.add_column("generations", sa.Column("trace", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("trace")
        batch.drop_column("request_metadata")
