"""The website's listing pages: /models (search, filters in the URL, sorting), /rankings,
/apps, /providers, /providers/{slug} and /compare, against a real server of their own.

The server's own models are all named `zqweb/...` so a search for "zqweb" isolates them
from the bundled catalog; the traffic sent here is read back from the usage rollups
(polled: the recorder and the rollups' cache trail the requests by a moment)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from harness import HTTP, Server, Simulator, endpoint, provider

VISION, TINY, MID, LOCKED, PAINTER = (
    "zqweb/vision",
    "zqweb/tiny:free",
    "zqweb/mid",
    "zqweb/locked",
    "zqweb/painter",
)
OURS = {VISION, TINY, MID, LOCKED, PAINTER}
APP = "https://zqweb-app.example"
TITLED_APP = "ZQ Title App"


def listing_config(sims: dict[str, Simulator]) -> dict[str, Any]:
    text_only = {"input_modalities": ["text"], "output_modalities": ["text"]}
    return {
        "providers": [
            provider("alpha", sims["alpha"]),
            provider("beta", sims["beta"]),
            {
                "slug": "locked",
                "name": "Locked",
                "api": "openai",
                "base_url": sims["delta"].url(),
                "api_key_env": "ZQWEB_LOCKED_API_KEY",
            },
        ],
        "models": [
            {
                "id": VISION,
                "name": "ZQWeb: Vision",
                "created": 1_700_000_300,
                "context_length": 200_000,
                "architecture": {
                    "input_modalities": ["text", "image"],
                    "output_modalities": ["text"],
                },
                "endpoints": [endpoint("alpha", 3, 15), endpoint("beta", 4, 16)],
            },
            {
                "id": TINY,
                "name": "ZQWeb: Tiny (free)",
                "created": 1_700_000_100,
                "context_length": 8192,
                "architecture": text_only,
                "endpoints": [endpoint("alpha", 0, 0)],
            },
            {
                "id": MID,
                "name": "ZQWeb: Mid",
                "created": 1_700_000_200,
                "context_length": 65_536,
                "architecture": text_only,
                "endpoints": [endpoint("beta", 0.5, 1)],
            },
            {
                "id": LOCKED,
                "name": "ZQWeb: Locked",
                "created": 1_700_000_400,
                "context_length": 32_768,
                "architecture": text_only,
                "endpoints": [endpoint("locked", 1, 1)],
            },
            {
                "id": PAINTER,
                "name": "ZQWeb: Painter",
                "created": 1_700_000_050,
                "context_length": 16_384,
                "architecture": {
                    "input_modalities": ["text"],
                    "output_modalities": ["image", "text"],
                },
                "endpoints": [endpoint("alpha", 2, 2)],
            },
        ],
    }


@pytest.fixture(scope="module")
def site(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("web-listing"),
        listing_config(sims),
        env={"CROSSROADS_STATS_FLUSH_INTERVAL_SECONDS": "0.2"},
    )
    yield srv
    srv.stop()


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


class Page:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.html = response.text
        parsed = Tags()
        parsed.feed(response.text)
        self.tags = parsed.tags
        self.text = " ".join(" ".join(parsed.text).split())

    def attrs(self, tag: str, name: str) -> list[str]:
        """The values of attribute `name` on every `tag`, in page order."""
        return [a[name] for t, a in self.tags if t == tag and name in a]

    def links(self) -> set[str]:
        return set(self.attrs("a", "href"))


def get(site: Server, path: str, status: int = 200) -> Page:
    r = HTTP.get(site.url(path))
    assert r.status_code == status, (path, r.status_code, r.text[-2000:])
    assert r.headers["content-type"].startswith("text/html")
    return Page(r)


def models(site: Server, query: str, status: int = 200) -> list[str]:
    """The model ids /models lists for `query`, in order."""
    return get(site, "/models?" + query, status).attrs("tr", "data-model")


def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, "timed out"
            return found
        time.sleep(0.1)


# -- /models --------------------------------------------------------------------------


def test_search_finds_models_by_id_or_name_in_any_case(site: Server) -> None:
    assert set(models(site, "q=zqweb")) == OURS
    assert set(models(site, "q=ZQWeb%3A+Vision")) == {VISION}
    assert set(models(site, "q=zqweb/tin")) == {TINY}
    page = get(site, "/models?q=zqweb")
    assert ("input", {"id": "f-q", "type": "search", "name": "q", "value": "zqweb"}) in [
        (t, {k: a[k] for k in ("id", "type", "name", "value") if k in a})
        for t, a in page.tags
        if t == "input" and a.get("id") == "f-q"
    ]
    assert "Showing 1–5 of 5 models" in page.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("input=image", {VISION}),
        ("output=image", {PAINTER}),
        ("free=1", {TINY}),
        ("provider=beta", {VISION, MID}),
        ("context=60000", {VISION, MID}),
        ("max_price=1", {TINY, MID, LOCKED}),
        ("usable=1", OURS - {LOCKED}),
        ("provider=alpha&max_price=2.5", {TINY, PAINTER}),
        ("usable=1&context=30000&max_price=5", {VISION, MID}),
    ],
)
def test_filters_narrow_the_list(site: Server, query: str, expected: set[str]) -> None:
    assert set(models(site, "q=zqweb&" + query)) == expected


def test_filters_stay_in_the_form(site: Server) -> None:
    page = get(site, "/models?q=zqweb&free=1&usable=1&provider=beta&context=65536&sort=price")
    checked = {a["name"] for t, a in page.tags if t == "input" and "checked" in a}
    assert checked == {"free", "usable"}
    selected = [a["value"] for t, a in page.tags if t == "option" and "selected" in a]
    assert selected == ["65536", "beta", "price"]
    assert page.attrs("tr", "data-model") == []  # tiny is free but not on beta


def test_free_only_lists_free_models_of_the_whole_catalog(site: Server) -> None:
    listed = models(site, "free=1")
    api = site.get("/models?output_modalities=all").json()["data"]
    free = {
        m["id"]
        for m in api
        if float(m["pricing"]["prompt"]) == 0 and float(m["pricing"]["completion"]) == 0
    }
    assert TINY in listed and set(listed) <= free
    assert len(listed) == min(len(free), 100)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("", [LOCKED, VISION, MID, TINY, PAINTER]),  # newest first by default
        ("newest", [LOCKED, VISION, MID, TINY, PAINTER]),
        ("price", [TINY, MID, LOCKED, PAINTER, VISION]),  # mean of prompt and completion
        ("context", [VISION, MID, LOCKED, PAINTER, TINY]),
    ],
)
def test_sorting_orders_the_list(site: Server, sort: str, expected: list[str]) -> None:
    assert models(site, f"q=zqweb&sort={sort}") == expected


def test_rows_link_to_model_pages(site: Server) -> None:
    page = get(site, "/models?q=zqweb")
    assert {"/" + m for m in OURS} <= page.links()


def test_empty_results_say_how_to_widen_them(site: Server) -> None:
    page = get(site, "/models?q=zqweb&free=1&provider=beta")
    assert page.attrs("tr", "data-model") == []
    assert "No models match these filters" in page.text
    links = page.links()
    assert "/models?q=zqweb&free=1" in links  # the provider filter removed
    assert "/models?q=zqweb&provider=beta" in links  # free removed
    assert "/models" in links


def test_bad_filter_values_are_reported_and_left_out(site: Server) -> None:
    page = get(site, "/models?q=zqweb&context=lots&sort=sideways&free=maybe", status=400)
    assert "'context' takes a whole number" in page.text
    assert "Unknown sort 'sideways'" in page.text
    assert "'free' takes 1 or 0" in page.text
    assert set(page.attrs("tr", "data-model")) == OURS  # the search still applies
    assert models(site, "q=zqweb&max_price=-1", status=400) != []
    assert models(site, "q=zqweb&provider=nobody", status=400) != []


def test_the_catalog_is_paged_and_pages_keep_the_filters(site: Server) -> None:
    first = get(site, "/models?sort=context")
    rows = first.attrs("tr", "data-model")
    assert len(rows) == 100
    (next_link,) = [a["href"] for t, a in first.tags if t == "a" and a.get("rel") == "next"]
    assert parse_qs(urlsplit(next_link).query) == {"sort": ["context"], "page": ["2"]}
    second = get(site, next_link).attrs("tr", "data-model")
    assert second and not set(second) & set(rows)


# -- traffic: the usage sort, /rankings, /apps ----------------------------------------


def test_traffic_shows_in_the_usage_sort_rankings_and_apps(site: Server) -> None:
    for _ in range(2):
        r = site.post(
            "/chat/completions",
            {"model": MID, "messages": [{"role": "user", "content": "rank me"}]},
            headers={"HTTP-Referer": APP},
        )
        assert r.status_code == 200, r.text
    r = site.post(
        "/chat/completions",
        {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"X-Title": TITLED_APP},
    )
    assert r.status_code == 200, r.text

    until(lambda: models(site, "q=zqweb&sort=usage")[:2] == [MID, TINY])

    def ranked() -> list[str]:
        return [m for m in get(site, "/rankings").attrs("tr", "data-model") if m in OURS]

    assert until(lambda: ranked() == [MID, TINY])
    rankings = get(site, "/rankings")
    assert "/" + MID in rankings.links() and APP in rankings.attrs("tr", "data-app")

    def attributed() -> Page | None:
        page = get(site, "/apps")
        return page if TITLED_APP in page.attrs("tr", "data-app") else None

    apps = until(attributed)
    order = apps.attrs("tr", "data-app")
    assert order.index(APP) < order.index(TITLED_APP)  # most tokens first
    assert APP in apps.links()  # a referer that is a URL links to the app
    assert [m for m in apps.attrs("li", "data-model") if m in OURS] == [MID, TINY]

    past = get(site, "/rankings?week=2020-03-02")
    assert past.attrs("tr", "data-model") == [] and "Not enough data to display yet" in past.text
    assert get(site, "/apps?month=2020-02").attrs("tr", "data-app") == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/rankings?week=2020-03-03", "weeks start on Monday"),
        ("/rankings?week=soon", "expected a date"),
        ("/apps?month=2020-13", "expected YYYY-MM"),
    ],
)
def test_bad_weeks_and_months_are_400_pages(site: Server, path: str, message: str) -> None:
    assert message in get(site, path, status=400).text


# -- /providers -----------------------------------------------------------------------


def test_providers_list_their_status_and_models(site: Server) -> None:
    page = get(site, "/providers")
    slugs = page.attrs("tr", "data-provider")
    assert {"alpha", "beta", "locked"} <= set(slugs)
    assert {"/providers/alpha", "/providers/locked"} <= page.links()
    assert "missing credentials: set ZQWEB_LOCKED_API_KEY" in page.text


def test_a_provider_page_shows_its_status_models_and_uptime(site: Server) -> None:
    r = site.chat(PAINTER, "uptime")
    assert r.status_code == 200, r.text
    alpha = get(site, "/providers/alpha")
    assert alpha.attrs("span", "data-status") == ["usable"] and "Usable here" in alpha.text
    assert {VISION, TINY, PAINTER} <= set(alpha.attrs("tr", "data-model"))
    assert MID not in alpha.attrs("tr", "data-model")
    assert {"/" + VISION, "/" + PAINTER} <= alpha.links()
    assert "1 day 100%" in alpha.text  # the painter request (and any other) succeeded

    locked = get(site, "/providers/locked")
    assert locked.attrs("div", "data-status") == ["unusable"]
    assert "missing credentials: set ZQWEB_LOCKED_API_KEY" in locked.text
    assert locked.attrs("tr", "data-model") == [LOCKED]
    assert "Not enough data to display yet" in locked.text  # no requests: no daily uptime


def test_an_unknown_provider_is_a_404_page(site: Server) -> None:
    page = get(site, "/providers/no-such-provider", status=404)
    assert "No provider is called 'no-such-provider'" in page.text


# -- /compare -------------------------------------------------------------------------


def compared(page: Page) -> list[str]:
    return page.attrs("th", "data-model")


def test_compare_two_models(site: Server) -> None:
    page = get(site, f"/compare?models={VISION},{MID}")
    assert compared(page) == [VISION, MID]
    for text in ("Input price $3/M $0.5/M", "Output price $15/M $1/M", "Context 200K 66K"):
        assert text in page.text
    for label in ("Latency", "Throughput", "Uptime"):
        assert label in page.text
    assert {"/" + VISION, "/" + MID} <= page.links()


def test_compare_three_models_from_the_form_and_a_variant_id(site: Server) -> None:
    page = get(site, f"/compare?models={TINY}&models={LOCKED}&models={PAINTER}")
    assert compared(page) == [TINY, LOCKED, PAINTER]
    assert "not usable" in page.text  # the locked model's provider


def test_compare_with_one_model_asks_for_more(site: Server) -> None:
    page = get(site, f"/compare?models={VISION}")
    assert compared(page) == [] and "Pick one or two more models" in page.text
    assert page.attrs("input", "value")[:1] == [VISION]
    assert "Pick two or three models" in get(site, "/compare").text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (f"{VISION},zqweb/nothing", "No model is called 'zqweb/nothing'"),
        (f"{VISION},{MID},{TINY},{PAINTER}", "Compare two or three models at a time, not 4"),
    ],
)
def test_compare_bad_input_is_a_friendly_400(site: Server, query: str, message: str) -> None:
    page = get(site, "/compare?models=" + query, status=400)
    assert message in page.text and compared(page) == []
    assert page.attrs("form", "action") == ["/compare"]  # the form is there to fix it


def test_listing_pages_share_the_site_layout(site: Server) -> None:
    for path in ("/models", "/rankings", "/apps", "/providers", "/providers/beta", "/compare"):
        page = get(site, path)
        assert "/static/site.css" in page.attrs("link", "href")
        assert "/static/listing.css" in page.attrs("link", "href")
        assert page.attrs("main", "id") == ["content"]
    css = HTTP.get(site.url("/static/listing.css"))
    assert css.status_code == 200 and ".uptime-days" in css.text
