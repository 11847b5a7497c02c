"""The interactive pages as the server renders them: /chat, /account, /account/sign-in,
/account/generation and the model page's Playground tab. Fast, in process (Starlette's
TestClient runs the app's lifespan); HTML parsed with the standard library. What the
browser does with them (streaming, localStorage, sign-in) is tested with Playwright in
test_web_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from crossroads.app import create_app
from crossroads.gateway import Gateway
from crossroads.settings import Settings

STATIC = Path(__file__).parent.parent / "src" / "crossroads" / "web" / "static"
SCRIPTS = ("stream.js", "chat.js", "account.js", "playground.js")
DEAD = "http://127.0.0.1:9/v1"  # nothing is called: pages only read the catalog


class Page(HTMLParser):
    """The elements of a page by id, every element's attributes, labels and scripts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: dict[str, dict[str, str | None]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.label_for: set[str] = set()
        self.options: dict[str, list[dict[str, str | None]]] = {}
        self._select: str | None = None
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        found["<tag>"] = tag
        self.tags.append((tag, found))
        if found.get("id"):
            assert found["id"] not in self.ids, f"duplicate id {found['id']}"
            self.ids[str(found["id"])] = found
        if tag == "label" and found.get("for"):
            self.label_for.add(str(found["for"]))
        if tag == "select":
            self._select = found.get("id")
            self.options[str(self._select)] = []
        if tag == "option" and self._select:
            self.options[self._select].append(found)

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def scripts(self) -> list[str]:
        return [str(a["src"]) for t, a in self.tags if t == "script" and a.get("src")]

    def fields(self) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t in ("input", "select", "textarea") and a.get("type") != "hidden"
        ]

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def config(*, usable: bool = True) -> dict[str, Any]:
    locked = {"slug": "locked", "name": "Locked", "api": "openai", "base_url": DEAD}
    locked["api_key_env"] = "LOCKED_WEB_TEST_API_KEY"
    providers = [locked]
    models: list[dict[str, Any]] = [
        {"id": "acme/locked", "name": "Acme: Locked", "endpoints": [{"provider": "locked"}]}
    ]
    if usable:
        providers += [
            {"slug": "alpha", "name": "Alpha", "api": "openai", "base_url": DEAD},
            {"slug": "beta", "name": "Beta", "api": "openai", "base_url": DEAD},
        ]
        models += [
            {
                "id": "acme/duo",
                "name": "Acme: Duo <b>",
                "endpoints": [
                    {"provider": "alpha", "quantization": "fp8"},
                    {"provider": "beta"},
                    {"provider": "locked"},
                ],
            },
            {"id": "acme/one", "name": "Acme: One", "endpoints": [{"provider": "alpha"}]},
            {
                "id": "acme/painter",
                "name": "Acme: Painter",
                "architecture": {"input_modalities": ["text"], "output_modalities": ["image"]},
                "endpoints": [{"provider": "alpha"}],
            },
        ]
    return {"providers": providers, "models": models}


def client_for(tmp: Path, conf: dict[str, Any]) -> Iterator[TestClient]:
    management = "sk-cr-v1-" + "m" * 40
    settings = Settings.load({"data_dir": str(tmp), "management_key": management}, env={})
    app = create_app(settings, Gateway.build(settings, conf))
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from client_for(tmp_path_factory.mktemp("web"), config())


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A server where no provider is usable."""
    yield from client_for(tmp_path_factory.mktemp("bare"), config(usable=False))


def page(client: TestClient, path: str) -> Page:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return Page(r.text)


def assert_labelled(p: Page) -> None:
    """Every visible form field has a <label for> (or an aria-label)."""
    for field in p.fields():
        assert field.get("id") in p.label_for or field.get("aria-label"), field


def test_chat_offers_the_usable_text_models(web: TestClient) -> None:
    p = page(web, "/chat")
    for element in (
        "chat-form",
        "chat-model",
        "chat-prompt",
        "chat-send",
        "chat-stop",
        "chat-temperature",
        "chat-max-tokens",
        "chat-reasoning-effort",
        "messages",
        "conversations",
        "new-conversation",
        "sign-in-notice",
    ):
        assert element in p.ids, element
    assert [o["value"] for o in p.options["chat-model"]] == ["acme/duo", "acme/one"]
    assert "Acme: Duo <b> (acme/duo)" in p.all_text  # the name is text, not markup
    assert [o["value"] for o in p.options["chat-reasoning-effort"]][1:] == [
        "none",
        "minimal",
        "low",
        "medium",
        "high",
    ]
    assert p.ids["messages"]["aria-live"] == "polite"
    assert_labelled(p)
    assert p.scripts()[-2:] == ["/static/stream.js", "/static/chat.js"]
    assert "no-provider" not in p.ids


def test_chat_preselects_the_model_asked_for(web: TestClient) -> None:
    p = page(web, "/chat?model=ACME/one")
    selected = [o["value"] for o in p.options["chat-model"] if "selected" in o]
    assert selected == ["acme/one"]
    assert "model-unavailable" not in p.ids
    p = page(web, "/chat")
    assert [o["value"] for o in p.options["chat-model"] if "selected" in o] == ["acme/duo"]


@pytest.mark.parametrize("wanted", ["acme/locked", "acme/nothing", "acme/painter"])
def test_chat_says_when_the_model_asked_for_is_not_usable(web: TestClient, wanted: str) -> None:
    p = page(web, f"/chat?model={wanted}")
    assert "model-unavailable" in p.ids
    assert f"The model {wanted} is not usable here" in p.all_text


def test_chat_without_a_usable_provider_says_how_to_get_one(bare: TestClient) -> None:
    p = page(bare, "/chat")
    assert "no-provider" in p.ids
    assert "chat-form" not in p.ids
    text = p.all_text
    assert "LOCKED_WEB_TEST_API_KEY" in text
    assert "crossroads local" in text
    assert "config file" in text
    assert "/static/chat.js" not in p.scripts()


def test_playground_form_with_the_model_s_providers(web: TestClient) -> None:
    p = page(web, "/acme/duo/playground")
    for element in (
        "playground-form",
        "provider",
        "temperature",
        "max-tokens",
        "reasoning-effort",
        "prompt",
        "send",
        "stop",
        "answer",
        "reasoning",
        "reasoning-text",
        "usage",
        "playground-error",
        "playground-status",
        "sign-in-notice",
    ):
        assert element in p.ids, element
    assert p.ids["playground-form"]["data-model"] == "acme/duo"
    providers = {o["value"]: o for o in p.options["provider"]}
    assert list(providers) == ["", "alpha", "beta", "locked"]  # "": routed, with fallbacks
    assert "disabled" in providers["locked"]  # not usable here: cannot be picked
    assert "disabled" not in providers["alpha"] and "disabled" not in providers["beta"]
    assert p.ids["reasoning"]["<tag>"] == "details"  # collapsible, apart from the answer
    assert "hidden" in p.ids["reasoning"]
    assert_labelled(p)
    scripts = p.scripts()
    assert scripts.index("/static/stream.js") < scripts.index("/static/playground.js")


def test_playground_without_a_usable_provider_says_how_to_get_one(web: TestClient) -> None:
    p = page(web, "/acme/locked/playground")
    assert "playground-form" not in p.ids
    assert "playground-unavailable" in p.ids
    assert "no-provider" in p.ids  # the page's help: a key, `crossroads local`, a config file
    assert "LOCKED_WEB_TEST_API_KEY" in p.all_text
    assert "/static/playground.js" not in p.scripts()


def test_sign_in_form_never_submits_the_key(web: TestClient) -> None:
    p = page(web, "/account/sign-in")
    for element in ("sign-in-form", "api-key", "sign-in-submit", "sign-in-error", "sign-out"):
        assert element in p.ids, element
    key = p.ids["api-key"]
    assert key["type"] == "password"
    assert "name" not in key  # without a name a field is never part of a submitted form
    assert p.ids["sign-in-form"].get("method") == "post"  # nor of an address
    assert "api-key" in p.label_for
    assert_labelled(p)
    assert p.scripts()[-2:] == ["/static/stream.js", "/static/account.js"]


def test_account_page_is_a_shell_for_the_key_s_data(web: TestClient) -> None:
    p = page(web, "/account")
    for element in (
        "account",
        "account-signed-out",
        "account-details",
        "account-error",
        "sign-out",
        "key-info",
        "key-guardrails",
        "management",
        "credits",
        "activity-table",
        "keys-table",
        "generations-table",
        "generations-empty",
        "generations-refresh",
    ):
        assert element in p.ids, element
    assert "hidden" in p.ids["management"]  # shown by account.js for a management key only
    headers = re.findall(r"<th[^>]*>([^<]+)</th>", web.get("/account").text)
    for column in ("Model", "Provider", "Cost", "Latency", "Record"):
        assert column in headers, column
    assert p.scripts()[-2:] == ["/static/stream.js", "/static/account.js"]


def test_generation_page(web: TestClient) -> None:
    p = page(web, "/account/generation?id=gen-123")
    for element in ("generation", "generation-id", "generation-facts", "attempts-table"):
        assert element in p.ids, element
    assert "gen-123" not in web.get("/account/generation?id=gen-123").text  # read by JS


@pytest.mark.parametrize("name", [*SCRIPTS, "interactive.css"])
def test_the_static_files_are_served(web: TestClient, name: str) -> None:
    r = web.get(f"/static/{name}")
    assert r.status_code == 200
    assert r.text == (STATIC / name).read_text()
    kind = "javascript" if name.endswith(".js") else "css"
    assert kind in r.headers["content-type"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_render_data_as_text_only(name: str) -> None:
    """No data reaches the page as markup: no innerHTML and the like anywhere."""
    source = (STATIC / name).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, f"{name} uses {sink}"


def test_the_key_is_sent_as_a_bearer_token_only() -> None:
    """stream.js sends the key in the Authorization header; no script builds a URL with it."""
    stream = (STATIC / "stream.js").read_text()
    assert "Authorization = `Bearer ${apiKey}`" in stream
    for name in SCRIPTS:
        source = (STATIC / name).read_text()
        assert not re.search(r"[?&](api_)?key=", source), name
