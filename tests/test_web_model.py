"""The website's foundation and the model page, against a real server (fast, no browser).

One server with a small catalog in front of its own simulated provider:
- acme/widget-1 (alpha; reasoning; benchmarks in the catalog): gets traffic, with an app's
  attribution headers;
- acme/widget-1:free (alpha, free variant); acme/quiet (alpha, no reasoning): no traffic;
- acme/locked: its only provider has no key (the "no usable provider" guidance).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossroads.telemetry.buckets import HOUR
from crossroads.telemetry.sample import AttemptSample, Verdict
from crossroads.telemetry.stats import LiveStats
from crossroads.web.model_tabs import TABS
from harness import HTTP, Server, Simulator, endpoint, provider

APP = "https://widgets.example"
EMPTY = "Not enough data to display yet."
REASONING = ["max_tokens", "temperature", "reasoning", "include_reasoning"]


class Page(HTMLParser):
    """The parts of a page the tests look at: ids, landmarks, tabs, text by element id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []  # (tag, id) of open elements with ids
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        if "id" in values and tag not in ("input", "meta", "link", "br", "img"):
            self._open.append((tag, values["id"]))
            self.texts[values["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, element in self._open:
            if element is not None:
                self.texts[element] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    one = Simulator("alpha")
    yield one
    one.stop()


@pytest.fixture(scope="module")
def site(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = {
        "providers": [
            provider("alpha", sim),
            {
                "slug": "locked",
                "name": "Locked",
                "api": "openai",
                "base_url": sim.url(),
                "api_key_env": "LOCKED_WEB_TEST_API_KEY",
            },
        ],
        "models": [
            {
                "id": "acme/widget-1",
                "name": "Acme: Widget 1",
                "created": 1754414231,
                "description": "A widget <b>model</b> for tests.",
                "context_length": 131072,
                "benchmarks": {
                    "artificial_analysis": {"intelligence_index": 42.5, "coding_index": None},
                    "design_arena": [
                        {"arena": "models", "category": "website", "elo": 979, "rank": 114}
                    ],
                },
                "endpoints": [
                    endpoint(
                        "alpha",
                        0.15,
                        0.6,
                        quantization="fp8",
                        max_completion_tokens=4096,
                        supported_parameters=REASONING,
                    )
                ],
            },
            {
                "id": "acme/widget-1:free",
                "name": "Acme: Widget 1 (free)",
                "endpoints": [endpoint("alpha", 0, 0, supported_parameters=REASONING)],
            },
            {
                "id": "acme/quiet",
                "name": "Acme: Quiet",
                "endpoints": [endpoint("alpha", 1, 2, supported_parameters=["max_tokens"])],
            },
            {"id": "acme/locked", "name": "Acme: Locked", "endpoints": [endpoint("locked", 1, 1)]},
        ],
    }
    server = Server(
        tmp_path_factory.mktemp("web-model"),
        config,
        env={"CROSSROADS_STATS_FLUSH_INTERVAL_SECONDS": "0.5"},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traffic(site: Server) -> Server:
    """A few requests to acme/widget-1 (streamed ones too: throughput is measured on
    streams), attributed to an app, and their records stored."""
    for n in range(4):
        body = {"model": "acme/widget-1", "messages": [{"role": "user", "content": f"hi {n}"}]}
        r = site.post(
            "/chat/completions",
            {**body, "stream": n % 2 == 1, "max_tokens": 20},
            headers={"HTTP-Referer": APP, "X-Title": "Widgets"},
        )
        assert r.status_code == 200 and "alpha" in r.text, r.text
    deadline = time.monotonic() + 10
    while APP not in page(site, "/acme/widget-1/apps").text:
        assert time.monotonic() < deadline, "the app never showed"
        time.sleep(0.2)
    return site


def page(site: Server, path: str, **kw: Any) -> httpx.Response:
    return HTTP.get(site.url(path), **kw)


def html_ok(r: httpx.Response, status: int = 200) -> Page:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    parsed = Page(r.text)
    assert parsed.find("main", id="content") and parsed.find("a", href="#content")
    assert parsed.find("nav", aria_label="Main") and parsed.find("footer")
    return parsed


# -- foundation --------------------------------------------------------------------------


def test_home_docs_and_static(site: Server) -> None:
    home = html_ok(page(site, "/"))
    assert home.find("form", action="/models") and home.find("input", name="q")
    assert {a["href"] for a in home.find("a")} >= {"/chat", "/rankings", "/models", "/docs"}
    docs = page(site, "/docs")
    html_ok(docs)
    assert site.base_url in docs.text
    for path, kind in (
        ("/static/site.css", "text/css"),
        ("/static/site.js", "text/javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),  # asked for where no page names an icon
    ):
        r = page(site, path)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), path
    assert page(site, "/static/nothing.css").status_code == 404
    assert page(site, "/favicon.ico").content == page(site, "/static/favicon.svg").content
    (icon,) = home.find("link", rel="icon")
    assert icon["href"].startswith("data:image/svg+xml,")  # inside the page: never fetched


def test_unknown_pages_are_html_404_and_api_stays_json(site: Server) -> None:
    for path in ("/nope", "/acme/nothing-here", "/acme/widget-1/nope", "/a/b/c/d"):
        html_ok(page(site, path), 404)
    models = page(site, "/api/v1/models")
    assert models.headers["content-type"] == "application/json"
    assert "acme/widget-1" in {m["id"] for m in models.json()["data"]}
    assert page(site, "/v1/models").json()["data"]
    missing = page(site, "/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    assert page(site, "/health").headers["content-type"] == "application/json"
    assert page(site, "/metrics").headers["content-type"].startswith("text/plain")
    # other methods than GET keep the API's answers
    posted = HTTP.post(site.url("/acme/widget-1"), json={})
    assert posted.status_code == 404 and posted.json()["error"]["code"] == 404
    assert HTTP.delete(site.url("/health")).status_code == 405


def test_theme_cookie_sets_the_theme(site: Server) -> None:
    assert '<html lang="en">' in page(site, "/").text
    dark = page(site, "/", cookies={"theme": "dark"}).text
    assert '<html lang="en" data-theme="dark">' in dark
    assert '<html lang="en">' in page(site, "/", cookies={"theme": "<x>"}).text


# -- the model page ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["acme/quiet", "acme/widget-1", "acme/widget-1:free"])
def test_every_tab_has_its_page_heading_and_tab_bar(site: Server, model: str) -> None:
    for tab in TABS:
        path = f"/{model}" if tab.slug == "overview" else f"/{model}/{tab.slug}"
        parsed = html_ok(page(site, path))
        name = parsed.texts["tab-heading"]
        assert name.startswith(tab.heading.split("{name}")[0]), (path, name)
        tabs = parsed.find("a", role="tab")
        assert [t["href"].rsplit("/", 1)[-1] for t in tabs][1:] == [t.slug for t in TABS][1:]
        selected = parsed.find("a", role="tab", aria_selected="true")
        assert len(selected) == 1 and selected[0]["id"] == f"tab-{tab.slug}"
        assert parsed.find("section", role="tabpanel", id=f"panel-{tab.slug}")
        assert parsed.texts["model-id"] == model
    assert page(site, f"/{model}/overview").status_code == 200


def test_header_facts(site: Server) -> None:
    text = page(site, "/acme/widget-1").text
    assert "Acme: Widget 1" in text and "A widget &lt;b&gt;model&lt;/b&gt; for tests." in text
    assert "$0.15/M" in text and "$0.6/M" in text and "131K" in text and "Aug 5, 2025" in text
    assert 'href="/chat?model=acme/widget-1"' in text
    free = page(site, "/acme/widget-1:free").text
    assert "<dt>Price</dt><dd>Free</dd>" in free
    assert "Acme: Widget 1 (free)" in free


def test_providers_tab_and_guidance_when_nothing_is_usable(site: Server) -> None:
    text = page(site, "/acme/widget-1/providers").text
    assert "Alpha" in text and "fp8" in text and "4.1K" in text and "Closed" in text
    assert "No usable provider" not in text
    locked = page(site, "/acme/locked/providers").text
    assert "No usable provider here yet" in locked and "crossroads local" in locked
    assert "missing credentials: set LOCKED_WEB_TEST_API_KEY" in locked
    assert "No usable provider here yet" in page(site, "/acme/locked/api").text


def test_empty_states_without_traffic(site: Server) -> None:
    for tab in ("performance", "activity", "uptime", "apps"):
        text = page(site, f"/acme/quiet/{tab}").text
        assert EMPTY in text and "<svg" not in text.split('id="content"')[1].split("<footer")[0]
    assert EMPTY in page(site, "/acme/quiet/benchmarks").text


def test_charts_after_traffic(traffic: Server) -> None:
    for tab, count in (("performance", 2), ("uptime", 1), ("activity", 1)):
        text = page(traffic, f"/acme/widget-1/{tab}").text
        charts = re.findall(r"<svg role=\"img\".*?</svg>", text, re.DOTALL)
        assert len(charts) == count, tab
        assert EMPTY not in text
        for svg in charts:
            assert "<script" not in svg and "<!--" not in svg
            assert not re.search(r"(src|href)=\"https?:", svg)
        assert "Alpha" in text or tab == "activity"
    assert f'href="{APP}"' in page(traffic, "/acme/widget-1/apps").text
    pricing = page(traffic, "/acme/widget-1/pricing").text
    assert "$0.15/M" in pricing and "/M</td>" in pricing
    providers = page(traffic, "/acme/widget-1/providers").text
    assert " ms</td>" in providers and "100%" in providers
    assert EMPTY in page(traffic, "/acme/quiet/performance").text  # other models stay empty


def test_benchmarks_tab(site: Server) -> None:
    text = page(site, "/acme/widget-1/benchmarks").text
    assert "Intelligence index" in text and "42.5" in text and "Coding index" not in text
    assert "Design Arena" in text and "979" in text and "114" in text


# -- the API tab's samples, run as written ---------------------------------------------------


def _samples(site: Server, model: str) -> dict[str, str]:
    parsed = Page(page(site, f"/{model}/api").text)
    return {k: unescape(v) for k, v in parsed.texts.items() if k.startswith("sample-")}


def _run(args: list[str], key: str, tmp: Path) -> str:
    env = {**os.environ, "CROSSROADS_API_KEY": key}
    done = subprocess.run(args, env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_api_samples_run_as_written(traffic: Server, tmp_path: Path) -> None:
    samples = _samples(traffic, "acme/widget-1:free")
    assert set(samples) == {
        "sample-curl",
        "sample-openai",
        "sample-openrouter",
        "sample-typescript",
        "sample-reasoning",
    }
    assert all(traffic.base_url in code for code in samples.values())
    key = traffic.api_key or ""
    out = _run(["bash", "-c", samples["sample-curl"]], key, tmp_path)
    assert '"model":"acme/widget-1:free"' in out.replace(" ", "")
    for name in ("sample-openai", "sample-openrouter", "sample-reasoning"):
        script = tmp_path / f"{name}.py"
        script.write_text(samples[name])
        assert "alpha says" in _run([sys.executable, str(script)], key, tmp_path), name
    if shutil.which("node"):
        script = tmp_path / "sample.mjs"
        script.write_text(samples["sample-typescript"])
        assert "alpha says" in _run(["node", str(script)], key, tmp_path)
    quiet = page(traffic, "/acme/quiet/api").text
    assert 'id="sample-reasoning"' not in quiet and "does not take the <code>reasoning" in quiet


# -- LiveStats.series ------------------------------------------------------------------------


def test_live_stats_series() -> None:
    now = [1_700_006_400.0 + 5 * 3600 + 120]  # 05:02 UTC

    stats = LiveStats(instance="me", clock=lambda: now[0])

    def attempt(verdict: Verdict, latency: float | None = None, speed: float | None = None) -> None:
        stats.observe(
            AttemptSample(
                endpoint_id="m/x@p",
                provider="p",
                model="m/x",
                verdict=verdict,
                latency_ms=latency,
                throughput=speed,
            )
        )

    attempt(Verdict.OK, 100.0, 50.0)
    attempt(Verdict.OK, 300.0, 10.0)
    attempt(Verdict.FAILED)
    now[0] += 3600  # the next hour
    attempt(Verdict.OK, 200.0, 20.0)
    attempt(Verdict.RATE_LIMITED)

    points = stats.series("m/x@p")
    assert len(points) == HOUR.length
    assert [p.start for p in points] == sorted(p.start for p in points)
    assert points[-1].start == HOUR.start(now[0]) and points[-2].start == points[-1].start - 3600
    last, before = points[-1], points[-2]
    assert (last.requests, last.uptime) == (2, 100.0)
    assert last.latency_p50 == pytest.approx(200.0, rel=0.02)
    assert last.throughput_p50 == pytest.approx(20.0, rel=0.02)
    assert (before.requests, before.uptime) == (3, 66.67)
    assert before.latency_p50 == pytest.approx(300.0, rel=0.02)  # nearest rank of two
    assert all(p.requests == 0 and p.latency_p50 is None for p in points[:-2])
    assert stats.series("other@p")[-1].requests == 0
    assert len(stats.series("m/x@p", "minute")) == 60 and len(stats.series("m/x@p", "day")) == 31
    with pytest.raises(ValueError):
        stats.series("m/x@p", "week")


# -- filters and page paths (no server) ----------------------------------------------------


def test_filters() -> None:
    from datetime import date as day

    from crossroads.web.templating import format_date, ms, pct, tokens, tps, usd, usd_per_million

    assert [usd_per_million(p) for p in ("0.00000015", "0.000002", 0, "-1", None, "x")] == [
        "$0.15/M",
        "$2/M",
        "Free",
        "Varies",
        "\u2014",
        "\u2014",
    ]
    assert usd_per_million("0.000000037") == "$0.037/M"
    assert [tokens(n) for n in (950, 4096, 131072, 1_200_000, 138_000_000_000)] == [
        "950",
        "4.1K",
        "131K",
        "1.2M",
        "138B",
    ]
    assert format_date(1754414231) == "Aug 5, 2025" == format_date(day(2025, 8, 5))
    assert format_date("2024-06-30") == "Jun 30, 2024"
    assert (ms(0.84), ms(850.2), ms(1234)) == ("0.8 ms", "850 ms", "1.23 s")
    assert (pct(100.0), pct(99.5), pct(None)) == ("100%", "99.5%", "\u2014")
    assert (tps(42.4), tps(7.5), usd(12.346), usd(0.0012), usd(0)) == (
        "42 tok/s",
        "7.5 tok/s",
        "$12.35",
        "$0.0012",
        "$0",
    )


def test_page_paths_read_whole() -> None:
    from crossroads.catalog.catalog import Catalog, Model
    from crossroads.schema.catalog import Endpoint, ModelSpec
    from crossroads.schema.catalog import Provider as P
    from crossroads.web.model_page import find_page
    from crossroads.web.urls import model_href

    providers = {"ollama": P(slug="ollama", name="Ollama")}
    models = {}
    for mid in ("ollama/library/llama3", "acme/x:free", "acme/x"):
        spec = ModelSpec(id=mid, endpoints=[Endpoint(provider="ollama")])
        models[mid] = Model.build(spec, providers, created=0)
    catalog = Catalog(providers, models)

    def read(path: str) -> tuple[str, str] | None:
        found = find_page(catalog, path)
        return None if found is None else (found[0].id, found[1].slug)

    assert read("ollama/library/llama3") == ("ollama/library/llama3", "overview")
    assert read("ollama/library/llama3/uptime") == ("ollama/library/llama3", "uptime")
    assert read("acme/x:free/api") == ("acme/x:free", "api")
    assert read("acme/x:nitro") == ("acme/x", "overview")  # a routing variant: the model
    assert read("acme/x/nope") is None and read("acme/y") is None
    assert model_href("acme/x:free", "api") == "/acme/x:free/api"
    assert model_href("acme/x", "overview") == "/acme/x"
