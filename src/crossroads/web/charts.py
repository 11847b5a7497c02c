"""Charts for the website: SVG drawn on the server with pygal, inlined in the page.

Nothing is fetched by the browser: pygal's own scripts are not referenced (`js=[]`), and
its inline config script and comments are removed from the output. Colours are the
stylesheet's CSS variables (`--chart-1`..`--chart-6`, `--fg`, `--chart-grid`), so a chart
follows the light or dark theme of the page it sits in.

A chart without any value is not drawn: the builders return None and the page shows
"Not enough data to display yet." instead. Each `Chart` also carries its numbers as
`rows`, shown in a table under the chart for screen readers and for reading exact values.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from itertools import cycle, islice
from typing import Any

import pygal  # type: ignore[import-untyped]  # no stubs: used through Any
from markupsafe import Markup
from pygal.style import Style  # type: ignore[import-untyped]

# pygal puts a legacy import hook first on `sys.meta_path` (for its `pygal.maps` plugins,
# not used here), which every later import then consults with an ImportWarning: take it out.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

EMPTY_TEXT = "Not enough data to display yet."
PALETTE = tuple(f"var(--chart-{n})" for n in range(1, 7))
WIDTH, HEIGHT = 680, 300  # the viewBox: the SVG scales to its box, text with it
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TITLE = re.compile(r"<title>.*?</title>", re.DOTALL)

Formatter = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Series:
    """One named line or set of bars; None is a gap (no data for that label)."""

    name: str
    values: Sequence[float | None]


@dataclass(frozen=True, slots=True)
class Chart:
    """A drawn chart: its SVG (safe to inline) and the same numbers as a table."""

    title: str
    svg: Markup
    labels: list[str]  # the x axis, one per column of `rows`
    names: list[str]  # the series, one per row of `rows`
    rows: list[list[str]]  # formatted values (an em dash for a gap), row per series


def _style(count: int) -> Style:
    return Style(
        background="transparent",
        plot_background="transparent",
        foreground="var(--fg)",
        foreground_strong="var(--fg)",
        foreground_subtle="var(--chart-grid)",
        colors=tuple(islice(cycle(PALETTE), max(count, 1))),
        font_family="inherit",
        label_font_size=13,
        major_label_font_size=13,
        legend_font_size=14,
        tooltip_font_size=13,
        value_font_size=12,
        opacity=".85",
        opacity_hover="1",
        guide_stroke_color="var(--chart-grid)",
        major_guide_stroke_color="var(--chart-grid)",
        stroke_width=2,
    )


def _has_values(series: Sequence[Series], *, zero: bool = False) -> bool:
    """Whether anything is to be drawn: a value (with `zero`, a 0 counts: 0 % uptime is
    a figure; a bar of 0 is not)."""
    return any(v is not None and (zero or v != 0) for s in series for v in s.values)


def _clean(svg: str, title: str) -> Markup:
    """pygal's SVG without its inline script and comments, titled for assistive tech."""
    svg = _SCRIPT.sub("", _COMMENT.sub("", svg))
    svg = _TITLE.sub(lambda _: f"<title>{escape(title)}</title>", svg, count=1)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1)
    return Markup(svg)  # noqa: S704 - pygal's own output, every label escaped by it


def _rows(series: Sequence[Series], fmt: Formatter) -> list[list[str]]:
    return [["\u2014" if v is None else fmt(v) for v in s.values] for s in series]


def _config(kind: Any, *, count: int, fmt: Formatter, **extra: object) -> Any:
    """A pygal chart of `kind` (pygal.Line, pygal.Bar, ...) in the site's look."""
    return kind(
        style=_style(count),
        js=[],
        disable_xml_declaration=True,
        width=WIDTH,
        height=HEIGHT,
        explicit_size=False,
        legend_at_bottom=True,
        legend_at_bottom_columns=min(max(count, 1), 4),
        show_legend=count > 1,
        truncate_legend=28,
        truncate_label=-1,  # axis labels are short ("05:00", "May 3"): never cut
        value_formatter=fmt,
        margin=12,
        spacing=12,
        show_x_guides=False,
        **extra,
    )


def line_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Formatter,
    major_every: int | None = None,
    y_range: tuple[float, float] | None = None,
) -> Chart | None:
    """Lines over `labels` (gaps where a value is None); None when there is no value."""
    if not _has_values(series, zero=True):
        return None
    extra: dict[str, object] = {
        "allow_interruptions": True,
        "show_dots": False,  # a dot per point costs drawing time and says little here
        "show_minor_x_labels": major_every is None,
    }
    if major_every is not None:
        extra["x_labels_major_every"] = major_every
    if y_range is not None:
        extra["range"] = y_range
    chart = _config(pygal.Line, count=len(series), fmt=fmt, **extra)
    chart.x_labels = list(labels)
    for one in series:
        chart.add(one.name, list(one.values))
    svg = chart.render(is_unicode=True)
    return Chart(
        title, _clean(svg, title), list(labels), [s.name for s in series], _rows(series, fmt)
    )


def bar_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Formatter,
    stacked: bool = False,
    major_every: int | None = None,
) -> Chart | None:
    """Bars per label (stacked when asked); None when every value is 0 or missing."""
    if not _has_values(series):
        return None
    extra: dict[str, object] = {"show_minor_x_labels": major_every is None}
    if major_every is not None:
        extra["x_labels_major_every"] = major_every
    kind = pygal.StackedBar if stacked else pygal.Bar
    chart = _config(kind, count=len(series), fmt=fmt, **extra)
    chart.x_labels = list(labels)
    for one in series:
        chart.add(one.name, [0 if v is None else v for v in one.values])
    svg = chart.render(is_unicode=True)
    return Chart(
        title, _clean(svg, title), list(labels), [s.name for s in series], _rows(series, fmt)
    )
