"""Accounts: the credits ledger, apps, per-key rate limits and guardrails.

Keys gain `requests_per_minute`, `tokens_per_minute` and `guardrails`; generations gain
`app_id` and `balance_charged` (false for the records stored before: nothing was charged
against credits then). New tables: `apps` (filled here from the stored records' referers,
their `app_id` set), `ledger` and `revisions` (the `api_keys` counter, from 0).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-11
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BATCH = 1000
_URL_LENGTH = 500
_TITLE_LENGTH = 200


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("requests_per_minute", sa.Integer, nullable=True))
    op.add_column("api_keys", sa.Column("tokens_per_minute", sa.Integer, nullable=True))
    op.add_column("api_keys", sa.Column("guardrails", sa.JSON, nullable=True))
    op.add_column("generations", sa.Column("app_id", sa.Integer, nullable=True))
    op.add_column(
        "generations",
        sa.Column("balance_charged", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    apps = op.create_table(
        "apps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("url", sa.String(_URL_LENGTH), nullable=False),
        sa.Column("title", sa.String(_TITLE_LENGTH), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("url", name="uq_apps_url"),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("generation_id", sa.String(64), nullable=True),
        sa.Column("api_key_hash", sa.String(64), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.UniqueConstraint("generation_id", name="uq_ledger_generation_id"),
    )
    op.create_index("ix_ledger_created_at", "ledger", ["created_at"])
    totals = op.create_table(
        "ledger_totals",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("high", sa.BigInteger, nullable=False),
        sa.Column("low", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
    )
    revisions = op.create_table(
        "revisions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    assert apps is not None and revisions is not None and totals is not None
    bind = op.get_bind()
    bind.execute(revisions.insert(), [{"name": "api_keys", "value": 0}])
    empty = {"high": 0, "low": 0, "rows": 0}
    bind.execute(totals.insert(), [{"kind": "charge", **empty}, {"kind": "credit", **empty}])
    _backfill_apps(bind, apps)
    op.create_index("ix_generations_app_id", "generations", ["app_id"])  # after the backfill


# -- apps of the records stored before ----------------------------------------------------
# `storage.apps` as of this revision, kept here: a migration does what it did when written.


def _app_url(referer: str) -> str | None:
    """The normalized app URL of a referer (`storage.apps.normalize_app_url`)."""
    try:
        parts = urlsplit(referer.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    url = f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"
    return url if len(url) <= _URL_LENGTH else None


def _time(value: Any) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives the UTC wall clock)."""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _backfill_apps(bind: sa.Connection, apps: sa.Table) -> None:
    """An app per normalized referer of the stored records (created when its first record
    was, titled with the newest non-empty title), and the records' `app_id`. Grouped in SQL
    by referer (and title), so the records are read once, not one by one."""
    g = sa.table(
        "generations",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("http_referer", sa.String),
        sa.column("app_title", sa.String),
        sa.column("app_id", sa.Integer),
    )
    first: dict[str, datetime] = {}  # url: its first record's time
    url_of: dict[str, str] = {}  # raw referer: url
    seen = sa.select(g.c.http_referer, sa.func.min(g.c.created_at).label("first"))
    for row in bind.execute(seen.where(g.c.http_referer.is_not(None)).group_by(g.c.http_referer)):
        url = _app_url(row.http_referer)
        if url is None:
            continue
        url_of[row.http_referer] = url
        at = _time(row.first)
        first[url] = min(at, first.get(url, at))
    if not first:
        return
    titled: dict[str, tuple[datetime, str]] = {}  # url: (newest time, title)
    titles = (
        sa.select(g.c.http_referer, g.c.app_title, sa.func.max(g.c.created_at).label("last"))
        .where(g.c.http_referer.is_not(None), g.c.app_title.is_not(None))
        .group_by(g.c.http_referer, g.c.app_title)
    )
    for titled_row in bind.execute(titles):
        url = url_of.get(titled_row.http_referer)
        title = titled_row.app_title.strip()[:_TITLE_LENGTH]
        if url is None or not title:
            continue
        candidate = (_time(titled_row.last), title)
        if url not in titled or candidate > titled[url]:
            titled[url] = candidate
    params = [
        {"url": url, "title": titled[url][1] if url in titled else None, "created_at": at}
        for url, at in sorted(first.items())
    ]
    for start in range(0, len(params), _BATCH):
        bind.execute(apps.insert(), params[start : start + _BATCH])
    ids = {row.url: row.id for row in bind.execute(sa.select(apps.c.url, apps.c.id))}
    # the records' app_id in one statement, through a scratch table of referer -> app
    scratch = sa.Table(
        "_app_referers",
        sa.MetaData(),
        sa.Column("referer", sa.String(_URL_LENGTH), primary_key=True),
        sa.Column("app_id", sa.Integer, nullable=False),
    )
    scratch.create(bind)
    links = [{"referer": ref, "app_id": ids[url]} for ref, url in sorted(url_of.items())]
    for start in range(0, len(links), _BATCH):
        bind.execute(scratch.insert(), links[start : start + _BATCH])
    app_of = (
        sa.select(scratch.c.app_id).where(scratch.c.referer == g.c.http_referer).scalar_subquery()
    )
    bind.execute(
        g.update().where(g.c.http_referer.in_(sa.select(scratch.c.referer))).values(app_id=app_of)
    )
    scratch.drop(bind)


def downgrade() -> None:
    op.drop_table("revisions")
    op.drop_table("ledger_totals")
    op.drop_index("ix_ledger_created_at", table_name="ledger")
    op.drop_table("ledger")
    op.drop_table("apps")
    op.drop_index("ix_generations_app_id", table_name="generations")
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("balance_charged")
        batch.drop_column("app_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("guardrails")
        batch.drop_column("tokens_per_minute")
        batch.drop_column("requests_per_minute")
