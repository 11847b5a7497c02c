"""`/rankings` (models by tokens through this server in a week, and the month's top apps)
and `/apps` (each app with the models it used in a month).

Both read the usage rollups through `gateway.rollups` (cached per process for a few
seconds; the figures trail the records by that and by the recorder's batching). The week
(`?week=YYYY-MM-DD`, a Monday) and month (`?month=YYYY-MM`) are read as the statistics API
reads them (`api.stats`); a malformed one is a 400 page. An app is the HTTP-Referer its
requests sent, else their X-Title; unattributed usage is counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import gateway_of
from crossroads.api.stats import month_span, utc_today, week_start
from crossroads.catalog import Catalog
from crossroads.errors import GatewayError
from crossroads.storage import AppUsage, ModelUsage, Usage
from crossroads.web.figures import read_usage
from crossroads.web.templating import render
from crossroads.web.urls import model_href

TOP_APPS = 10  # apps on /rankings


@dataclass(frozen=True, slots=True)
class RankedModel:
    """One model's usage in the week, with its rank and share of all tokens."""

    rank: int
    id: str
    name: str
    href: str | None  # None for a model no longer in the catalog
    usage: Usage
    share: float  # percent of the week's tokens


@dataclass(frozen=True, slots=True)
class AppModel:
    id: str
    name: str
    href: str | None
    usage: Usage


@dataclass(slots=True)
class AppRanking:
    """One app over the month: its usage in total and per model, most tokens first."""

    app: str  # the HTTP-Referer or X-Title, as recorded
    url: str | None  # the app's address, when `app` is an http(s) URL
    usage: Usage = field(default_factory=Usage)
    models: list[AppModel] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Period:
    """The week or month a page shows, with links to the ones before and after."""

    first: date
    last: date
    label: str
    previous: str  # the page for the period before
    next: str | None  # the page for the period after; None when it has not begun
    current: bool  # the period today is in


def _named(model_id: str, catalog: Catalog) -> tuple[str, str | None]:
    model = catalog.models.get(model_id)
    if model is None:
        return model_id, None
    return model.info["name"], model_href(model.id)


def ranked(rows: list[ModelUsage], catalog: Catalog) -> list[RankedModel]:
    total = sum(r.usage.total_tokens for r in rows)
    out = []
    for rank, row in enumerate(rows, start=1):
        name, href = _named(row.model, catalog)
        share = 100.0 * row.usage.total_tokens / total if total else 0.0
        out.append(RankedModel(rank, row.model, name, href, row.usage, round(share, 1)))
    return out


def grouped_apps(rows: Iterable[AppUsage], catalog: Catalog) -> tuple[list[AppRanking], Usage]:
    """Usage per app (with its models) from the rollups' per app and model rows, most
    tokens first, and the unattributed usage."""
    apps: dict[str, AppRanking] = {}
    unattributed = Usage()
    for row in rows:
        if not row.app:
            unattributed = unattributed.plus(row.usage)
            continue
        app = apps.get(row.app)
        if app is None:
            is_url = row.app.startswith(("http://", "https://"))
            app = apps[row.app] = AppRanking(row.app, row.app if is_url else None)
        app.usage = app.usage.plus(row.usage)
        name, href = _named(row.model, catalog)
        app.models.append(AppModel(row.model, name, href, row.usage))
    ordered = sorted(apps.values(), key=lambda a: (-a.usage.total_tokens, a.app))
    for app in ordered:
        app.models.sort(key=lambda m: (-m.usage.total_tokens, m.id))
    return ordered, unattributed


def _month_url(first: date) -> str:
    return f"/apps?month={first.year:04d}-{first.month:02d}"


def week_of(monday: date) -> Period:
    this_week = week_start(None)
    sunday = monday + timedelta(days=6)
    return Period(
        first=monday,
        last=sunday,
        label=f"{monday:%b} {monday.day} \u2013 {sunday:%b} {sunday.day}, {sunday.year}",
        previous=f"/rankings?week={monday - timedelta(days=7)}",
        next=None if monday >= this_week else f"/rankings?week={monday + timedelta(days=7)}",
        current=monday == this_week,
    )


def month_of(first: date, last: date) -> Period:
    previous = (first - timedelta(days=1)).replace(day=1)
    following = last + timedelta(days=1)
    return Period(
        first=first,
        last=last,
        label=f"{first:%B %Y}",
        previous=_month_url(previous),
        next=None if following > utc_today() else _month_url(following),
        current=first <= utc_today() <= last,
    )


async def rankings_page(request: Request) -> Response:
    gateway = gateway_of(request)
    try:
        monday = week_start(request.query_params.get("week"))
    except GatewayError as error:
        return render(request, "rankings.html", status_code=400, error=error.message)
    week = week_of(monday)
    month = month_of(*month_span(None))
    models = await read_usage(gateway.rollups.models(first=week.first, last=week.last))
    apps = await read_usage(gateway.rollups.apps(first=month.first, last=month.last))
    return render(
        request,
        "rankings.html",
        error=None,
        week=week,
        models=None if models is None else ranked(models, gateway.catalog),
        month=month,
        apps=None if apps is None else grouped_apps(apps, gateway.catalog)[0][:TOP_APPS],
    )


async def apps_page(request: Request) -> Response:
    gateway = gateway_of(request)
    try:
        month = month_of(*month_span(request.query_params.get("month")))
    except GatewayError as error:
        return render(request, "apps.html", status_code=400, error=error.message)
    found = await read_usage(gateway.rollups.apps(first=month.first, last=month.last))
    grouped = None if found is None else grouped_apps(found, gateway.catalog)
    return render(
        request,
        "apps.html",
        error=None,
        month=month,
        apps=None if grouped is None else grouped[0],
        unattributed=None if grouped is None else grouped[1],
    )
