"""Activity: the generation records summed per UTC day, model, provider and endpoint.

Read straight from `generations` (one grouped query over the span asked, which the
`created_at` index narrows). The day is the record's UTC day on both databases: SQLite
keeps the UTC wall clock (`GenerationStore.prepare`), PostgreSQL a `timestamptz`, read in
UTC whatever the session's time zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.schema.accounts import ActivityRow
from crossroads.storage.tables import generations

# SQL literals, not bound parameters: an expression grouped by must read the same in the
# select list and the GROUP BY (PostgreSQL numbers each bound parameter apart)
_UTC: sa.ColumnClause[str] = sa.literal_column("'UTC'")
_EMPTY: sa.ColumnClause[str] = sa.literal_column("''")


_HUGE = 1e300  # a cost outside +-this (an infinity, NaN) counts as 0, as in the rollups


def _tokens(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A token count summed as the rollups sum it: missing or negative is 0."""
    return sa.func.sum(sa.case((column > 0, column), else_=0))


def _iso(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()[:10]
    return str(value)[:10]


class ActivityStore:
    """Grouped reads of the generation records (module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        g = generations.c
        if engine.dialect.name == "postgresql":
            day: sa.ColumnElement[Any] = sa.cast(sa.func.timezone(_UTC, g.created_at), sa.Date)
        else:  # SQLite: the UTC wall clock, as text
            day = sa.func.date(g.created_at)
        self._day = day.label("date")
        self._provider = sa.func.coalesce(g.provider_name, _EMPTY).label("provider_name")
        self._endpoint = sa.func.coalesce(g.endpoint_tag, _EMPTY).label("endpoint_tag")

    async def daily(
        self,
        *,
        since: date,
        until: date,
        api_key_hash: str | None = None,
        day: date | None = None,
    ) -> list[ActivityRow]:
        """The records made from `since` to `until` (UTC days, both included), only those of
        `api_key_hash` when given and only `day`'s when given (within the span), per day,
        model, provider and endpoint: newest day first, then by model, provider, endpoint.
        A record without a provider or endpoint has '' for it."""
        if day is not None:
            since, until = max(since, day), min(until, day)
        if since > until:
            return []
        g = generations.c
        start = datetime.combine(since, time(), UTC)
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
        query = sa.select(
            self._day,
            g.model,
            self._provider,
            self._endpoint,
            sa.func.count().label("requests"),
            _tokens(g.tokens_prompt).label("prompt_tokens"),
            _tokens(g.tokens_completion).label("completion_tokens"),
            _tokens(g.tokens_reasoning).label("reasoning_tokens"),
            _tokens(g.tokens_cached).label("cached_tokens"),
            sa.func.sum(
                sa.case((g.total_cost.between(-_HUGE, _HUGE), g.total_cost), else_=0.0)
            ).label("usage"),
        ).where(g.created_at >= start, g.created_at < end)
        if api_key_hash is not None:
            query = query.where(g.api_key_hash == api_key_hash)
        query = query.group_by(self._day, g.model, self._provider, self._endpoint)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = [
            ActivityRow(
                date=_iso(r.date),
                model=r.model,
                provider_name=r.provider_name,
                endpoint_tag=r.endpoint_tag,
                requests=int(r.requests),
                prompt_tokens=int(r.prompt_tokens or 0),
                completion_tokens=int(r.completion_tokens or 0),
                reasoning_tokens=int(r.reasoning_tokens or 0),
                cached_tokens=int(r.cached_tokens or 0),
                usage=float(r.usage or 0.0),
            )
            for r in rows
        ]
        found.sort(key=lambda a: (a.model, a.provider_name, a.endpoint_tag))
        found.sort(key=lambda a: a.date, reverse=True)
        return found
