"""GET /activity (usage per UTC day, model and endpoint) and app attribution (HTTP-Referer
and X-Title -> the generation's app_id), end to end on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openrouter import OpenRouter

from crossroads.accounting.money import to_pico
from harness import HTTP, Server, Simulator
from limits_setup import (
    SERVER,
    bearer,
    chat_body,
    message,
    mgmt,
    paid_catalog,
    recorded,
    start,
    stored,
    waited,
)


@pytest.fixture(scope="module")
def srv(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("activity"), {"server": SERVER, **paid_catalog(sims)})
    yield server
    server.stop()


def activity(srv: Server, query: str = "", headers: dict[str, str] | None = None) -> Any:
    return HTTP.get(
        srv.base_url + "/activity" + query, headers=mgmt(srv) if headers is None else headers
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_activity_rows_match_the_requests(srv: Server) -> None:
    created = srv.create_key("activity")
    key, key_hash = created["key"], created["data"]["hash"]
    asked = [
        ("acme/paid", None, "one"),
        ("acme/paid", None, "one two"),
        ("acme/paid", None, "one two three"),
        ("acme/duo", "beta", "four"),
        ("acme/duo", "beta", "four five six"),
        ("acme/duo", "alpha", "seven"),
    ]
    expected: dict[tuple[str, str], dict[str, int]] = {}
    for model, only, words in asked:
        extra = {"provider": {"only": [only]}} if only else {}
        r = srv.post("/chat/completions", chat_body(model, words, max_tokens=9, **extra), key=key)
        assert r.status_code == 200, r.text
        body = r.json()
        row = expected.setdefault(
            (model, body["provider"]),
            {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "usage": 0},
        )
        row["requests"] += 1
        row["prompt_tokens"] += body["usage"]["prompt_tokens"]
        row["completion_tokens"] += body["usage"]["completion_tokens"]
        row["usage"] += to_pico(body["usage"]["cost"])
    assert set(expected) == {("acme/paid", "Alpha"), ("acme/duo", "Beta"), ("acme/duo", "Alpha")}

    def rows(query: str) -> list[dict[str, Any]] | None:
        r = activity(srv, query)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        return data if sum(d["requests"] for d in data) == len(asked) else None

    data = waited(lambda: rows(f"?api_key_hash={key_hash}"), what="the activity rows")
    got = {
        (d["model"], d["provider_name"]): {
            "requests": d["requests"],
            "prompt_tokens": d["prompt_tokens"],
            "completion_tokens": d["completion_tokens"],
            "usage": to_pico(d["usage"]),
        }
        for d in data
    }
    assert got == expected
    for d in data:
        assert (
            d["date"] == today() and d["reasoning_tokens"] == 0 and d["byok_usage_inference"] == 0
        )
        assert d["model_permaslug"] == d["model"]
        assert d["endpoint_id"].startswith(d["model"] + "@")
    assert len({d["endpoint_id"] for d in data}) == 3  # one row per endpoint

    assert rows(f"?api_key_hash={key_hash}&date={today()}") == data
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert activity(srv, f"?api_key_hash={key_hash}&date={yesterday}").json()["data"] == []
    everyone = activity(srv).json()["data"]  # every key's: at least this key's rows
    assert sum(d["requests"] for d in everyone) >= len(asked)
    workspace = activity(srv, f"?api_key_hash={key_hash}&group_by=workspace").json()["data"]
    assert len(workspace) == 3 and all(d["workspace_id"] for d in workspace)


def test_openrouter_sdk_reads_activity(srv: Server) -> None:
    created = srv.create_key("activity through the sdk")
    key, key_hash = created["key"], created["data"]["hash"]
    for words in ("one", "one two"):
        r = srv.post("/chat/completions", chat_body("acme/paid", words, max_tokens=9), key=key)
        assert r.status_code == 200, r.text
    waited(
        lambda: (
            sum(d["requests"] for d in activity(srv, f"?api_key_hash={key_hash}").json()["data"])
            == 2
        ),
        what="the activity rows",
    )
    raw = activity(srv, f"?api_key_hash={key_hash}").json()["data"]
    with OpenRouter(api_key=srv.management_key, server_url=srv.base_url) as admin:
        sdk = admin.analytics.get_user_activity(request={"api_key_hash": key_hash}).data
    assert [(a.model, a.provider_name, a.requests, a.usage) for a in sdk] == [
        (d["model"], d["provider_name"], d["requests"], d["usage"]) for d in raw
    ]
    assert sdk[0].requests == 2 and sdk[0].completion_tokens == raw[0]["completion_tokens"]


@pytest.mark.parametrize(
    "query",
    [
        "?date=2024-02-30",
        "?date=yesterday",
        "?date=2024-1-5",
        f"?date={(datetime.now(UTC).date() - timedelta(days=45)).isoformat()}",
        f"?date={(datetime.now(UTC).date() + timedelta(days=1)).isoformat()}",
        "?api_key_hash=not-a-hash",
        "?group_by=model",
    ],
)
def test_bad_activity_queries_are_400(srv: Server, query: str) -> None:
    r = activity(srv, query)
    assert r.status_code == 400, r.text
    name = query[1:].split("=")[0]
    assert name in message(r.json()), r.text


def test_activity_needs_the_management_key(srv: Server) -> None:
    r = activity(srv, headers=bearer(srv.api_key or ""))
    assert r.status_code == 403 and r.json()["error"]["code"] == 403
    assert activity(srv, headers={}).status_code == 401
    assert activity(srv, headers=bearer("sk-cr-v1-" + "0" * 64)).status_code == 401


def app_id(srv: Server, generation_id: str) -> int:
    return waited(
        lambda: recorded(srv, generation_id)["app_id"], what=f"the app_id of {generation_id}"
    )


def attributed(srv: Server, **headers: str) -> str:
    r = srv.post("/chat/completions", chat_body("acme/paid", max_tokens=3), headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_app_attribution(srv: Server) -> None:
    first = attributed(srv, **{"HTTP-Referer": "https://Apps.Example.com/tool", "X-Title": "Tool"})
    app = app_id(srv, first)
    assert isinstance(app, int)
    # the same app: a trailing slash, a query, another title (the app keeps the last one)
    for referer in ("https://apps.example.com/tool/", "https://apps.example.com/tool?from=x"):
        again = attributed(srv, **{"HTTP-Referer": referer, "X-Title": "Tool 2"})
        assert app_id(srv, again) == app
    other = attributed(srv, **{"HTTP-Referer": "https://apps.example.com/other"})
    assert app_id(srv, other) not in (None, app)
    assert stored(srv, "SELECT url, title FROM apps WHERE id = ?", app) == [
        ("https://apps.example.com/tool", "Tool 2")
    ]

    titled = attributed(srv, **{"X-OpenRouter-Title": "No referer"})
    later = attributed(srv, **{"HTTP-Referer": "https://apps.example.com/later"})
    app_id(srv, later)  # written after the one without a referer
    record = recorded(srv, titled)
    assert record["app_id"] is None and record["app_title"] == "No referer"
    assert stored(srv, "SELECT app_id FROM generations WHERE id = ?", titled) == [(None,)]
