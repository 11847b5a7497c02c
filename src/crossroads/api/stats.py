"""Public statistics under /api/v1/stats (no key, like /models): live endpoint figures and
usage rollups, for the website and for scripts.

All dates are UTC. Usage amounts (`USAGE` below) are the generation records': every
record is a request (failed ones too, with 0 tokens and cost); `total_tokens` is prompt +
completion (reasoning tokens are part of completion); `cost` is USD. A bad query value
is a 400 in OpenRouter's error envelope, an unknown model a 404.

GET /stats/endpoints/{author}/{slug}: each endpoint of the model, from live statistics
(this replica's traffic, peers' through Redis, and what was stored before a restart):
    {"data": {"id": "acme/trio", "name": "Acme: Trio", "endpoints": [{
        "id": "acme/trio@alpha", "provider": "alpha", "provider_name": "Alpha",
        "tag": "alpha", "circuit": "closed" | "open" | "half_open",
        "latency": {"5m": P | null, "30m": P | null, "1d": P | null},     # ms to first token
        "throughput": {"5m": P | null, "30m": P | null, "1d": P | null},  # tokens/s
        "uptime": {"5m": 99.5 | null, "30m": ..., "1d": ...},  # percent of ok among ok+failed
        "requests": {"5m": 12, "30m": 40, "1d": 300},           # attempts (429s included)
        "uptime_daily": [{"date": "2026-05-01", "uptime": 100.0 | null, "requests": 3}, ...],
                                                     # 30 entries, oldest first, today last
        "effective_price": {"prompt": 1.0 | null, "completion": 2.0 | null,
                            "prompt_tokens": 1200, "completion_tokens": 300} | null
                                                     # past hour, USD per million tokens
    }]}}
  where P = {"p50": ..., "p75": ..., "p90": ..., "p99": ...}.

GET /stats/models/{author}/{slug}/daily?days=30  (days: 1-366): one entry per day, oldest
first, today last, days without traffic as zeros:
    {"data": {"model": "acme/trio", "days": [{"date": "2026-05-01", **USAGE}, ...]}}

GET /stats/apps?month=YYYY-MM[&model=author/slug]  (month: default the current one): usage
per app and model in the month, most tokens first; "app" is the HTTP-Referer the requests
sent, else their X-Title, else "" (unattributed):
    {"data": {"month": "2026-05", "model": "acme/trio" | null,
              "apps": [{"app": "https://example.app", "model": "acme/trio", **USAGE}, ...]}}

GET /stats/rankings?week=YYYY-MM-DD  (a Monday; default: the current week): models by
total tokens over the ISO week (Monday to Sunday), most first:
    {"data": {"week": "2026-05-04", "models": [{"rank": 1, "model": "acme/trio", **USAGE}]}}

USAGE = "requests": int, "prompt_tokens": int, "completion_tokens": int,
        "reasoning_tokens": int, "total_tokens": int, "cost": float

Usage reads go through `gateway.rollups` (`storage.rollups.Rollups`): each distinct query is
cached per process for a few seconds, so figures trail the records by that much (and by
the recorder's batching). Live figures are read from memory.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, gateway_of, parse_query
from crossroads.catalog import Catalog, Model
from crossroads.errors import GatewayError
from crossroads.schema.catalog import Endpoint
from crossroads.storage import Usage
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats

log = logging.getLogger("crossroads.api")

WINDOWS = {"5m": 300.0, "30m": 1800.0, "1d": 86400.0}
DAILY_UPTIME_DAYS = 30
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DailyQuery(Struct, kw_only=True):
    days: Annotated[int, Meta(ge=1, le=366)] = 30


class AppsQuery(Struct, kw_only=True):
    month: str | None = None
    model: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class RankingsQuery(Struct, kw_only=True):
    week: str | None = None


def utc_today() -> date:
    return datetime.now(UTC).date()


def _model(request: Request) -> Model:
    params = request.path_params
    model, _ = gateway_of(request).catalog.resolve(f"{params['author']}/{params['slug']}")
    return model


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "requests": usage.requests,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "total_tokens": usage.total_tokens,
        "cost": usage.cost,
    }


def endpoint_stats(
    endpoint: Endpoint, catalog: Catalog, stats: LiveStats, circuits: Circuits
) -> dict[str, Any]:
    """One endpoint's live figures (module docstring)."""
    eid = endpoint.id
    price = stats.effective_price(eid)
    return {
        "id": eid,
        "provider": endpoint.provider,
        "provider_name": catalog.providers[endpoint.provider].name,
        "tag": endpoint.tag,
        "circuit": str(circuits.state(eid)),
        "latency": {name: stats.latency(eid, window) for name, window in WINDOWS.items()},
        "throughput": {name: stats.throughput(eid, window) for name, window in WINDOWS.items()},
        "uptime": {name: stats.uptime(eid, window) for name, window in WINDOWS.items()},
        "requests": {name: stats.requests(eid, window) for name, window in WINDOWS.items()},
        "uptime_daily": [
            {"date": day.date, "uptime": day.uptime, "requests": day.requests}
            for day in stats.daily_uptime(eid, DAILY_UPTIME_DAYS)
        ],
        "effective_price": None
        if price is None
        else {
            "prompt": price.prompt,
            "completion": price.completion,
            "prompt_tokens": price.prompt_tokens,
            "completion_tokens": price.completion_tokens,
        },
    }


async def endpoints(request: Request) -> Response:
    gateway = gateway_of(request)
    model = _model(request)
    rows = [
        endpoint_stats(e, gateway.catalog, gateway.stats, gateway.circuits) for e in model.endpoints
    ]
    return JSON({"data": {"id": model.id, "name": model.info["name"], "endpoints": rows}})


def _unavailable(error: Exception) -> GatewayError:
    log.error("cannot read usage rollups: %s", error)
    return GatewayError(503, "Usage statistics are unavailable: the database cannot be reached")


async def model_daily(request: Request) -> Response:
    query = parse_query(request.query_params, DailyQuery)
    model = _model(request)
    last = utc_today()
    first = last - timedelta(days=query.days - 1)
    try:
        found = await gateway_of(request).rollups.daily(model.id, first=first, last=last)
    except (sa.exc.SQLAlchemyError, OSError) as error:
        raise _unavailable(error) from None
    days = []
    for back in range(query.days):
        day = first + timedelta(days=back)
        days.append({"date": day.isoformat(), **usage_json(found.get(day, Usage()))})
    return JSON({"data": {"model": model.id, "days": days}})


def month_span(text: str | None) -> tuple[date, date]:
    """The first and last day of a YYYY-MM month (default: the current one)."""
    if text is None:
        today = utc_today()
        year, month = today.year, today.month
    else:
        found = _MONTH.match(text)
        if (
            found is None
            or not 1 <= int(found.group(2)) <= 12
            or not 1 <= int(found.group(1)) < 9999
        ):
            raise GatewayError(400, "Invalid query parameter 'month': expected YYYY-MM")
        year, month = int(found.group(1)), int(found.group(2))
    first = date(year, month, 1)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first, following - timedelta(days=1)


async def apps(request: Request) -> Response:
    query = parse_query(request.query_params, AppsQuery)
    first, last = month_span(query.month)
    gateway = gateway_of(request)
    model = None
    if query.model is not None:  # every distinct string would be a query: only real models
        model = gateway.catalog.resolve(query.model)[0].id  # 404 for an unknown model
    try:
        found = await gateway.rollups.apps(first=first, last=last, model=model)
    except (sa.exc.SQLAlchemyError, OSError) as error:
        raise _unavailable(error) from None
    rows = [{"app": a.app, "model": a.model, **usage_json(a.usage)} for a in found]
    month = f"{first.year:04d}-{first.month:02d}"
    return JSON({"data": {"month": month, "model": model, "apps": rows}})


def week_start(text: str | None) -> date:
    """The Monday a week starts on (default: the current week's)."""
    if text is None:
        today = utc_today()
        return today - timedelta(days=today.weekday())
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        monday = date.fromisoformat(text)
    except ValueError:
        raise GatewayError(
            400, "Invalid query parameter 'week': expected a date, YYYY-MM-DD"
        ) from None
    if monday.year > 9998:
        raise GatewayError(400, "Invalid query parameter 'week': a year before 9999, please")
    if monday.weekday() != 0:
        raise GatewayError(
            400, f"Invalid query parameter 'week': {text} is a {monday:%A}; weeks start on Monday"
        )
    return monday


async def rankings(request: Request) -> Response:
    query = parse_query(request.query_params, RankingsQuery)
    monday = week_start(query.week)
    try:
        found = await gateway_of(request).rollups.models(
            first=monday, last=monday + timedelta(days=6)
        )
    except (sa.exc.SQLAlchemyError, OSError) as error:
        raise _unavailable(error) from None
    rows = [
        {"rank": rank, "model": m.model, **usage_json(m.usage)}
        for rank, m in enumerate(found, start=1)
    ]
    return JSON({"data": {"week": monday.isoformat(), "models": rows}})
