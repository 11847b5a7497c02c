"""Reads and writes of the tables, on the async engine. Nothing here is on the request path."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.schema.generation import GenerationRecord
from crossroads.schema.stats import BucketRow
from crossroads.storage.fit import RowFitter, refused_for_content
from crossroads.storage.rollups import USAGE_COLUMNS, count_usage, usage_params, usage_upsert
from crossroads.storage.tables import api_keys, endpoint_buckets, generations

log = logging.getLogger("crossroads.storage")


class GenerationStore:
    """Generation records. Inserts are idempotent by id: a record written again (a journal
    replayed after a crash that came between commit and cleanup) is skipped. The usage
    rollups (`usage_daily`, see `rollups.py`) are kept in the same transaction, from the
    rows actually inserted: a record written twice counts once there too."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._fitter = RowFitter(generations)
        dialect = engine.dialect.name
        if dialect == "postgresql":
            self._insert: sa.Insert = postgresql.insert(generations).on_conflict_do_nothing(
                index_elements=[generations.c.id]
            )
        elif dialect == "sqlite":
            self._insert = sqlite.insert(generations).on_conflict_do_nothing(
                index_elements=[generations.c.id]
            )
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            self._insert = generations.insert()
        self._insert_returning = self._insert.returning(*USAGE_COLUMNS)
        self._usage = usage_upsert(dialect)

    def prepare(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """`row` fitted to the table: text cut to length, integers clamped, and so on; its
        time in UTC (SQLite keeps a time's wall clock, not its offset: the UTC day of the
        usage rollups is read from it)."""
        fitted = self._fitter.fit(row)
        at = fitted.get("created_at")
        if type(at) is datetime and at.utcoffset():
            fitted["created_at"] = at.astimezone(UTC)
        return fitted

    def refused(self, error: BaseException) -> bool:
        """Whether an insert failed for the rows' content (it would fail again)."""
        return refused_for_content(error)

    async def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert the rows (skipping ids stored already) and add the inserted ones to the
        usage rollups, in one transaction: all of it is written, or nothing."""
        if not rows:
            return
        async with self._engine.begin() as conn:
            result = await conn.execute(self._insert_returning, [self.prepare(r) for r in rows])
            usage = count_usage(result.all())
            if usage:
                await conn.execute(self._usage, usage_params(usage))

    async def get(self, generation_id: str) -> GenerationRecord | None:
        query = generations.select().where(generations.c.id == generation_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return GenerationRecord(**row._mapping) if row else None

    async def spend_by_key(self, starts: Mapping[str, datetime]) -> dict[str, dict[str, float]]:
        """USD spent per key: all time (`total`) and since each of `starts` (which has `daily`),
        and `free_requests_today`: the day's requests to `:free` models."""
        cost, at = generations.c.total_cost, generations.c.created_at
        columns = [sa.func.sum(cost).label("total")] + [
            sa.func.sum(sa.case((at >= start, cost), else_=0.0)).label(name)
            for name, start in starts.items()
        ]
        free_today = sa.and_(at >= starts["daily"], generations.c.model.like("%:free"))
        columns.append(sa.func.sum(sa.case((free_today, 1), else_=0)).label("free_requests_today"))
        query = sa.select(generations.c.api_key_hash, *columns).group_by(generations.c.api_key_hash)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            r.api_key_hash: {k: float(v or 0) for k, v in r._mapping.items() if k != "api_key_hash"}
            for r in rows
        }


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, row: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.insert(), [row])

    async def update(self, key_hash: str, values: dict[str, Any]) -> None:
        query = api_keys.update().where(api_keys.c.hash == key_hash).values(**values)
        async with self._engine.begin() as conn:
            await conn.execute(query)

    async def delete(self, key_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.delete().where(api_keys.c.hash == key_hash))

    async def all(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(api_keys.select().order_by(api_keys.c.created_at))).all()
        return [dict(r._mapping) for r in rows]


Cutoff = int | Mapping[str, int]  # epoch seconds, for every grain or per grain name


def _starts(cutoff: Cutoff, *, newer: bool) -> sa.ColumnElement[bool]:
    """Rows whose start is at or after (`newer`) or before the cutoff (per grain: a grain
    not named matches no row)."""
    start, grain = endpoint_buckets.c.start, endpoint_buckets.c.grain
    if isinstance(cutoff, int):
        return start >= cutoff if newer else start < cutoff
    return sa.or_(
        sa.false(),
        *(
            sa.and_(grain == name, start >= at if newer else start < at)
            for name, at in sorted(cutoff.items())
        ),
    )


def _length(column: sa.Column[Any]) -> int:
    kind = column.type
    assert isinstance(kind, sa.String) and kind.length is not None, column
    return kind.length


class BucketStore:
    """Live statistics' buckets (`endpoint_buckets`): saved by the statistics folder,
    loaded at start. A row saved again replaces the stored one of its key."""

    _BATCH = 500  # rows per statement

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        c = endpoint_buckets.c
        self._limits = (_length(c.instance), _length(c.endpoint_id), _length(c.grain))
        self._skipped: set[tuple[str, str, str]] = set()
        dialect = engine.dialect.name
        insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(endpoint_buckets)
        self._upsert: sa.Insert = insert.on_conflict_do_update(
            index_elements=[
                endpoint_buckets.c.instance,
                endpoint_buckets.c.endpoint_id,
                endpoint_buckets.c.grain,
                endpoint_buckets.c.start,
            ],
            set_={"data": insert.excluded.data},
        )

    async def save(self, rows: Sequence[BucketRow]) -> None:
        """Insert or replace the rows, in one transaction (the last of a key wins). A row
        whose key does not fit its columns is skipped and logged: it would fail every time."""
        unique = {
            (r.instance, r.endpoint_id, r.grain, r.start): r.data for r in rows if self._fits(r)
        }
        params = [
            {"instance": i, "endpoint_id": e, "grain": g, "start": s, "data": data}
            for (i, e, g, s), data in sorted(unique.items())  # one lock order for every writer
        ]
        if not params:
            return
        async with self._engine.begin() as conn:
            for at in range(0, len(params), self._BATCH):
                await conn.execute(self._upsert, params[at : at + self._BATCH])

    def _fits(self, row: BucketRow) -> bool:
        lengths = (len(row.instance), len(row.endpoint_id), len(row.grain))
        if all(n <= limit for n, limit in zip(lengths, self._limits, strict=True)):
            return True
        key = (row.instance[:200], row.endpoint_id[:400], row.grain[:20])
        if key not in self._skipped:  # once per key, not every round
            self._skipped.add(key)
            log.warning("a bucket row's key is too long to store, skipped: %r", key)
        return False

    async def load(self, since: Cutoff) -> list[BucketRow]:
        """Every replica's rows starting at or after `since` (epoch seconds; or per grain)."""
        query = endpoint_buckets.select().where(_starts(since, newer=True))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            BucketRow(r.instance, r.endpoint_id, r.grain, int(r.start), bytes(r.data)) for r in rows
        ]

    async def prune(self, before: Cutoff) -> int:
        """Delete the rows starting before `before` (or per grain); how many were deleted."""
        query = endpoint_buckets.delete().where(_starts(before, newer=False))
        async with self._engine.begin() as conn:
            result = await conn.execute(query)
        return int(result.rowcount or 0)
