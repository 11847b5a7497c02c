"""Real headless Chromium for the website's browser tests (tests/test_web_browser*.py).

Debian's `/usr/bin/chromium` (installed by `scripts/ensure-chromium`), driven by Playwright
for Python with `executable_path`: no browser is ever downloaded. conftest.py brings these
fixtures in as a plugin (`pytest_plugins`; test modules import this module only under
TYPE_CHECKING, so that pytest rewrites its assertions); a test module defines a `base_url`
fixture: its server's address, "http://127.0.0.1:port".

- `browser`: one Playwright and one Chromium per test module (Playwright's sync API runs
  an event loop in this thread while it is open: the asyncio tests after must find none).
- `watched`: makes watched pages (`Watched`): each in a fresh browser context of its own
  (its own localStorage, cookies and clipboard), recording console errors, uncaught
  exceptions and failed requests (a network failure or an answer of 400 or more). The
  teardown fails the test if any page recorded one that the test did not expect.
- `page`: a module's one shared watched page, for tests that only look (no sign-in, no
  setting changed), checked the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 10_000  # any single wait: a page that needs longer is broken

Page = Any  # playwright.sync_api.Page (typed loosely: playwright is a test-only dependency)


@dataclass
class Watched:
    """A page and what went wrong on it: console errors, uncaught exceptions and failed
    requests, each as one readable line. `expected` holds substrings of problems the test
    provokes on purpose (they are not counted)."""

    page: Page
    problems: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def record(self, problem: str) -> None:
        self.problems.append(problem)

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(e in p for e in self.expected)]

    def assert_clean(self, what: str = "") -> None:
        """Fail now if the page recorded a problem (`what` says which page or step)."""
        found = self.unexpected()
        assert not found, f"{what or self.page.url}: " + "\n".join(found)

    def goto(self, url: str, *, status: int = 200) -> Any:
        """Open `url`, wait until it and its resources have loaded (and the deferred scripts
        ran), check the answer's status."""
        response = self.page.goto(url, wait_until="load")
        assert response is not None, url
        assert response.status == status, f"{url}: {response.status}"
        return response

    def sign_in(self, key: str, next_path: str = "/account") -> None:
        """Sign in through /account/sign-in: the form keeps the key in localStorage (never
        in an address) and goes on to `next_path`."""
        self.goto(f"/account/sign-in?next={next_path}")
        self.page.fill("#api-key", key)
        self.page.click("#sign-in-submit")
        self.page.wait_for_url(lambda url: urlsplit(url).path == next_path)
        assert key not in self.page.url
        assert self.page.evaluate("() => JSON.stringify(localStorage)").count(key) == 1


def watch(page: Page) -> Watched:
    """`page`, its console errors, uncaught exceptions and failed requests recorded."""
    watched = Watched(page)

    def console(message: Any) -> None:
        if message.type == "error":
            watched.record(f"console error on {page.url}: {message.text} ({message.location})")

    def response(answer: Any) -> None:
        if answer.status >= 400:
            request = answer.request
            watched.record(f"{request.method} {answer.url} answered {answer.status}")

    page.on("console", console)
    page.on("pageerror", lambda error: watched.record(f"uncaught error on {page.url}: {error}"))
    page.on(
        "requestfailed",
        lambda request: watched.record(f"{request.method} {request.url} failed: {request.failure}"),
    )
    page.on("response", response)
    return watched


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's) per module. Not per session: Playwright's sync API
    keeps an event loop running in this thread while it is open, and the asyncio tests of
    the modules after must find none."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure-chromium installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


OpenPage = Callable[..., Watched]
DESKTOP = {"width": 1280, "height": 800}


def _open(browser: Any, base_url: str, **options: Any) -> tuple[Any, Watched]:
    context = browser.new_context(base_url=base_url, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context, watch(context.new_page())


@pytest.fixture
def watched(browser: Any, base_url: str) -> Iterator[OpenPage]:
    """`watched(**context_options) -> Watched`: a new page in a new context (fresh storage)
    whose relative addresses resolve against `base_url`. Every page opened is checked at
    teardown: any unexpected console error or failed request fails the test."""
    opened: list[tuple[Any, Watched]] = []

    def open_page(**options: Any) -> Watched:
        opened.append(_open(browser, base_url, **options))
        return opened[-1][1]

    yield open_page
    problems = [p for _, w in opened for p in w.unexpected()]
    for context, _ in opened:
        context.close()
    if problems:
        pytest.fail("problems in the browser:\n" + "\n".join(problems))


@pytest.fixture(scope="module")
def shared_page(browser: Any, base_url: str) -> Iterator[Watched]:
    """One page for a module's tests that only look (light colour scheme): a context costs
    a few hundred milliseconds. Tests that sign in or change settings use `watched`."""
    context, page = _open(browser, base_url, color_scheme="light", viewport=DESKTOP)
    yield page
    context.close()


@pytest.fixture
def page(shared_page: Watched) -> Iterator[Watched]:
    """The module's shared page, at desktop size, with what it recorded so far forgotten;
    the teardown fails the test on any problem recorded meanwhile. Its storage is shared
    with the module's other tests that use it: they must not sign in."""
    shared_page.problems.clear()
    shared_page.expected.clear()
    shared_page.page.set_viewport_size(DESKTOP)
    yield shared_page
    shared_page.page.goto("about:blank")  # what the page still loads is this test's
    problems = shared_page.unexpected()
    shared_page.problems.clear()
    if problems:
        pytest.fail("problems in the browser:\n" + "\n".join(problems))
