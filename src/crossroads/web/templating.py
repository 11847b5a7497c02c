"""Templates for the website: one Jinja2 environment per app, its filters, and `render`.

`Pages` is built once by `create_app` and kept on `app.state.pages` (no module-level
state). Templates live in `crossroads/web/templates` (package data) and extend
`base.html`. Every page gets `request`, `theme` and `path` in its context; the globals
`nav`, `footer`, `model_href(model_id, tab=None)` and `model_tabs` are always there.

Filters (all accept None and show an em dash for it, except where noted):
- `usd_per_million(price)`: a per-token USD price (catalog string, Decimal or float) as
  "$0.15/M"; 0 is "Free"; a negative price (a router's "it depends") is "Varies".
- `tokens(n)`: 131072 -> "131K", 1_200_000 -> "1.2M", 138e9 -> "138B".
- `date(value)`: epoch seconds, date, datetime or ISO string -> "Aug 5, 2025" (UTC).
- `ms(value)`: milliseconds -> "850 ms", "1.2 s".
- `pct(value)`: a percentage (0-100) -> "99.5%".
- `tps(value)`: tokens per second -> "42 tok/s".
- `usd(value)`: an amount of USD -> "$0.0012", "$12.34".
- `number(value)`: an integer with thousands separators -> "12,345".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any, TypeVar, cast
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

DASH = "\u2014"
THEMES = ("light", "dark")
THEME_COOKIE = "theme"  # written by site.js when the visitor picks a theme
_MILLION = Decimal(1_000_000)
_UNITS = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K"))


@dataclass(frozen=True, slots=True)
class NavLink:
    """One link of the header or footer."""

    label: str
    href: str


@dataclass(frozen=True, slots=True)
class NavGroup:
    """A titled group of footer links."""

    title: str
    links: tuple[NavLink, ...]


NAV: tuple[NavLink, ...] = (
    NavLink("Chat", "/chat"),
    NavLink("Rankings", "/rankings"),
    NavLink("Apps", "/apps"),
    NavLink("Models", "/models"),
    NavLink("Providers", "/providers"),
    NavLink("Docs", "/docs"),
    NavLink("API reference", "/api/v1/openapi.json"),
)

FOOTER: tuple[NavGroup, ...] = (
    NavGroup(
        "Product",
        (
            NavLink("Chat", "/chat"),
            NavLink("Rankings", "/rankings"),
            NavLink("Apps", "/apps"),
            NavLink("Models", "/models"),
            NavLink("Providers", "/providers"),
            NavLink("Compare", "/compare"),
        ),
    ),
    NavGroup(
        "Developer",
        (
            NavLink("Docs", "/docs"),
            NavLink("API reference", "/api/v1/openapi.json"),
            NavLink("Health", "/health"),
            NavLink("Metrics", "/metrics"),
        ),
    ),
    NavGroup("Account", (NavLink("Your account", "/account"),)),
)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd_per_million(price: Any) -> str:
    """A per-token price as USD per million tokens: "$0.15/M", "Free", "Varies"."""
    per_token = _decimal(price)
    if per_token is None:
        return DASH
    if per_token == 0:
        return "Free"
    if per_token < 0:
        return "Varies"
    per_million = per_token * _MILLION
    places = 2 if per_million >= 1 else 6
    return f"${_trim(f'{per_million:.{places}f}')}/M"


def tokens(value: Any) -> str:
    """A token count, short: 950, "4.1K", "131K", "1.2M", "138B"."""
    if value is None or isinstance(value, bool):
        return DASH
    count = int(value)
    for size, unit in _UNITS:
        if abs(count) >= size:
            scaled = count / size
            text = f"{scaled:.1f}" if abs(scaled) < 10 else f"{scaled:.0f}"
            return _trim(text) + unit
    return str(count)


def format_date(value: Any) -> str:
    """A day as "Aug 5, 2025" (epoch seconds are read in UTC)."""
    if value is None or value == "":
        return DASH
    day: date
    if isinstance(value, datetime):
        day = value.astimezone(UTC).date() if value.tzinfo else value.date()
    elif isinstance(value, date):
        day = value
    elif isinstance(value, int | float):
        day = datetime.fromtimestamp(value, UTC).date()
    else:
        try:
            day = date.fromisoformat(str(value)[:10])
        except ValueError:
            return str(value)
    return f"{day:%b} {day.day}, {day.year}"


def ms(value: Any) -> str:
    """Milliseconds: "0.8 ms", "850 ms"; "1.2 s" from one second up."""
    number = _decimal(value)
    if number is None:
        return DASH
    if number >= 1000:
        return f"{_trim(f'{number / 1000:.2f}')} s"
    if number < 10:
        return f"{_trim(f'{number:.1f}')} ms"
    return f"{number:.0f} ms"


def pct(value: Any) -> str:
    """A percentage, at most one decimal: "100%", "99.5%"."""
    number = _decimal(value)
    if number is None:
        return DASH
    return f"{_trim(f'{number:.1f}')}%"


def tps(value: Any) -> str:
    """Throughput: "42 tok/s", "7.5 tok/s"."""
    number = _decimal(value)
    if number is None:
        return DASH
    text = f"{number:.1f}" if number < 10 else f"{number:.0f}"
    return f"{_trim(text)} tok/s"


def usd(value: Any) -> str:
    """An amount of USD: "$12.34", "$0.0012", "$0"."""
    number = _decimal(value)
    if number is None:
        return DASH
    if number == 0:
        return "$0"
    places = 2 if abs(number) >= 1 else 6
    return f"${_trim(f'{number:,.{places}f}')}"


def number(value: Any) -> str:
    """An integer with thousands separators: "12,345"."""
    if value is None or isinstance(value, bool):
        return DASH
    return f"{int(value):,}"


FILTERS = {
    "usd_per_million": usd_per_million,
    "tokens": tokens,
    "date": format_date,
    "ms": ms,
    "pct": pct,
    "tps": tps,
    "usd": usd,
    "number": number,
}


def theme_of(request: Request) -> str | None:
    """The theme the visitor picked ("light" | "dark"), None to follow the system."""
    theme = request.cookies.get(THEME_COOKIE)
    return theme if theme in THEMES else None


CHART_CACHE = 256  # tabs whose charts are remembered, per process
# Every page: scripts and styles from this server only (the key lives in the browser's
# storage), no framing, no content sniffing. pygal's SVG carries inline styles.
SECURITY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
T = TypeVar("T")


def favicon_svg() -> bytes:
    return resources.files("crossroads.web").joinpath("static/favicon.svg").read_bytes()


def favicon_data_uri() -> str:
    """The icon inside every page: a browser then never fetches one, so no icon request is
    left in flight (and reported as aborted) when a visitor moves on before it loads."""
    return "data:image/svg+xml," + quote(favicon_svg().decode())


class Pages:
    """The website's template environment (one per app): `render` answers a page."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("crossroads.web"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        self.env.globals.update(nav=NAV, footer=FOOTER, favicon=favicon_data_uri())
        self._charts: OrderedDict[tuple[str, ...], tuple[int, Any]] = OrderedDict()

    def charts(self, key: tuple[str, ...], build: Callable[[], T]) -> T:
        """`build()`, remembered for the rest of the current minute: a tab's charts are
        drawn at most once a minute, however many people look (pygal takes ~20 ms a
        chart, on the event loop that also serves the API). Per process, bounded."""
        minute = int(time.time() // 60)
        found = self._charts.get(key)
        if found is not None and found[0] == minute:
            self._charts.move_to_end(key)
            return cast(T, found[1])
        value = build()
        self._charts[key] = (minute, value)
        self._charts.move_to_end(key)
        while len(self._charts) > CHART_CACHE:
            self._charts.popitem(last=False)
        return value

    def render(
        self,
        request: Request,
        template: str,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """`template` rendered with `context` plus `request`, `nav`, `footer`, `theme`
        and `path` (the request's path, for the current link)."""
        page = self.env.get_template(template).render(
            request=request,
            theme=theme_of(request),
            path=request.url.path,
            **context,
        )
        return HTMLResponse(page, status_code=status_code, headers={**SECURITY, **(headers or {})})


def pages_of(request: Request) -> Pages:
    """The app's `Pages` (built in `create_app`)."""
    pages: Pages = request.app.state.pages
    return pages


def render(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Shorthand for `pages_of(request).render(...)`."""
    return pages_of(request).render(request, template, status_code=status_code, **context)


def not_found(request: Request, message: str | None = None) -> HTMLResponse:
    """The 404 page (HTML, with the site's header and footer)."""
    return render(request, "not_found.html", status_code=404, message=message)
