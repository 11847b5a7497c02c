"""Reads and writes of the tables, on the async engine. Nothing here is on the request path."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crossroads.schema.generation import GenerationRecord
from crossroads.schema.stats import BucketRow
from crossroads.storage.apps import AppRows, clean_title, normalize_app_url
from crossroads.storage.fit import RowFitter, refused_for_content
from crossroads.storage.ledger import charge_insert, charge_rows, count_in_totals
from crossroads.storage.rollups import USAGE_COLUMNS, count_usage, usage_params, usage_upsert
from crossroads.storage.tables import api_keys, endpoint_buckets, generations, revisions

log = logging.getLogger("crossroads.storage")


# What insert_many needs back of each row it inserted: the rollups', the ledger's, the apps'.
_INSERTED = (
    *USAGE_COLUMNS,
    generations.c.id,
    generations.c.api_key_hash,
    generations.c.balance_charged,
    generations.c.app_id,
)


class GenerationStore:
    """Generation records. Inserts are idempotent by id: a record written again (a journal
    replayed after a crash that came between commit and cleanup) is skipped. In the same
    transaction, from the rows actually inserted (a record written twice counts once):
    the usage rollups (`usage_daily`, see `rollups.py`), the ledger's charges (`ledger.py`)
    and the apps' titles (`apps.py`)."""

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
        self._insert_returning = self._insert.returning(*_INSERTED)
        self._usage = usage_upsert(dialect)
        self._charges = charge_insert(dialect)
        self._apps = AppRows(dialect)

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

    async def insert_many(self, rows: Sequence[Mapping[str, Any]], *, fitted: bool = False) -> None:
        """Insert the rows (skipping ids stored already), in one transaction: all of it is
        written, or nothing. Each row's `app_id` is the app of its `http_referer` (None
        without one; the app's row is created the first time it is seen). For the rows
        inserted: their usage is added to the rollups, their apps take the last non-empty
        title among them, and each one with `balance_charged` and a cost gets its ledger
        charge. Rows stored already change nothing. `fitted`: the rows went through
        `prepare` already (the recorder's do, before they are journaled), so they are only
        copied (the insert adds their `app_id`)."""
        if not rows:
            return
        params = [dict(r) for r in rows] if fitted else [self.prepare(r) for r in rows]
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            stored = await self._stored(conn, [p["id"] for p in params])
            urls = [
                normalize_app_url(p["http_referer"])
                if p.get("http_referer") and p["id"] not in stored
                else None
                for p in params
            ]  # a stored record's app is not looked up again (it will not be inserted)
            ids = await self._apps.ids(conn, {u for u in urls if u is not None}, at=now)
            for param, url in zip(params, urls, strict=True):
                param["app_id"] = ids[url] if url is not None else None
            inserted = (await conn.execute(self._insert_returning, params)).all()
            if not inserted:
                return
            titles = self._titles(params, {r.id for r in inserted})
            if titles:
                await self._apps.retitle(conn, titles, at=now)
            usage = count_usage(inserted)
            if usage:
                await conn.execute(self._usage, usage_params(usage))
            charges = charge_rows(inserted)
            if charges:  # one per generation inserted just now: none can be there already
                await conn.execute(self._charges, charges)
                await conn.execute(count_in_totals("charge", [c["amount"] for c in charges]))

    @staticmethod
    async def _stored(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are stored already."""
        query = sa.select(generations.c.id).where(generations.c.id.in_(sorted(set(ids))))
        return {row.id for row in await conn.execute(query)}

    @staticmethod
    def _titles(params: Sequence[Mapping[str, Any]], inserted: set[str]) -> dict[int, str]:
        """Per app, the last non-empty title among the inserted rows, in the batch's order."""
        titles = {}
        for param in params:
            title = clean_title(param.get("app_title"))
            if title is not None and param["app_id"] is not None and param["id"] in inserted:
                titles[param["app_id"]] = title
        return titles

    async def get(self, generation_id: str) -> GenerationRecord | None:
        query = generations.select().where(generations.c.id == generation_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return GenerationRecord(**row._mapping) if row else None

    async def recent(self, api_key_hash: str | None, limit: int) -> list[GenerationRecord]:
        """The newest `limit` records, newest first: those of the key `api_key_hash`, or
        every key's when it is None (a management key's view). Times are UTC-aware (SQLite
        gives them back naive)."""
        query = generations.select().order_by(
            generations.c.created_at.desc(), generations.c.id.desc()
        )
        if api_key_hash is not None:
            query = query.where(generations.c.api_key_hash == api_key_hash)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [GenerationRecord.from_row(dict(row._mapping)) for row in rows]  # times in UTC

    async def spend_by_key(self, starts: Mapping[str, datetime]) -> dict[str, dict[str, float]]:
        """USD spent per key: all time (`total`) and since each of `starts`. The database sums
        the float costs (one fast pass at start); `accounting.keys.SpendAtStart` rounds each sum to
        the pico. A cost that is not a finite number (or beyond +-1e300) counts as 0."""
        raw, at = generations.c.total_cost, generations.c.created_at
        cost = sa.case((raw.between(-1e300, 1e300), raw), else_=0.0)
        columns = [sa.func.sum(cost).label("total")] + [
            sa.func.sum(sa.case((at >= start, cost), else_=0.0)).label(name)
            for name, start in starts.items()
        ]
        query = sa.select(generations.c.api_key_hash, *columns).group_by(generations.c.api_key_hash)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            r.api_key_hash: {k: float(v or 0) for k, v in r._mapping.items() if k != "api_key_hash"}
            for r in rows
        }

    async def free_requests_today(self, start: datetime) -> int:
        """How many records of `:free` models were made since `start`, by every key (a
        naive `start` is UTC)."""
        query = (
            sa.select(sa.func.count())
            .select_from(generations)
            .where(generations.c.created_at >= _utc(start), generations.c.model.like("%:free"))
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())


def _utc(at: datetime) -> datetime:
    """`at` in UTC, as both databases compare it (SQLite compares the wall clock)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class KeyStore:
    """The `api_keys` rows. Every write also bumps the `api_keys` revision (`revisions`),
    in its transaction: `signature()` tells cheaply whether anything changed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._bump = (
            revisions.update()
            .where(revisions.c.name == "api_keys")
            .values(value=revisions.c.value + 1)
        )
        self._signature = sa.select(
            sa.select(revisions.c.value)
            .where(revisions.c.name == "api_keys")
            .scalar_subquery()
            .label("revision"),
            sa.select(sa.func.count()).select_from(api_keys).scalar_subquery().label("keys"),
            sa.select(sa.func.max(api_keys.c.created_at)).scalar_subquery().label("created"),
            sa.select(sa.func.max(api_keys.c.updated_at)).scalar_subquery().label("updated"),
        )

    async def insert(self, row: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.insert(), [row])
            await conn.execute(self._bump)

    async def update(self, key_hash: str, values: dict[str, Any]) -> None:
        """Change a key's columns; `updated_at` is set to now unless `values` has it."""
        values = {"updated_at": datetime.now(UTC), **values}
        query = api_keys.update().where(api_keys.c.hash == key_hash).values(**values)
        async with self._engine.begin() as conn:
            await conn.execute(query)
            await conn.execute(self._bump)

    async def delete(self, key_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.delete().where(api_keys.c.hash == key_hash))
            await conn.execute(self._bump)

    async def signature(self) -> tuple[Any, ...]:
        """Something that changes whenever a key is inserted, updated or deleted: the
        revision the writes above bump, and the keys' count and newest times (which change
        with writes made by other means too). One cheap query; compare for equality only."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(self._signature)).one()
        return tuple(row)

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
