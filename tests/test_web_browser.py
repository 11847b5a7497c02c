"""The website in real headless Chromium (Debian's, driven by Playwright: see browser.py).

One server of this module's own in front of two simulated providers of its own (their
speed is changed here, so they are not the session's shared ones):
- zqbr/busy (alpha and beta, takes `reasoning`): gets traffic, streamed and not, from two
  keys and the tests' own key;
- zqbr/busy:free (alpha, free) and zqbr/quiet (beta): no traffic.
Every test fails on a console error, an uncaught exception or a failed request in any page
it opened (browser.py's `page` and `watched` fixtures), unless it says it expects one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from crossroads.web.model_tabs import TABS
from crossroads.web.samples import APP_URL
from harness import HTTP, Server, Simulator, endpoint, provider

if TYPE_CHECKING:  # a plugin of conftest.py (its assertions rewritten), not imported here
    from browser import OpenPage, Watched


BUSY, FREE, QUIET = "zqbr/busy", "zqbr/busy:free", "zqbr/quiet"
OURS = {BUSY, FREE, QUIET}
EMPTY = "Not enough data to display yet."
CHART_TABS = ("performance", "uptime", "activity")
REASONING = ["max_tokens", "temperature", "reasoning", "include_reasoning"]
APP = "https://zqbr-app.example"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Simulator]]:
    started = {name: Simulator(name) for name in ("alpha", "beta")}
    yield started
    for sim in started.values():
        sim.stop()


@pytest.fixture(scope="module")
def site(
    upstreams: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = {
        "server": {"stream_keepalive_seconds": 0.2},
        "providers": [provider("alpha", upstreams["alpha"]), provider("beta", upstreams["beta"])],
        "models": [
            {
                "id": BUSY,
                "name": "ZQBR: Busy",
                "created": 1754414231,
                "description": "A busy model for the browser tests.",
                "context_length": 131072,
                "endpoints": [
                    endpoint("alpha", 0.15, 0.6, supported_parameters=REASONING),
                    endpoint("beta", 0.2, 0.8, supported_parameters=REASONING),
                ],
            },
            {
                "id": FREE,
                "name": "ZQBR: Busy (free)",
                "endpoints": [endpoint("alpha", 0, 0, supported_parameters=REASONING)],
            },
            {"id": QUIET, "name": "ZQBR: Quiet", "endpoints": [endpoint("beta", 1, 2)]},
        ],
    }
    server = Server(
        tmp_path_factory.mktemp("web-browser"),
        config,
        env={"CROSSROADS_STATS_FLUSH_INTERVAL_SECONDS": "0.2"},
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def base_url(site: Server) -> str:
    return site.url("")


@dataclass(frozen=True)
class Traffic:
    """Two keys of the server and the generation each one made."""

    key_a: str
    key_b: str
    generation_a: str
    generation_b: str


def _chat(site: Server, key: str | None = None, **body: Any) -> str:
    """One chat completion to zqbr/busy; its generation id."""
    request = {"model": BUSY, "messages": [{"role": "user", "content": "hi there"}], **body}
    r = site.post("/chat/completions", request, key, headers={"HTTP-Referer": APP})
    assert r.status_code == 200, r.text
    if body.get("stream"):
        return r.text.split('"id":"', 1)[1].split('"', 1)[0]
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def traffic(site: Server) -> Traffic:
    """Requests through the server (two keys, streamed and not), then wait until the model
    page's charts show them: the statistics and the records trail the requests a little."""
    key_a = site.create_key("browser-a")["key"]
    key_b = site.create_key("browser-b")["key"]
    made = Traffic(key_a, key_b, _chat(site, key_a), _chat(site, key_b, stream=True))
    for n in range(4):
        _chat(site, stream=n % 2 == 0, max_tokens=12)
    deadline = time.monotonic() + 15
    for key, generation in ((key_a, made.generation_a), (key_b, made.generation_b)):
        while site.get(f"/generation?id={generation}", key).status_code != 200:
            assert time.monotonic() < deadline, f"{generation} was never stored"
            time.sleep(0.1)
    for tab in CHART_TABS:
        while "<svg" not in HTTP.get(site.url(f"/{BUSY}/{tab}")).text:
            assert time.monotonic() < deadline, f"the {tab} tab never drew a chart"
            time.sleep(0.2)
    return made


# -- 1. every page loads clean -----------------------------------------------------------

PAGES = [
    "/",
    "/models",
    "/models?q=zqbr&free=1",
    "/rankings",
    "/apps",
    "/providers",
    "/providers/alpha",
    f"/compare?models={BUSY},{QUIET}",
    "/chat",
    "/account",
    "/account/sign-in",
    "/account/generation?id=gen-none",
    *[f"/{BUSY}/{tab.slug}" for tab in TABS],
    f"/{BUSY}",
    f"/{FREE}",
    f"/{FREE}/playground",
    f"/{FREE}/api",
]
PHONE = {"width": 390, "height": 844}
SCRIPTED = ("/chat", "/account", "/playground")  # pages whose scripts may call the API


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_without_errors(path: str, page: Watched, traffic: Traffic) -> None:
    page.goto(path)
    if any(s in path for s in SCRIPTED):
        page.page.wait_for_load_state("networkidle")
    assert page.page.locator("main#content h1").count() >= 1, f"{path}: no heading"
    assert page.page.title().endswith("Crossroads"), path
    page.assert_clean(path)
    page.page.set_viewport_size(PHONE)  # readable on a phone: nothing but tables scrolls
    wide = page.page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= PHONE["width"], f"{path} at {PHONE['width']} px scrolls sideways ({wide} px)"


# -- 2. tabs ------------------------------------------------------------------------------


def _heading_of(slug: str) -> list[str]:
    """The fixed words of a tab's heading (around the model's name)."""
    tab = next(t for t in TABS if t.slug == slug)
    return [part.strip() for part in tab.heading.split("{name}") if part.strip()]


def _on_tab(page: Watched, slug: str) -> None:
    """The page shows tab `slug`: its address, selected tab, panel and heading."""
    p = page.page
    suffix = f"/{BUSY}" if slug == "overview" else f"/{BUSY}/{slug}"
    p.wait_for_url(lambda url: urlsplit(url).path == suffix)
    p.wait_for_load_state("load")
    assert p.get_attribute(f"#tab-{slug}", "aria-selected") == "true"
    assert p.locator('[role="tab"][aria-selected="true"]').count() == 1
    assert p.locator(f'[role="tabpanel"]#panel-{slug}').count() == 1
    heading = p.inner_text("#tab-heading")
    for words in _heading_of(slug):
        assert words in heading, (slug, heading)


def test_tabs_switch_by_link_and_keyboard(page: Watched) -> None:
    p = page.page
    page.goto(f"/{BUSY}")
    _on_tab(page, "overview")
    p.click("#tab-providers")
    _on_tab(page, "providers")
    p.focus('[role="tab"][aria-selected="true"]')  # once: each new page keeps the focus
    for key, tab in (
        ("ArrowRight", "performance"),
        ("End", "api"),
        ("ArrowRight", "overview"),  # wraps around
        ("ArrowLeft", "api"),
        ("Home", "overview"),
    ):
        p.wait_for_function(
            "document.activeElement?.getAttribute('aria-selected') === 'true'"
        )  # the selected tab of the page just loaded has the focus
        p.keyboard.press(key)
        _on_tab(page, tab)
    assert (
        p.evaluate(
            "[...document.querySelectorAll('[role=tab]')].filter(t => t.tabIndex === 0).length"
        )
        == 1
    )  # one tab stop: the selected tab
    page.assert_clean()


# -- 3. the playground streams ------------------------------------------------------------


def test_playground_streams_a_reply_with_reasoning_apart(
    watched: OpenPage, site: Server, upstreams: dict[str, Simulator]
) -> None:
    page = watched()
    p = page.page
    page.sign_in(site.api_key or "", next_path=f"/{BUSY}/playground")
    words = "one two three four five six seven eight nine ten"
    upstreams["beta"].configure(tokens_per_second=8)  # ~13 chunks, one every 125 ms
    try:
        p.select_option("#provider", "beta")
        p.select_option("#reasoning-effort", "low")
        p.fill("#prompt", words)
        p.click("#send")
        p.wait_for_function("() => document.getElementById('answer').textContent.length > 0")
        first = len(p.inner_text("#answer"))
        p.wait_for_function(f"() => document.getElementById('answer').textContent.length > {first}")
        assert p.is_disabled("#send"), "the reply ended before it could be seen growing"
        p.wait_for_function("() => !document.getElementById('send').disabled")
    finally:
        upstreams["beta"].reset()
    answer = " ".join(p.inner_text("#answer").split())
    assert answer == f"beta says: {words}"
    assert first < len(answer)
    assert p.is_visible("#reasoning-text")
    assert p.inner_text("#reasoning-text").strip() == "The user wrote 10 words."
    assert "The user wrote" not in answer
    assert p.is_hidden("#playground-error")
    page.assert_clean()


def test_chat_streams_and_keeps_the_conversation(watched: OpenPage, site: Server) -> None:
    page = watched()
    p = page.page
    page.sign_in(site.api_key or "", next_path="/chat")
    p.select_option("#chat-model", BUSY)
    p.select_option("#chat-reasoning-effort", "low")
    p.fill("#chat-prompt", "hello chat")
    p.click("#chat-send")
    reply = p.locator(".message-assistant .answer")
    p.wait_for_function(
        "() => /says: hello chat/.test(document.querySelector('.message-assistant .answer')"
        "?.textContent) && !document.getElementById('chat-send').disabled"
    )
    assert " ".join(reply.inner_text().split()).endswith("says: hello chat")
    thought = p.locator(".message-assistant .reasoning-text").inner_text()
    assert thought.strip() == "The user wrote 2 words."
    p.reload(wait_until="load")  # the conversation is kept in this browser
    p.locator(".conversation-open").first.click()
    assert p.locator(".message-user").inner_text().count("hello chat") == 1
    assert "says: hello chat" in p.locator(".message-assistant .answer").inner_text()
    page.assert_clean()


# -- 4. filters -----------------------------------------------------------------------------


def _listed(page: Watched) -> set[str]:
    rows = page.page.locator("tr[data-model]")
    return {rows.nth(i).get_attribute("data-model") or "" for i in range(rows.count())}


def test_filters_narrow_the_model_list(page: Watched) -> None:
    p = page.page
    page.goto("/models?q=zqbr")
    assert _listed(page) == OURS
    p.check("#f-free")
    p.click("text=Apply filters")
    p.wait_for_url("**free=1**")
    assert _listed(page) == {FREE}
    query = parse_qs(urlsplit(p.url).query)
    assert query["q"] == ["zqbr"] and query["free"] == ["1"]
    assert p.is_checked("#f-free")
    p.uncheck("#f-free")
    p.select_option("#f-provider", "beta")
    p.click("text=Apply filters")
    p.wait_for_url("**provider=beta**")
    assert _listed(page) == {BUSY, QUIET}
    assert "free" not in parse_qs(urlsplit(p.url).query)
    page.assert_clean()


# -- 5. charts ------------------------------------------------------------------------------


def test_charts_with_data_and_the_empty_state_without(page: Watched, traffic: Traffic) -> None:
    p = page.page
    for tab in CHART_TABS:
        page.goto(f"/{BUSY}/{tab}")
        panel = p.locator(f"#panel-{tab}")
        charts = panel.locator("figure.chart svg")
        assert charts.count() >= 1, f"/{BUSY}/{tab}: no chart"
        box = charts.first.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, (tab, box)
        assert EMPTY not in panel.inner_text(), tab
        page.goto(f"/{QUIET}/{tab}")
        panel = p.locator(f"#panel-{tab}")
        assert panel.locator("svg").count() == 0, f"/{QUIET}/{tab}: a chart without data"
        assert panel.locator(".empty").first.inner_text().strip() == EMPTY, tab
    page.assert_clean()


# -- 6. the API tab -------------------------------------------------------------------------


def test_api_samples_use_this_server_and_copy(watched: OpenPage, site: Server) -> None:
    page = watched(permissions=["clipboard-read", "clipboard-write"])
    p = page.page
    page.goto(f"/{BUSY}/api")
    blocks = p.locator(".code-block")
    assert blocks.count() >= 5  # curl, openai, openrouter, TypeScript, reasoning
    for i in range(blocks.count()):
        code = blocks.nth(i).locator("pre code").inner_text()
        assert site.base_url in code and BUSY in code, code
        for url in re.findall(r"https?://[^\s\"'`)]+", code):
            assert url.startswith(site.url("/")) or url == APP_URL, (url, code)
    button = blocks.first.locator("button[data-copy]")
    button.click()
    p.wait_for_function(
        "b => b.textContent.trim() === 'Copied'", arg=button.element_handle(), timeout=2000
    )
    copied = p.evaluate("() => navigator.clipboard.readText()")
    assert copied == blocks.first.locator("pre code").text_content()
    page.assert_clean()


# -- 7. the account page --------------------------------------------------------------------


def _generations(page: Watched, wanted: str) -> set[str]:
    """The generation ids the account page lists, once `wanted` is among them (a record is
    stored a moment after its request: the page's Refresh button asks again)."""
    p = page.page
    rows = p.locator("#generations-table tbody tr[data-generation-id]")
    deadline = time.monotonic() + 10
    while True:
        p.wait_for_load_state("networkidle")
        ids = {rows.nth(i).get_attribute("data-generation-id") or "" for i in range(rows.count())}
        if wanted in ids or time.monotonic() > deadline:
            return ids
        p.click("#generations-refresh")
        time.sleep(0.2)


def test_sign_in_refuses_an_unknown_key(watched: OpenPage) -> None:
    page = watched()
    page.expected += ["/api/v1/key answered 401", "status of 401"]  # provoked here
    p = page.page
    page.goto("/account/sign-in")
    p.fill("#api-key", "sk-cr-v1-" + "0" * 64)
    p.click("#sign-in-submit")
    p.wait_for_selector("#sign-in-error:not([hidden])")
    assert "not valid" in p.inner_text("#sign-in-error")
    assert urlsplit(p.url).path == "/account/sign-in"
    assert p.evaluate("() => localStorage.length") == 0
    assert len(page.problems) >= 1  # the refusal was seen, and expected
    page.assert_clean()


@pytest.mark.parametrize("target", ["/%09/evil.example", "//evil.example", "https://evil.example"])
def test_sign_in_never_sends_the_person_off_site(
    watched: OpenPage, site: Server, target: str
) -> None:
    page = watched()
    p = page.page
    page.goto(f"/account/sign-in?next={target}")
    p.fill("#api-key", site.api_key or "")
    p.click("#sign-in-submit")
    p.wait_for_url(lambda url: urlsplit(url).path == "/account")
    assert urlsplit(p.url).netloc == urlsplit(site.url("/")).netloc
    page.assert_clean()


def test_account_lists_the_keys_own_generations(
    watched: OpenPage, site: Server, traffic: Traffic
) -> None:
    own = watched()
    own.sign_in(traffic.key_a)
    assert own.page.is_visible("#account-details")
    listed = _generations(own, traffic.generation_a)
    assert traffic.generation_a in listed and traffic.generation_b not in listed, listed
    assert own.page.is_hidden("#management")
    own.page.click(f'tr[data-generation-id="{traffic.generation_a}"] a')
    own.page.wait_for_selector("#generation-details:not([hidden])")
    assert own.page.inner_text("#generation-id") == traffic.generation_a
    assert BUSY in own.page.inner_text("#generation-facts")

    manager = watched()
    manager.sign_in(site.management_key or "")
    listed = _generations(manager, traffic.generation_b)
    assert {traffic.generation_a, traffic.generation_b} <= listed, listed
    assert manager.page.is_visible("#management")
    assert manager.page.locator("#keys-table tbody tr").count() >= 3  # tests, a, b
    # the credits view shows what the account used, though no balance is enforced here
    used = site.get("/credits", site.management_key).json()["data"]["total_usage"]
    assert used > 0
    shown = manager.page.locator("#credits div", has_text="Used").locator("dd").inner_text()
    assert shown == f"${used:.6f}".rstrip("0").rstrip("."), (shown, used)
    own.assert_clean()
    manager.assert_clean()


# -- 8. themes ------------------------------------------------------------------------------


def test_theme_toggle_switches_and_persists(watched: OpenPage) -> None:
    page = watched(color_scheme="light")
    p = page.page
    theme = "() => document.documentElement.getAttribute('data-theme')"
    page.goto("/models")
    assert p.evaluate(theme) in (None, "light")
    toggle = p.locator("[data-theme-toggle]")
    toggle.click()
    assert p.evaluate(theme) == "dark"
    assert "light" in (toggle.get_attribute("aria-label") or "")
    p.reload(wait_until="load")
    assert p.evaluate(theme) == "dark"
    background = "() => getComputedStyle(document.body).backgroundColor"
    dark = p.evaluate(background)
    toggle.click()
    assert p.evaluate(theme) == "light"
    assert p.evaluate(background) != dark, "the page looks the same in both themes"
    page.goto(f"/{BUSY}")
    assert p.evaluate(theme) == "light"
    page.assert_clean()


# -- 9. screenshots ---------------------------------------------------------------------------

SIZES = {"phone": (PHONE["width"], PHONE["height"]), "desktop": (1280, 800)}


def test_screenshots_at_phone_and_desktop_width(
    page: Watched, traffic: Traffic, tmp_path_factory: pytest.TempPathFactory
) -> None:
    p = page.page
    folder: Path = tmp_path_factory.mktemp("screenshots")
    paths = {"home": "/", "models": "/models", "model": f"/{BUSY}", "chat": "/chat"}
    for size, (width, height) in SIZES.items():
        p.set_viewport_size({"width": width, "height": height})
        for name, path in paths.items():
            page.goto(path)
            shot = folder / f"{name}-{size}.png"
            p.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000, shot
    assert len(list(folder.glob("*.png"))) == len(SIZES) * len(paths)
    page.assert_clean()
