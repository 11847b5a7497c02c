"""The model page: `/{author}/{slug}` and its tabs `/{author}/{slug}/{tab}`.

`{slug}` may carry a variant (`openai/gpt-oss-120b:free`); a model whose id has more
than one slash (a local server's `ollama/library/llama3`) is found too, since the path
is read whole: first as a model id, then as a model id followed by a tab. An unknown
model or tab is the HTML 404 page.

Every tab is its own page with the same header (`ModelView`), a tab bar of links and
its own content (`TabContent`, built only for the tab asked for). The page reads the
gateway's in-memory state and the usage rollups' cache, like the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from crossroads.catalog import Catalog, Model
from crossroads.gateway import Gateway
from crossroads.storage import Usage
from crossroads.web import model_tabs
from crossroads.web.figures import read_usage
from crossroads.web.model_tabs import TAB_BY_SLUG, TABS, Tab, TabContent
from crossroads.web.model_view import ModelView, endpoint_rows, model_view, weekly_tokens
from crossroads.web.samples import api_samples, reasoning_sample
from crossroads.web.templating import not_found, pages_of, render
from crossroads.web.urls import api_base_url, is_api_path, model_href

HISTORY_DAYS = model_tabs.ACTIVITY_DAYS  # the daily usage read for the header and Activity


@dataclass(frozen=True, slots=True)
class TabLink:
    """One link of the tab bar."""

    tab: Tab
    href: str
    selected: bool


def find_page(catalog: Catalog, path: str) -> tuple[Model, Tab] | None:
    """The model and tab a page path ("author/slug[/tab]", no leading slash) names."""
    found = catalog.find(path)
    if found is not None:
        return found[0], TAB_BY_SLUG["overview"]
    base, _, last = path.rpartition("/")
    tab = TAB_BY_SLUG.get(last)
    if tab is not None and "/" in base:
        found = catalog.find(base)
        if found is not None:
            return found[0], tab
    return None


def _today() -> date:
    return datetime.now(UTC).date()


def _month_start(today: date) -> date:
    return today.replace(day=1)


async def _content(
    request: Request,
    gateway: Gateway,
    *,
    model: Model,
    view: ModelView,
    tab: Tab,
    daily: dict[date, Usage] | None,
    today: date,
) -> TabContent:
    """What `tab` shows beyond the header."""
    slug = tab.slug
    if slug == "overview":
        return model_tabs.overview(view, model.info)
    # Charts are drawn at most once a minute per tab, and again as soon as a provider has
    # its first figures or the usage its first day (a first look never hides them).
    charts = pages_of(request).charts
    measured = "".join("1" if row.requests else "0" for row in view.endpoints)
    used = str(sum(1 for usage in (daily or {}).values() if usage.requests))
    key = (model.id, slug, measured, used)
    if slug == "performance":
        return charts(key, lambda: model_tabs.performance(view.endpoints, gateway.stats))
    if slug == "uptime":
        return charts(key, lambda: model_tabs.uptime(view.endpoints, gateway.stats))
    if slug == "activity":
        return charts(key, lambda: model_tabs.activity(daily, today))
    if slug == "apps":
        found = await read_usage(
            gateway.rollups.apps(first=_month_start(today), last=today, model=model.id)
        )
        return model_tabs.apps(found)
    if slug == "benchmarks":
        return model_tabs.benchmarks(model.info)
    if slug == "api":
        base = api_base_url(request)
        return TabContent(
            samples=api_samples(base, model.id),
            reasoning_sample=reasoning_sample(base, model.id) if view.reasoning else None,
        )
    return TabContent()  # playground, providers, pricing: the header's data is enough


async def model_page(request: Request) -> Response:
    """A model's page, any tab (module docstring)."""
    path = f"{request.path_params['author']}/{request.path_params['rest']}"
    gateway: Gateway = request.app.state.gateway
    found = find_page(gateway.catalog, path)
    if found is None:
        return not_found(request, f"There is no model or model page at /{path}.")
    model, tab = found
    today = _today()
    daily = await read_usage(
        gateway.rollups.daily(model.id, first=today - timedelta(days=HISTORY_DAYS - 1), last=today)
    )
    rows = endpoint_rows(model, gateway.catalog, gateway.stats, gateway.circuits)
    view = model_view(model, rows, weekly=weekly_tokens(daily, today))
    content = await _content(
        request, gateway, model=model, view=view, tab=tab, daily=daily, today=today
    )
    tabs = [TabLink(t, model_href(model.id, t.slug), t is tab) for t in TABS]
    return render(
        request,
        "model/page.html",
        model=view,
        tab=tab,
        tabs=tabs,
        content=content,
        heading=tab.title(view.short_name),
        explanation=tab.explanation.format(name=view.short_name),
        api_base=api_base_url(request),
    )


class PageRoute(Route):
    """A GET route that matches nothing for other methods (a POST to a path only this
    pattern takes still gets the API's JSON 404, as without the website, not a 405) and
    nothing under the API's prefixes (an API path no API route took is the API's 404)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if is_api_path(scope.get("path", "")):
            return Match.NONE, {}
        match, child = super().matches(scope)
        return (Match.NONE, {}) if match is Match.PARTIAL else (match, child)


def model_routes() -> list[BaseRoute]:
    """The model pages' pattern: after every literal path of the site."""
    return [PageRoute("/{author}/{rest:path}", model_page, methods=["GET"])]
