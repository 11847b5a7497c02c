"""Reads and writes of the tables, on the async engine. Nothing here is on the request path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.schema.generation import GenerationRecord
from crossroads.storage.fit import RowFitter, refused_for_content
from crossroads.storage.tables import api_keys, generations


class GenerationStore:
    """Generation records. Inserts are idempotent by id: a record written again (a journal
    replayed after a crash that came between commit and cleanup) is skipped."""

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

    def prepare(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """`row` fitted to the table: text cut to length, integers clamped, and so on."""
        return self._fitter.fit(row)

    def refused(self, error: BaseException) -> bool:
        """Whether an insert failed for the rows' content (it would fail again)."""
        return refused_for_content(error)

    async def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            async with self._engine.begin() as conn:
                await conn.execute(self._insert, [self.prepare(r) for r in rows])

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
