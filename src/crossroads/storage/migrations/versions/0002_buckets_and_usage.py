"""Live statistics' buckets and the daily usage rollups, filled from the stored records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_AMOUNTS = ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cost")
_BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "endpoint_buckets",
        sa.Column("instance", sa.String(200), primary_key=True),
        sa.Column("endpoint_id", sa.String(400), primary_key=True),
        sa.Column("grain", sa.String(8), primary_key=True),
        sa.Column("start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_endpoint_buckets_start", "endpoint_buckets", ["start"])
    usage = op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("app", sa.String(500), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
    )
    assert usage is not None
    _backfill(op.get_bind(), usage)


def _tokens(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A token count as the rollups count it: missing or negative is 0."""
    return sa.func.sum(sa.case((column > 0, column), else_=0))


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _backfill(bind: sa.Connection, usage: sa.Table) -> None:
    """usage_daily from `generations`, grouped in SQL by UTC day, model, referer and title;
    referer and title are folded into the app here (referer, else title, else '')."""
    g = sa.table(
        "generations",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("model", sa.String),
        sa.column("http_referer", sa.String),
        sa.column("app_title", sa.String),
        sa.column("tokens_prompt", sa.Integer),
        sa.column("tokens_completion", sa.Integer),
        sa.column("tokens_reasoning", sa.Integer),
        sa.column("total_cost", sa.Float),
    )
    if bind.dialect.name == "postgresql":
        day: sa.ColumnElement[Any] = sa.cast(sa.func.timezone("UTC", g.c.created_at), sa.Date)
    else:  # SQLite keeps the UTC time as text
        day = sa.func.date(g.c.created_at)
    day = day.label("day")
    cost = sa.func.sum(g.c.total_cost).label("cost")
    query = sa.select(
        day,
        g.c.model,
        g.c.http_referer,
        g.c.app_title,
        sa.func.count().label("requests"),
        _tokens(g.c.tokens_prompt).label("prompt_tokens"),
        _tokens(g.c.tokens_completion).label("completion_tokens"),
        _tokens(g.c.tokens_reasoning).label("reasoning_tokens"),
        cost,
    ).group_by(day, g.c.model, g.c.http_referer, g.c.app_title)
    sums: dict[tuple[date, str, str], list[Any]] = {}
    for row in bind.execute(query):
        key = (_day(row.day), row.model, row.http_referer or row.app_title or "")
        amounts = [
            int(row.requests or 0),
            int(row.prompt_tokens or 0),
            int(row.completion_tokens or 0),
            int(row.reasoning_tokens or 0),
            float(row.cost or 0.0) if math.isfinite(float(row.cost or 0.0)) else 0.0,
        ]
        present = sums.setdefault(key, [0, 0, 0, 0, 0.0])
        for at, amount in enumerate(amounts):
            present[at] += amount
    params = [
        {"day": key[0], "model": key[1], "app": key[2], **dict(zip(_AMOUNTS, values, strict=True))}
        for key, values in sorted(sums.items())
    ]
    for at in range(0, len(params), _BATCH):
        bind.execute(usage.insert(), params[at : at + _BATCH])


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_index("ix_endpoint_buckets_start", table_name="endpoint_buckets")
    op.drop_table("endpoint_buckets")
