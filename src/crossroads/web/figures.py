"""Figures the listing pages show (models, providers, compare), read from the gateway's
in-memory state: live statistics (`LiveStats`), circuits and the usage rollups' cache.

Per endpoint: latency and throughput are the medians of the last 30 minutes (as the API's
`latency_last_30m`), uptime and attempts those of the last day. Over several endpoints
(a provider, a model), uptime is each endpoint's uptime weighted by its attempts: the
statistics keep no finer split across endpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import sqlalchemy as sa

from crossroads.catalog import Catalog, Model
from crossroads.schema.catalog import Endpoint, parse_price
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats

log = logging.getLogger("crossroads.web")

T = TypeVar("T")
DAY = 86400.0
UPTIME_WINDOWS = (("5 min", 300.0), ("30 min", 1800.0), ("1 day", DAY))


def provider_href(slug: str) -> str:
    return "/providers/" + quote(slug, safe="")


def is_free(pricing: dict[str, object]) -> bool:
    """Whether the prompt and completion prices are both 0 (missing prices count as 0)."""
    return parse_price(pricing.get("prompt")) == 0 and parse_price(pricing.get("completion")) == 0


def model_usable(model: Model, catalog: Catalog) -> bool:
    """Whether this server can route the model: one of its providers is usable here."""
    return any(catalog.providers[e.provider].usable for e in model.endpoints)


@dataclass(frozen=True, slots=True)
class EndpointFigures:
    """One endpoint (model x provider) with its live figures and whether it is usable."""

    endpoint: Endpoint
    provider_name: str
    usable: bool
    reason: str | None  # why the provider cannot be used here; None when usable
    latency: float | None  # ms to the first token, median of the last 30 minutes
    throughput: float | None  # tokens/s, median of the last 30 minutes
    uptime: float | None  # percent, last day; None without ok or failed attempts
    requests: int  # attempts in the last day
    circuit: str  # closed | open | half_open


def endpoint_figures(
    endpoint: Endpoint, catalog: Catalog, stats: LiveStats, circuits: Circuits
) -> EndpointFigures:
    eid = endpoint.id
    provider = catalog.providers[endpoint.provider]
    latency = stats.latency(eid)
    throughput = stats.throughput(eid)
    return EndpointFigures(
        endpoint=endpoint,
        provider_name=provider.name,
        usable=provider.usable,
        reason=provider.unusable_reason,
        latency=latency["p50"] if latency else None,
        throughput=throughput["p50"] if throughput else None,
        uptime=stats.uptime(eid, DAY),
        requests=stats.requests(eid, DAY),
        circuit=str(circuits.state(eid)),
    )


def weighted_uptime(parts: Iterable[tuple[float | None, int]]) -> float | None:
    """Uptime over several (uptime percent, attempts) parts, weighted by attempts; None
    when no part has an uptime."""
    total = weight = 0.0
    for uptime, requests in parts:
        if uptime is not None and requests > 0:
            total += uptime * requests
            weight += requests
    return round(total / weight, 2) if weight else None


@dataclass(frozen=True, slots=True)
class Best:
    """The best figure among a model's endpoints and the provider it was measured at."""

    value: float
    provider_name: str


def best_latency(rows: Iterable[EndpointFigures]) -> Best | None:
    measured = [r for r in rows if r.latency is not None]
    if not measured:
        return None
    row = min(measured, key=lambda r: r.latency or 0.0)
    return Best(row.latency or 0.0, row.provider_name)


def best_throughput(rows: Iterable[EndpointFigures]) -> Best | None:
    measured = [r for r in rows if r.throughput is not None]
    if not measured:
        return None
    row = max(measured, key=lambda r: r.throughput or 0.0)
    return Best(row.throughput or 0.0, row.provider_name)


async def read_usage(read: Awaitable[T]) -> T | None:
    """A usage rollup read; None (logged) when the database cannot be reached, so a page
    can say the figures are unavailable instead of failing."""
    try:
        return await read
    except (sa.exc.SQLAlchemyError, OSError) as error:
        log.error("cannot read usage rollups: %s", error)
        return None
