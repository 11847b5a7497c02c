"""`/providers` (every provider of the catalog with its status, models and uptime) and
`/providers/{slug}` (one provider: status or the reason it cannot be used here, data
policy, links, uptime over windows and per day, and each model it serves with live
figures). An unknown slug is the 404 page.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import gateway_of
from crossroads.catalog import Catalog
from crossroads.schema.catalog import Provider
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats
from crossroads.web.figures import (
    DAY,
    UPTIME_WINDOWS,
    EndpointFigures,
    endpoint_figures,
    provider_href,
    weighted_uptime,
)
from crossroads.web.templating import not_found, render
from crossroads.web.urls import model_href

UPTIME_DAYS = 30


@dataclass(frozen=True, slots=True)
class ProviderRow:
    """One provider as `/providers` lists it."""

    slug: str
    name: str
    href: str
    usable: bool
    reason: str | None  # why it cannot be used here
    api: str | None  # wire protocol
    local: bool
    models: int  # models it serves in the catalog
    uptime: float | None  # percent over the last day, all its endpoints
    requests: int  # attempts over the last day
    headquarters: str | None


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model the provider serves, with the endpoint's live figures."""

    id: str
    name: str
    href: str
    figures: EndpointFigures


@dataclass(frozen=True, slots=True)
class UptimeFigure:
    label: str  # "5 min", "30 min", "1 day"
    uptime: float | None
    requests: int


@dataclass(frozen=True, slots=True)
class DayCell:
    """One UTC day of the provider's uptime (all its endpoints)."""

    date: str  # YYYY-MM-DD
    uptime: float | None
    requests: int

    @property
    def level(self) -> str:
        """A CSS class for the day: none, good (>= 99%), fair (>= 95%), poor."""
        if self.uptime is None:
            return "none"
        if self.uptime >= 99:
            return "good"
        return "fair" if self.uptime >= 95 else "poor"


def _endpoint_ids(provider: Provider, catalog: Catalog) -> list[str]:
    return [
        e.id for m in catalog.models.values() for e in m.endpoints if e.provider == provider.slug
    ]


def provider_rows(catalog: Catalog, stats: LiveStats) -> list[ProviderRow]:
    """Every provider: those usable here first, then by name."""
    served: dict[str, list[str]] = {slug: [] for slug in catalog.providers}
    counts: dict[str, set[str]] = {slug: set() for slug in catalog.providers}
    for model in catalog.models.values():
        for endpoint in model.endpoints:
            served[endpoint.provider].append(endpoint.id)
            counts[endpoint.provider].add(model.id)
    rows = []
    for slug, provider in catalog.providers.items():
        parts = [(stats.uptime(eid, DAY), stats.requests(eid, DAY)) for eid in served[slug]]
        rows.append(
            ProviderRow(
                slug=slug,
                name=provider.name,
                href=provider_href(slug),
                usable=provider.usable,
                reason=provider.unusable_reason,
                api=provider.api,
                local=provider.local,
                models=len(counts[slug]),
                uptime=weighted_uptime(parts),
                requests=sum(requests for _, requests in parts),
                headquarters=provider.headquarters,
            )
        )
    return sorted(rows, key=lambda r: (not r.usable, r.name.lower(), r.slug))


def served_models(
    provider: Provider, catalog: Catalog, stats: LiveStats, circuits: Circuits
) -> list[ServedModel]:
    """The provider's endpoints, by model name."""
    rows = [
        ServedModel(
            model.id,
            model.info["name"],
            model_href(model.id),
            endpoint_figures(endpoint, catalog, stats, circuits),
        )
        for model in catalog.models.values()
        for endpoint in model.endpoints
        if endpoint.provider == provider.slug
    ]
    return sorted(rows, key=lambda r: (r.name.lower(), r.figures.endpoint.tag))


def uptime_figures(endpoint_ids: list[str], stats: LiveStats) -> list[UptimeFigure]:
    out = []
    for label, window in UPTIME_WINDOWS:
        parts = [(stats.uptime(eid, window), stats.requests(eid, window)) for eid in endpoint_ids]
        out.append(UptimeFigure(label, weighted_uptime(parts), sum(r for _, r in parts)))
    return out


def daily_uptime(endpoint_ids: list[str], stats: LiveStats, days: int) -> list[DayCell]:
    """The provider's uptime per UTC day, oldest first, today last."""
    per_endpoint = [stats.daily_uptime(eid, days) for eid in endpoint_ids]
    cells = []
    for index in range(days):
        entries = [series[index] for series in per_endpoint]
        day = entries[0].date if entries else ""
        cells.append(
            DayCell(
                date=day,
                uptime=weighted_uptime((e.uptime, e.requests) for e in entries),
                requests=sum(e.requests for e in entries),
            )
        )
    return cells


def find_provider(catalog: Catalog, slug: str) -> Provider | None:
    """The provider with this slug (any case)."""
    found = catalog.providers.get(slug)
    if found is not None:
        return found
    wanted = slug.lower()
    return next((p for s, p in catalog.providers.items() if s.lower() == wanted), None)


async def providers_page(request: Request) -> Response:
    gateway = gateway_of(request)
    rows = provider_rows(gateway.catalog, gateway.stats)
    return render(request, "providers.html", rows=rows, usable=sum(1 for r in rows if r.usable))


async def provider_page(request: Request) -> Response:
    gateway = gateway_of(request)
    slug = request.path_params["slug"]
    provider = find_provider(gateway.catalog, slug)
    if provider is None:
        return not_found(request, f"No provider is called '{slug}' on this server.")
    ids = _endpoint_ids(provider, gateway.catalog)
    days = daily_uptime(ids, gateway.stats, UPTIME_DAYS) if ids else []
    return render(
        request,
        "provider.html",
        provider=provider,
        models=served_models(provider, gateway.catalog, gateway.stats, gateway.circuits),
        uptime=uptime_figures(ids, gateway.stats),
        days=days,
        measured_days=sum(1 for d in days if d.uptime is not None),
    )
