"""Usage rollups: the `usage_daily` table, how it is kept and how it is read.

`usage_daily` holds, per UTC day, model and app, the generation records' requests,
prompt/completion/reasoning tokens and cost. `GenerationStore.insert_many` adds the rows
it actually inserted (`count_usage` + `usage_upsert`, in the insert's transaction), so a
record written twice counts once; migration 0002 filled it from the records stored
before. The app is the request's HTTP-Referer, else its X-Title, else '' (unattributed).
Every record counts as a request (failed ones too: their tokens and cost are 0).

`RollupStore` reads it: per model per day, per app per model over a span of days (a
month), per model over a span (a week, for rankings), the cost of all records (the
account's usage, GET /credits), and each model's tokens over all
time and recent days (the `/models` popularity sorts). The table is small (days x models
x apps), and each read is one grouped query that runs on SQLite and PostgreSQL alike.

`Rollups` is the process's cache in front of it (state per process): each read is kept
for `ttl` seconds per distinct query, and the popularity figures are refreshed by a
background task every `refresh` seconds, so `GET /models` never waits on the database.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.money import to_pico
from crossroads.storage.tables import generations, usage_daily

log = logging.getLogger("crossroads.rollups")

T = TypeVar("T")
UsageKey = tuple[date, str, str]  # day, model, app
_AMOUNTS = ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cost")
_CACHE_LIMIT = 512  # cached distinct reads; cleared whole past it

# What insert_many needs back of each row it inserted.
USAGE_COLUMNS = (
    generations.c.created_at,
    generations.c.model,
    generations.c.http_referer,
    generations.c.app_title,
    generations.c.tokens_prompt,
    generations.c.tokens_completion,
    generations.c.tokens_reasoning,
    generations.c.total_cost,
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Requests, tokens and cost (USD) of some generation records."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0  # part of completion_tokens, as providers report them
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def plus(self, other: Usage) -> Usage:
        return Usage(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cost + other.cost,
        )


@dataclass(frozen=True, slots=True)
class AppUsage:
    app: str  # HTTP-Referer, else X-Title, else '' (unattributed)
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class Popularity:
    """Tokens (prompt + completion) per model: over everything recorded, and over the
    last `recent_days` UTC days (today included)."""

    total: Mapping[str, int] = field(default_factory=dict)
    recent: Mapping[str, int] = field(default_factory=dict)
    recent_days: int = 7


def app_of(http_referer: str | None, app_title: str | None) -> str:
    """The app a record is attributed to: its referer, else its title, else ''."""
    return http_referer or app_title or ""


def usage_day(created_at: datetime) -> date:
    """The UTC day of a record's time (a naive time, as SQLite returns it, is UTC)."""
    if created_at.tzinfo is not None:
        created_at = created_at.astimezone(UTC)
    return created_at.date()


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _cost(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def count_usage(rows: Iterable[Any]) -> dict[UsageKey, Usage]:
    """The rollup amounts of inserted rows (with `USAGE_COLUMNS`' names), by key.
    Negative or missing token counts and non-finite costs count as 0."""
    sums: dict[UsageKey, Usage] = {}
    for row in rows:
        key = (usage_day(row.created_at), row.model, app_of(row.http_referer, row.app_title))
        amount = Usage(
            1,
            _tokens(row.tokens_prompt),
            _tokens(row.tokens_completion),
            _tokens(row.tokens_reasoning),
            _cost(row.total_cost),
        )
        present = sums.get(key)
        sums[key] = amount if present is None else present.plus(amount)
    return sums


def usage_params(sums: Mapping[UsageKey, Usage]) -> list[dict[str, Any]]:
    """`sums` as upsert parameters, sorted by key (concurrent writers lock rows in one order)."""
    return [
        {
            "day": day,
            "model": model,
            "app": app,
            "requests": usage.requests,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost": usage.cost,
        }
        for (day, model, app), usage in sorted(sums.items())
    ]


def usage_upsert(dialect: str) -> sa.Insert:
    """INSERT into usage_daily that adds to the row of the same day, model and app."""
    if dialect == "postgresql":
        insert: Any = postgresql.insert(usage_daily)
    elif dialect == "sqlite":
        insert = sqlite.insert(usage_daily)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(dialect)
    upsert: sa.Insert = insert.on_conflict_do_update(
        index_elements=[usage_daily.c.day, usage_daily.c.model, usage_daily.c.app],
        set_={name: usage_daily.c[name] + insert.excluded[name] for name in _AMOUNTS},
    )
    return upsert


def _sums() -> list[sa.Label[Any]]:
    return [sa.func.sum(usage_daily.c[name]).label(name) for name in _AMOUNTS]


def _usage(row: Any) -> Usage:
    """A row of `_sums()` (PostgreSQL sums bigints as numeric: made ints again)."""
    return Usage(
        int(row.requests or 0),
        int(row.prompt_tokens or 0),
        int(row.completion_tokens or 0),
        int(row.reasoning_tokens or 0),
        float(row.cost or 0.0),
    )


def _by_tokens(usage: Usage) -> int:
    return -usage.total_tokens


class RollupStore:
    """Grouped reads of `usage_daily`; spans of days are inclusive, UTC."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _rows(self, query: sa.Select[Any]) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def daily(self, model: str, *, first: date, last: date) -> dict[date, Usage]:
        """One model's usage per day (days without any: absent)."""
        day = usage_daily.c.day
        query = (
            sa.select(day, *_sums())
            .where(usage_daily.c.model == model, day >= first, day <= last)
            .group_by(day)
        )
        return {_as_date(r.day): _usage(r) for r in await self._rows(query)}

    async def apps(self, *, first: date, last: date, model: str | None = None) -> list[AppUsage]:
        """Usage per app and model over the span, most tokens first."""
        day, app, name = usage_daily.c.day, usage_daily.c.app, usage_daily.c.model
        query = sa.select(app, name, *_sums()).where(day >= first, day <= last)
        if model is not None:
            query = query.where(name == model)
        rows = await self._rows(query.group_by(app, name))
        found = [AppUsage(r.app, r.model, _usage(r)) for r in rows]
        return sorted(found, key=lambda a: (_by_tokens(a.usage), a.app, a.model))

    async def models(self, *, first: date, last: date) -> list[ModelUsage]:
        """Usage per model over the span, most tokens first (rankings)."""
        day, name = usage_daily.c.day, usage_daily.c.model
        query = sa.select(name, *_sums()).where(day >= first, day <= last).group_by(name)
        found = [ModelUsage(r.model, _usage(r)) for r in await self._rows(query)]
        return sorted(found, key=lambda m: (_by_tokens(m.usage), m.model))

    async def total_cost(self) -> int:
        """What every generation record ever stored cost, pico-USD (the account's usage)."""
        rows = await self._rows(sa.select(sa.func.sum(usage_daily.c.cost).label("cost")))
        return to_pico(float(rows[0].cost or 0.0))

    async def popularity(self, *, today: date, recent_days: int = 7) -> Popularity:
        """Tokens per model, all time and over the last `recent_days` days up to `today`."""
        tokens = usage_daily.c.prompt_tokens + usage_daily.c.completion_tokens
        since = today - timedelta(days=recent_days - 1)
        recent = sa.case((usage_daily.c.day >= since, tokens), else_=0)
        query = sa.select(
            usage_daily.c.model,
            sa.func.sum(tokens).label("total"),
            sa.func.sum(recent).label("recent"),
        ).group_by(usage_daily.c.model)
        rows = await self._rows(query)
        return Popularity(
            total={r.model: int(r.total or 0) for r in rows},
            recent={r.model: int(r.recent or 0) for r in rows if r.recent},
            recent_days=recent_days,
        )


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


class Rollups:
    """`RollupStore` behind a per-process cache (module docstring): reads kept `ttl`
    seconds per query; popularity refreshed every `refresh` seconds by `start()`'s task."""

    def __init__(
        self,
        store: RollupStore,
        *,
        ttl: float = 5.0,
        refresh: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._refresh = refresh
        self._clock = clock
        self._today = today
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._popularity = Popularity()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def _cached(self, key: tuple[Any, ...], read: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        value = await read()
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = (now + self._ttl, value)
        return value

    async def daily(self, model: str, *, first: date, last: date) -> dict[date, Usage]:
        return await self._cached(
            ("daily", model, first, last),
            lambda: self._store.daily(model, first=first, last=last),
        )

    async def apps(self, *, first: date, last: date, model: str | None = None) -> list[AppUsage]:
        return await self._cached(
            ("apps", first, last, model),
            lambda: self._store.apps(first=first, last=last, model=model),
        )

    async def models(self, *, first: date, last: date) -> list[ModelUsage]:
        return await self._cached(
            ("models", first, last), lambda: self._store.models(first=first, last=last)
        )

    async def total_cost(self) -> int:
        """The records' total cost, pico-USD, read now (not cached: GET /credits shows it)."""
        return await self._store.total_cost()

    def popularity(self) -> Popularity:
        """The latest popularity figures (no I/O: the request path reads this)."""
        return self._popularity

    async def refresh(self) -> bool:
        """Read the popularity figures again; False (the old ones stay) if that failed."""
        try:
            self._popularity = await self._store.popularity(today=self._today())
        except Exception as error:
            if not self._failing:
                log.error("cannot read usage rollups (%s); retrying", error)
            self._failing = True
            return False
        if self._failing:
            log.warning("usage rollups are read again")
            self._failing = False
        return True

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="crossroads-rollups")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            await self.refresh()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
