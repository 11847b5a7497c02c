"""The model page's ten tabs: their labels, headings and explanations (`TABS`), and what
each tab shows beyond the header (`TabContent`), computed only for the tab asked for.

Headings and one-line explanations follow the original page's; figures are this
server's own: live statistics per endpoint (performance per hour over the last day,
uptime per day over 30 days, effective price over the past hour) and the usage rollups
(usage per day over 30 days, apps this month).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crossroads.storage import AppUsage, Usage
from crossroads.telemetry.stats import LiveStats
from crossroads.web.charts import Chart, Series, bar_chart, line_chart
from crossroads.web.figures import weighted_uptime
from crossroads.web.model_view import EndpointRow, ModelView
from crossroads.web.samples import CodeSample
from crossroads.web.templating import ms, pct, tokens, tps
from crossroads.web.urls import model_href

ACTIVITY_DAYS = 30
UPTIME_DAYS = 30
TOP_APPS = 20
CHART_SERIES = 6  # providers drawn per chart (the busiest): more lines are unreadable
_DAY = 86400.0
_WINDOW_30M = 1800.0


@dataclass(frozen=True, slots=True)
class Tab:
    """One tab: its URL segment, label, heading (with `{name}`) and explanation."""

    slug: str
    label: str
    heading: str
    explanation: str

    def title(self, name: str) -> str:
        return self.heading.format(name=name)


TABS: tuple[Tab, ...] = (
    Tab("overview", "Overview", "About {name}", "What the model is, and what each tab shows."),
    Tab(
        "playground",
        "Playground",
        "Playground for {name}",
        "Chat with this model in the browser, through this server, with your own key.",
    ),
    Tab(
        "providers",
        "Providers",
        "Providers for {name}",
        "Crossroads routes requests to the best providers that are able to handle your "
        "prompt size and parameters, with fallbacks to maximize uptime.",
    ),
    Tab(
        "performance",
        "Performance",
        "Performance for {name}",
        "Compare different providers on this server's own traffic.",
    ),
    Tab(
        "pricing",
        "Pricing",
        "Effective Pricing for {name}",
        "Actual cost per million tokens across providers over the past hour.",
    ),
    Tab(
        "benchmarks",
        "Benchmarks",
        "Benchmarks for {name}",
        "Published benchmark scores, with their source.",
    ),
    Tab("apps", "Apps", "Apps using {name}", "Top public apps this month."),
    Tab(
        "activity",
        "Activity",
        "Recent activity on {name}",
        "Total usage per day on this server.",
    ),
    Tab(
        "uptime",
        "Uptime",
        "Uptime stats for {name}",
        "Uptime stats for {name} across all providers.",
    ),
    Tab(
        "api",
        "API",
        "Sample code and API for {name}",
        "Crossroads normalizes requests and responses across providers for you.",
    ),
)
TAB_BY_SLUG: dict[str, Tab] = {tab.slug: tab for tab in TABS}


@dataclass(frozen=True, slots=True)
class ModelApp:
    """An app that used the model this month (its HTTP-Referer, else its X-Title)."""

    rank: int
    name: str
    href: str | None  # the app's URL when it sent one
    usage: Usage


@dataclass(frozen=True, slots=True)
class IndexScore:
    name: str  # "Intelligence index"
    value: float


@dataclass(frozen=True, slots=True)
class ArenaRow:
    arena: str
    category: str
    elo: float | None
    rank: int | None
    win_rate: float | None  # percent


@dataclass(frozen=True, slots=True)
class Benchmarks:
    """Scores the catalog carries for the model (`benchmarks:` of its entry)."""

    indices: list[IndexScore]  # Artificial Analysis
    arena: list[ArenaRow]  # Design Arena


@dataclass(frozen=True, slots=True)
class DayRow:
    """One UTC day of the model's usage through this server."""

    date: str  # YYYY-MM-DD
    usage: Usage


@dataclass(frozen=True, slots=True)
class UptimeRow:
    """One provider's uptime over three spans."""

    provider_name: str
    last_30m: float | None
    last_1d: float | None
    last_30d: float | None  # the days' uptimes weighted by their attempts


@dataclass(frozen=True, slots=True)
class TabSummary:
    """A line of the overview: a tab, its explanation and a figure from it."""

    tab: Tab
    href: str
    figure: str


@dataclass(frozen=True, slots=True)
class TabContent:
    """What the current tab shows beyond the header; fields of other tabs stay empty."""

    charts: list[Chart] = field(default_factory=list)
    summaries: list[TabSummary] = field(default_factory=list)
    apps: list[ModelApp] = field(default_factory=list)
    unattributed: Usage | None = None  # this month's usage that named no app
    benchmarks: Benchmarks | None = None
    days: list[DayRow] = field(default_factory=list)  # newest first, days with requests
    totals: Usage | None = None
    uptime: list[UptimeRow] = field(default_factory=list)
    samples: list[CodeSample] = field(default_factory=list)
    reasoning_sample: CodeSample | None = None
    usage_unavailable: bool = False  # the rollups could not be read


def _hour_label(start: int) -> str:
    return datetime.fromtimestamp(start, UTC).strftime("%H:00")


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def _busiest(found: list[tuple[int, Series]]) -> list[Series]:
    """The CHART_SERIES series with the most attempts, in their original order."""
    keep = sorted(range(len(found)), key=lambda i: -found[i][0])[:CHART_SERIES]
    return [found[i][1] for i in sorted(keep)]


def performance(rows: list[EndpointRow], stats: LiveStats) -> TabContent:
    """Latency and throughput medians per provider and hour, over the last day (UTC),
    for the CHART_SERIES busiest providers of that day."""
    measured = [row for row in rows if stats.requests(row.id, _DAY)]
    busiest = sorted(measured, key=lambda row: -stats.requests(row.id, _DAY))[:CHART_SERIES]
    keep = {row.id for row in busiest}
    labels: list[str] = []
    latency: list[Series] = []
    speed: list[Series] = []
    for row in (row for row in rows if row.id in keep):
        points = stats.series(row.id, "hour")
        labels = [_hour_label(p.start) for p in points]
        if any(p.latency_p50 is not None for p in points):
            latency.append(Series(row.provider_name, [p.latency_p50 for p in points]))
        if any(p.throughput_p50 is not None for p in points):
            speed.append(Series(row.provider_name, [p.throughput_p50 for p in points]))
    charts = [
        line_chart(
            title="Latency (time to first token, median per hour, UTC)",
            labels=labels,
            series=latency,
            fmt=ms,
            major_every=6,
        ),
        line_chart(
            title="Throughput (tokens per second, median per hour, UTC)",
            labels=labels,
            series=speed,
            fmt=tps,
            major_every=6,
        ),
    ]
    return TabContent(charts=[c for c in charts if c is not None])


def uptime(rows: list[EndpointRow], stats: LiveStats) -> TabContent:
    """Uptime per UTC day over the last 30 days (the busiest providers), and every
    provider's figures."""
    labels: list[str] = []
    found: list[tuple[int, Series]] = []
    table: list[UptimeRow] = []
    for row in rows:
        days = stats.daily_uptime(row.id, UPTIME_DAYS)
        labels = [_day_label(date.fromisoformat(d.date)) for d in days]
        if any(d.uptime is not None for d in days):
            attempts = sum(d.requests for d in days)
            found.append((attempts, Series(row.provider_name, [d.uptime for d in days])))
        table.append(
            UptimeRow(
                provider_name=row.provider_name,
                last_30m=stats.uptime(row.id, _WINDOW_30M),
                last_1d=stats.uptime(row.id, _DAY),
                last_30d=weighted_uptime((d.uptime, d.requests) for d in days),
            )
        )
    chart = line_chart(
        title="Uptime per day (percent of successful attempts, UTC)",
        labels=labels,
        series=_busiest(found),
        fmt=pct,
        major_every=7,
        y_range=(0, 100),
    )
    return TabContent(charts=[chart] if chart else [], uptime=table)


def activity(daily: Mapping[date, Usage] | None, today: date) -> TabContent:
    """Tokens per UTC day over the last 30 days (prompt and completion stacked)."""
    if daily is None:
        return TabContent(usage_unavailable=True)
    days = [today - timedelta(days=back) for back in range(ACTIVITY_DAYS - 1, -1, -1)]
    usage = [daily.get(day, Usage()) for day in days]
    chart = bar_chart(
        title="Tokens per day (UTC)",
        labels=[_day_label(day) for day in days],
        series=[
            Series("Prompt tokens", [float(u.prompt_tokens) for u in usage]),
            Series("Completion tokens", [float(u.completion_tokens) for u in usage]),
        ],
        fmt=tokens,
        stacked=True,
        major_every=7,
    )
    totals = Usage()
    for one in usage:
        totals = totals.plus(one)
    rows = [DayRow(day.isoformat(), u) for day, u in zip(days, usage, strict=True) if u.requests]
    rows.reverse()
    return TabContent(charts=[chart] if chart else [], days=rows, totals=totals)


def apps(found: list[AppUsage] | None) -> TabContent:
    """The month's apps by tokens; usage that named no app is counted apart."""
    if found is None:
        return TabContent(usage_unavailable=True)
    rows: list[ModelApp] = []
    unattributed: Usage | None = None
    for app in found:
        if not app.app:
            unattributed = app.usage
            continue
        if len(rows) < TOP_APPS:
            href = app.app if app.app.startswith(("https://", "http://")) else None
            rows.append(ModelApp(len(rows) + 1, app.app, href, app.usage))
    return TabContent(apps=rows, unattributed=unattributed)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def benchmarks(info: Mapping[str, Any]) -> TabContent:
    """The catalog's benchmark scores for the model; no content without any."""
    data = info.get("benchmarks")
    if not isinstance(data, dict):
        return TabContent()
    indices: list[IndexScore] = []
    scores = data.get("artificial_analysis")
    if isinstance(scores, dict):
        for key, label in (
            ("intelligence_index", "Intelligence index"),
            ("coding_index", "Coding index"),
            ("agentic_index", "Agentic index"),
        ):
            value = _number(scores.get(key))
            if value is not None:
                indices.append(IndexScore(label, value))
    arena: list[ArenaRow] = []
    for entry in data.get("design_arena") or []:
        if isinstance(entry, dict):
            rank = _number(entry.get("rank"))
            arena.append(
                ArenaRow(
                    arena=str(entry.get("arena") or ""),
                    category=str(entry.get("category") or ""),
                    elo=_number(entry.get("elo")),
                    rank=None if rank is None else int(rank),
                    win_rate=_number(entry.get("win_rate")),
                )
            )
    if not indices and not arena:
        return TabContent()
    return TabContent(benchmarks=Benchmarks(indices, arena))


def overview(model: ModelView, info: Mapping[str, Any]) -> TabContent:
    """One line per other tab: its explanation and a figure from the header's data."""
    rows = model.endpoints
    usable = sum(1 for row in rows if row.usable)
    latencies = [row.latency_p50 for row in rows if row.latency_p50 is not None]
    speeds = [row.throughput_p50 for row in rows if row.throughput_p50 is not None]
    uptimes = [row.uptime for row in rows if row.uptime is not None]
    bench = benchmarks(info).benchmarks
    scores = len(bench.indices) + len(bench.arena) if bench else 0
    figures = {
        "playground": "Ready" if model.usable else "No usable provider yet",
        "providers": f"{len(rows)} provider{'s' if len(rows) != 1 else ''}, {usable} usable here",
        "performance": (
            f"Best latency {ms(min(latencies))}, best throughput {tps(max(speeds, default=None))}"
            if latencies
            else "No measurements yet"
        ),
        "pricing": "Free" if model.free else "See list and effective prices",
        "benchmarks": f"{scores} published scores" if scores else "None published yet",
        "apps": "Apps that sent attribution headers",
        "activity": (
            f"{tokens(model.weekly_tokens)} tokens this week"
            if model.weekly_tokens is not None
            else "Unavailable"
        ),
        "uptime": f"Best uptime today {pct(max(uptimes))}" if uptimes else "No attempts yet",
        "api": "curl, Python, TypeScript",
    }
    summaries = [
        TabSummary(tab, model_href(model.id, tab.slug), figures.get(tab.slug, ""))
        for tab in TABS
        if tab.slug != "overview"
    ]
    return TabContent(summaries=summaries)
