"""The website as a stranger's browser test sees it, and its performance budget.

A stranger's test does not know this project's habits (browser.py's fresh context per
test, a 10 s wait, `about:blank` between pages): it opens one Chromium context with
Playwright's defaults (30 s waits, `load`), visits every page in turn, takes a full-page
screenshot of each, and fails on any console error, uncaught exception or failed request
(a 4xx or 5xx answer, or a request the browser gave up on, such as an icon still loading
when the next page was opened). This module does exactly that, on a server of its own in
front of two simulated providers with some traffic, so that the charts have data.

The budget, measured by Chromium's own performance APIs (PerformanceObserver and resource
timing) on a cold context per page: largest contentful paint under 1 s on loopback, no
layout shift after the load event, under 200 KB transferred in all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crossroads.web.model_tabs import TABS
from harness import HTTP, Server, Simulator, endpoint, provider

if TYPE_CHECKING:  # a plugin of conftest.py (its assertions rewritten), not imported here
    from browser import Watched

BUSY, FREE, BUNDLED = "zqst/busy", "zqst/busy:free", "openai/gpt-oss-120b:free"
LCP_BUDGET_MS = 1000
BYTES_BUDGET = 200 * 1024


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    sims = [Simulator("alpha"), Simulator("beta")]
    config = {
        "providers": [provider("alpha", sims[0]), provider("beta", sims[1])],
        "models": [
            {
                "id": BUSY,
                "name": "ZQST: Busy",
                "description": "A model with traffic, for the stranger's walk.",
                "endpoints": [endpoint("alpha", 0.15, 0.6), endpoint("beta", 0.2, 0.8)],
            },
            {"id": FREE, "name": "ZQST: Busy (free)", "endpoints": [endpoint("alpha", 0, 0)]},
        ],
    }
    server = Server(
        tmp_path_factory.mktemp("web-stranger"),
        config,
        env={"CROSSROADS_STATS_FLUSH_INTERVAL_SECONDS": "0.2"},
    )
    yield server
    server.stop()
    for sim in sims:
        sim.stop()


@pytest.fixture(scope="module")
def base_url(site: Server) -> str:
    return site.url("")


@pytest.fixture(scope="module")
def generation(site: Server) -> str:
    """Traffic on zqst/busy, streamed and not; the id of one of its generations, once the
    performance tab draws a chart of it."""
    ids = []
    for n in range(6):
        body = {
            "model": BUSY,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": n % 2 == 1,
        }
        r = site.post("/chat/completions", body, headers={"HTTP-Referer": "https://zqst.example"})
        assert r.status_code == 200, r.text
        ids.append(r.text.split('"id":"', 1)[1].split('"', 1)[0])
    deadline = time.monotonic() + 15
    while "<svg" not in HTTP.get(site.url(f"/{BUSY}/performance")).text:
        assert time.monotonic() < deadline, "the performance tab never drew a chart"
        time.sleep(0.2)
    return ids[0]


def every_page(generation: str) -> list[str]:
    return [
        "/",
        f"/{BUSY}",
        f"/{BUSY}/providers",
        "/models",
        "/rankings",
        f"/{BUNDLED}",
        f"/compare?models={BUSY},{BUNDLED}",
        *[f"/{BUSY}/{tab.slug}" for tab in TABS],
        *[f"/{BUNDLED}/{tab.slug}" for tab in TABS],
        f"/{FREE}/playground",
        "/models?q=zqst&free=1",
        "/apps",
        "/providers",
        "/providers/alpha",
        "/chat",
        "/docs",
        "/account",
        "/account/sign-in",
        f"/account/generation?id={generation}",
        "/",
    ]


def test_one_context_visits_every_page_with_default_waits(
    browser: Any, base_url: str, generation: str, tmp_path: Path
) -> None:
    from browser import watch

    context = browser.new_context(base_url=base_url)  # Playwright's defaults: 30 s, `load`
    page: Watched = watch(context.new_page())
    took = []
    try:
        for n, path in enumerate(every_page(generation)):
            started = time.monotonic()
            response = page.page.goto(path)
            assert response is not None and response.status == 200, path
            page.page.screenshot(path=str(tmp_path / f"{n:02}.png"), full_page=True)
            took.append((time.monotonic() - started, path))
        # the pages that read the API from a script have had their say by now
        page.page.wait_for_load_state("networkidle")
    finally:
        context.close()
    page.assert_clean("the stranger's walk")
    slowest = max(took)
    assert slowest[0] < 5, f"{slowest[1]} took {slowest[0]:.1f} s to load and be drawn"


MEASURE = """
window.__budget = {lcp: null, shifts: []};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__budget.lcp = entry.startTime;
}).observe({type: "largest-contentful-paint", buffered: true});
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (!entry.hadRecentInput) window.__budget.shifts.push([entry.startTime, entry.value]);
  }
}).observe({type: "layout-shift", buffered: true});
"""

READ = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  return {
    lcp: window.__budget.lcp,
    load: nav.loadEventEnd,
    shifts: window.__budget.shifts,
    bytes: nav.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
    resources: resources.map((r) => [r.name, r.transferSize]),
  };
}"""


@pytest.mark.parametrize("path", [f"/{BUSY}", f"/{BUSY}/providers", f"/{BUNDLED}", "/models"])
def test_performance_budget(browser: Any, base_url: str, generation: str, path: str) -> None:
    from browser import watch

    context = browser.new_context(base_url=base_url)  # cold: nothing cached
    context.add_init_script(MEASURE)
    page: Watched = watch(context.new_page())
    try:
        page.goto(path)
        page.page.wait_for_timeout(500)  # what would shift after load has had time to
        figures = page.page.evaluate(READ)
    finally:
        context.close()
    page.assert_clean(path)
    assert figures["lcp"] is not None, f"{path}: Chromium reported no contentful paint"
    assert figures["lcp"] < LCP_BUDGET_MS, f"{path}: LCP {figures['lcp']:.0f} ms"
    late = [s for s in figures["shifts"] if s[0] >= figures["load"]]
    assert not late, f"{path}: layout shifts after load: {late}"
    assert figures["resources"], f"{path}: resource timing saw nothing"  # site.css at least
    assert 0 < figures["bytes"] < BYTES_BUDGET, f"{path}: {figures['bytes']} bytes"
