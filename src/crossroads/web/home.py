"""The home page (`/`) and the docs page (`/docs`).

Home: a search box (to `/models`), what this server serves (models, usable providers),
the models that served the most tokens this week (the usage rollups, as the API reads
them) and links to the rest of the site. Docs: how to call this server's API, with its
own base URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from crossroads.gateway import Gateway
from crossroads.web.figures import read_usage
from crossroads.web.templating import favicon_svg, render
from crossroads.web.urls import api_base_url, model_href

log = logging.getLogger("crossroads.web")

TOP_MODELS = 10
WEEK_DAYS = 7


@dataclass(frozen=True, slots=True)
class TopModel:
    """One line of "top models this week"."""

    rank: int
    id: str
    name: str
    href: str
    tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class HomeView:
    """What the home page shows."""

    models: int  # models in the catalog
    providers: int  # providers configured
    usable_providers: int  # of which this server can call now
    top: list[TopModel]  # most tokens over the last WEEK_DAYS days, this server's traffic
    usage_unavailable: bool  # the rollups could not be read (database down)
    api_base: str  # this server's API base URL


async def top_models(gateway: Gateway, *, limit: int = TOP_MODELS) -> list[TopModel] | None:
    """The models with the most tokens over the last 7 UTC days (today included), from the
    usage rollups; None when they cannot be read."""
    today = datetime.now(UTC).date()
    found = await read_usage(
        gateway.rollups.models(first=today - timedelta(days=WEEK_DAYS - 1), last=today)
    )
    if found is None:
        return None
    rows: list[TopModel] = []
    for used in found:
        if used.usage.total_tokens <= 0 and used.usage.requests <= 0:
            continue
        model = gateway.catalog.models.get(used.model)
        rows.append(
            TopModel(
                rank=len(rows) + 1,
                id=used.model,
                name=model.info["name"] if model else used.model,
                href=model_href(used.model),
                tokens=used.usage.total_tokens,
                requests=used.usage.requests,
            )
        )
        if len(rows) >= limit:
            break
    return rows


async def home(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    catalog = gateway.catalog
    top = await top_models(gateway)
    view = HomeView(
        models=len(catalog.models),
        providers=len(catalog.providers),
        usable_providers=len(catalog.usable_providers()),
        top=top or [],
        usage_unavailable=top is None,
        api_base=api_base_url(request),
    )
    return render(request, "home.html", view=view)


async def favicon(request: Request) -> Response:
    """`/favicon.ico`, which browsers ask for where a page names no icon (a JSON answer
    opened in a tab): the site's icon, not a 404."""
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response(favicon_svg(), media_type="image/svg+xml", headers=headers)


async def docs(request: Request) -> Response:
    return render(request, "docs.html", api_base=api_base_url(request))
