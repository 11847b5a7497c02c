"""The database schema (SQLAlchemy Core), one definition for SQLite and PostgreSQL.

Changes go through an Alembic migration in `migrations/versions/`.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()
# Client text is stored without these, and bounded by its column (`column_length`).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1


def column_length(column: sa.Column[Any]) -> int:
    """How many characters a text column stores: client text is bounded by the schema."""
    kind = column.type
    assert isinstance(kind, sa.String) and kind.length is not None, column
    return kind.length


api_keys = sa.Table(
    "api_keys",
    metadata,
    # sha256 of the key; the key itself is never stored
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),  # masked key for display
    sa.Column("is_management", sa.Boolean, nullable=False, default=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("limit", sa.Float, nullable=True),
    sa.Column("limit_reset", sa.String(16), nullable=True),
    sa.Column("include_byok_in_limit", sa.Boolean, nullable=False, default=False),
    sa.Column("creator_user_id", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("requests_per_minute", sa.Integer, nullable=True),
    sa.Column("tokens_per_minute", sa.Integer, nullable=True),
    sa.Column("guardrails", sa.JSON, nullable=True),  # the key's `Guardrails` as a dict
)

# Counters bumped in the transaction of every write to the table they are named after
# ('api_keys': KeyStore), so a reader can tell cheaply whether anything changed.
revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

generations = sa.Table(
    "generations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("api_key_hash", sa.String(64), nullable=True, index=True),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("provider_slug", sa.String(100), nullable=True),
    sa.Column("provider_name", sa.String(200), nullable=True),
    sa.Column("endpoint_tag", sa.String(200), nullable=True),
    sa.Column("upstream_id", sa.String(200), nullable=True),
    sa.Column("api_type", sa.String(32), nullable=False),
    sa.Column("streamed", sa.Boolean, nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("generation_time_ms", sa.Float, nullable=True),
    sa.Column("finish_reason", sa.String(32), nullable=True),
    sa.Column("native_finish_reason", sa.String(64), nullable=True),
    sa.Column("tokens_prompt", sa.Integer, nullable=True),
    sa.Column("tokens_completion", sa.Integer, nullable=True),
    sa.Column("tokens_reasoning", sa.Integer, nullable=True),
    sa.Column("tokens_cached", sa.Integer, nullable=True),
    sa.Column("total_cost", sa.Float, nullable=False),
    sa.Column("http_referer", sa.String(500), nullable=True),
    sa.Column("app_title", sa.String(200), nullable=True),
    sa.Column("user_agent", sa.String(500), nullable=True),
    sa.Column("external_user", sa.String(200), nullable=True),
    sa.Column("session_id", sa.String(256), nullable=True),
    # one entry per provider tried, fallbacks included
    sa.Column("attempts", sa.JSON, nullable=False),
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("app_id", sa.Integer, nullable=True, index=True),  # apps.id of http_referer
    # charged against the account's credits: the ledger has its charge
    # (a database default, not SQLAlchemy's: a row without it is written as it was before)
    sa.Column("balance_charged", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("moderation_latency_ms", sa.Float, nullable=True),  # the moderation plugin's
    sa.Column("request_metadata", sa.JSON, nullable=True),  # the request's `metadata`
    sa.Column("trace", sa.JSON, nullable=True),  # the request's `trace`
)

# The apps requests came from: one row per normalized HTTP-Referer (storage/apps.py).
apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.String(500), nullable=False),
    sa.Column("title", sa.String(200), nullable=True),  # the last X-Title seen
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("url", name="uq_apps_url"),
)

# The account's money, in pico-USD (accounting/money.py): credits added by an operator and
# the charges of the generations made against them (one per generation, added by
# GenerationStore.insert_many). `amount` > 0 for both kinds; a charge is subtracted.
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # credit | charge
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("generation_id", sa.String(64), nullable=True),
    sa.Column("api_key_hash", sa.String(64), nullable=True),
    sa.Column("note", sa.String(500), nullable=True),
    sa.UniqueConstraint("generation_id", name="uq_ledger_generation_id"),
)

# The ledger's sums per kind, kept in the transaction of every ledger insert: the balance
# is read every second without summing the ledger. A sum is `high * 2**32 + low` (each part
# summed apart, far from 64-bit overflow however many rows there are).
ledger_totals = sa.Table(
    "ledger_totals",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),  # credit | charge
    sa.Column("high", sa.BigInteger, nullable=False),
    sa.Column("low", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
)

# Live statistics' time buckets (telemetry/buckets.py), one row per replica, endpoint, grain
# and bucket start: folded in by the background writer, reloaded at start.
endpoint_buckets = sa.Table(
    "endpoint_buckets",
    metadata,
    sa.Column("instance", sa.String(200), primary_key=True),
    sa.Column("endpoint_id", sa.String(400), primary_key=True),
    sa.Column("grain", sa.String(8), primary_key=True),  # minute | hour | day
    sa.Column("start", sa.BigInteger, primary_key=True, autoincrement=False),  # epoch s, UTC
    sa.Column("data", sa.LargeBinary, nullable=False),  # Bucket.to_json()
    sa.Index("ix_endpoint_buckets_start", "start"),
)

# Usage per UTC day, model and app, kept by GenerationStore.insert_many from the rows it
# inserts. app: the request's HTTP-Referer, else its X-Title, else '' (unattributed).
usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("app", sa.String(500), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
)
