"""A key's guardrails, set by the management key (POST and PATCH /keys) and enforced on a
real server: which models and providers the key may use, the data policy forced onto its
requests, and a cap on max_tokens. Refusals are 403s naming the rule, in the caller's
dialect; the simulated providers show what went upstream, and what did not.

Catalog: alpha keeps no data (zero data retention), beta trains on it.
- acme/paid: alpha; acme/paid:free: alpha, free;
- acme/duo: alpha and beta at the same prices;
- acme/beta-only: beta.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from harness import HTTP, Server, Simulator, endpoint
from limits_setup import (
    SERVER,
    chat_body,
    message,
    mgmt,
    paid_catalog,
    recorded,
    requests_of,
    start,
)


def config(sims: dict[str, Simulator]) -> dict[str, Any]:
    catalog = paid_catalog(sims)
    catalog["models"].append(
        {"id": "acme/beta-only", "name": "Acme: Beta only", "endpoints": [endpoint("beta", 1, 2)]}
    )
    return {"server": SERVER, **catalog}


@pytest.fixture(scope="module")
def srv(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("guardrails"), config(sims))
    yield server
    server.stop()


def guarded(srv: Server, rails: dict[str, Any]) -> str:
    """A new key created with these guardrails."""
    created = srv.create_key("guarded", guardrails=rails)
    assert created["data"]["guardrails"] == {**EMPTY, **rails}
    return str(created["key"])


def patched(srv: Server, rails: dict[str, Any] | None) -> str:
    """A new key given these guardrails afterwards, by PATCH."""
    created = srv.create_key("patched")
    url = srv.base_url + f"/keys/{created['data']['hash']}"
    r = HTTP.patch(url, json={"guardrails": rails}, headers=mgmt(srv))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["guardrails"] == ({**EMPTY, **rails} if rails else None)
    return str(created["key"])


EMPTY = {
    "allowed_models": None,
    "allowed_providers": None,
    "zdr": False,
    "data_collection": None,
    "max_tokens": None,
}


def ask(srv: Server, key: str, model: str, **extra: Any) -> Any:
    return srv.post("/chat/completions", chat_body(model, max_tokens=5) | extra, key=key)


def refused(r: Any, rule: str) -> str:
    """The 403 of a guardrail: its message names the rule (returned)."""
    assert r.status_code == 403, r.text
    assert r.json()["error"]["metadata"]["guardrail"] == rule
    text = message(r.json())
    assert f"'{rule}'" in text, text
    return text


def test_allowed_models(srv: Server, sims: dict[str, Simulator]) -> None:
    key = guarded(srv, {"allowed_models": ["acme/paid"]})
    assert ask(srv, key, "acme/paid").status_code == 200
    assert ask(srv, key, "acme/paid:free").status_code == 200  # a variant of an allowed model
    served = requests_of(sims["alpha"])
    assert "acme/duo" in refused(ask(srv, key, "acme/duo"), "allowed_models")
    fallback = ask(srv, key, "acme/paid", models=["acme/paid", "acme/duo"])
    assert "acme/duo" in refused(fallback, "allowed_models")
    assert requests_of(sims["alpha"]) == served and requests_of(sims["beta"]) == 0

    client = openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(
            model="acme/duo", messages=[{"role": "user", "content": "x"}]
        )
    assert "allowed_models" in denied.value.message
    # Anthropic's envelope on /messages
    r = srv.post("/messages", {**chat_body("acme/duo"), "max_tokens": 5}, key=key)
    assert r.status_code == 403
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert "allowed_models" in body["error"]["message"]
    claude = anthropic.Anthropic(base_url=srv.url("/api"), api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as blocked:
        claude.messages.create(
            model="acme/duo", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert "allowed_models" in blocked.value.message

    only_free = guarded(srv, {"allowed_models": ["acme/paid:free"]})
    assert ask(srv, only_free, "acme/paid:free").status_code == 200
    refused(ask(srv, only_free, "acme/paid"), "allowed_models")


def test_allowed_providers_never_fall_back_elsewhere(
    srv: Server, sims: dict[str, Simulator]
) -> None:
    key = patched(srv, {"allowed_providers": ["beta"]})
    for _ in range(4):
        r = ask(srv, key, "acme/duo")
        assert r.status_code == 200 and r.json()["provider"] == "Beta", r.text
    assert requests_of(sims["alpha"]) == 0
    sims["beta"].configure(fail_rate=1.0, status=500)
    failed = ask(srv, key, "acme/duo")
    assert failed.status_code >= 500, failed.text
    record = recorded(srv, failed.headers["x-generation-id"], key=key)
    assert [a["provider_name"] for a in record["provider_responses"]] == ["Beta"]
    assert requests_of(sims["alpha"]) == 0  # alpha received nothing, even as a fallback
    # without the guardrail the same request falls back to alpha
    assert ask(srv, srv.api_key or "", "acme/duo").json()["provider"] == "Alpha"
    # the request may narrow the providers, never widen them
    assert "alpha" in refused(
        ask(srv, key, "acme/duo", provider={"only": ["alpha"]}), "allowed_providers"
    )
    refused(ask(srv, key, "acme/paid"), "allowed_providers")  # alpha's model only


@pytest.mark.parametrize(
    ("rails", "asks"),
    [
        ({"zdr": True}, {}),
        ({"data_collection": "deny"}, {"data_collection": "allow"}),
    ],
    ids=["zdr", "data_collection"],
)
def test_data_policy_is_forced(
    srv: Server, sims: dict[str, Simulator], rails: dict[str, Any], asks: dict[str, Any]
) -> None:
    key = guarded(srv, rails)
    rule = next(iter(rails))
    for _ in range(3):  # the request prefers beta; only alpha complies
        r = ask(srv, key, "acme/duo", provider={"order": ["beta"], **asks})
        assert r.status_code == 200 and r.json()["provider"] == "Alpha", r.text
        assert recorded(srv, r.json()["id"], key=key)["provider_name"] == "Alpha"
    assert requests_of(sims["beta"]) == 0
    refused(ask(srv, key, "acme/beta-only"), rule)
    assert requests_of(sims["beta"]) == 0
    # the same request without the guardrail goes to beta
    free_hand = srv.create_key("no guardrails")["key"]
    r = ask(srv, free_hand, "acme/duo", provider={"order": ["beta"], **asks})
    assert r.json()["provider"] == "Beta"


def test_max_tokens_cap(srv: Server, sims: dict[str, Simulator]) -> None:
    key = guarded(srv, {"max_tokens": 7})
    text = refused(ask(srv, key, "acme/paid", max_tokens=8), "max_tokens")
    assert "7" in text and "8" in text
    refused(
        srv.post("/chat/completions", chat_body("acme/paid", max_completion_tokens=9), key=key),
        "max_tokens",
    )
    assert requests_of(sims["alpha"]) == 0
    r = srv.post(
        "/chat/completions",
        chat_body("acme/paid", "one two three four five six seven eight"),
        key=key,
    )
    assert r.status_code == 200, r.text
    sent = sims["alpha"].last_body()
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 7
    assert r.json()["usage"]["completion_tokens"] == 7
    assert ask(srv, key, "acme/paid", max_tokens=5).status_code == 200
    sent = sims["alpha"].last_body()
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 5
    r = srv.post("/messages", {**chat_body("acme/paid"), "max_tokens": 8}, key=key)
    assert r.status_code == 403 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "permission_error"
    assert "max_tokens" in r.json()["error"]["message"]


def test_get_key_shows_the_guardrails_and_patch_lifts_them(srv: Server) -> None:
    rails = {
        "allowed_models": ["acme/paid", "acme/duo"],
        "allowed_providers": ["alpha"],
        "zdr": True,
        "data_collection": "deny",
        "max_tokens": 50,
    }
    created = srv.create_key("every rule", guardrails=rails)
    key, key_hash = created["key"], created["data"]["hash"]
    assert srv.get("/key", key=key).json()["data"]["guardrails"] == rails
    one = HTTP.get(srv.base_url + f"/keys/{key_hash}", headers=mgmt(srv)).json()["data"]
    assert one["guardrails"] == rails
    listed = HTTP.get(srv.base_url + "/keys", headers=mgmt(srv)).json()["data"]
    assert next(k for k in listed if k["hash"] == key_hash)["guardrails"] == rails
    refused(ask(srv, key, "acme/paid:free", max_tokens=60), "max_tokens")
    url = srv.base_url + f"/keys/{key_hash}"
    lifted = HTTP.patch(url, json={"guardrails": None}, headers=mgmt(srv))
    assert lifted.status_code == 200 and lifted.json()["data"]["guardrails"] is None
    assert srv.get("/key", key=key).json()["data"]["guardrails"] is None
    assert ask(srv, key, "acme/beta-only", max_tokens=60).status_code == 200


@pytest.mark.parametrize(
    ("rails", "field"),
    [
        ({"max_tokens": 0}, "guardrails.max_tokens"),
        ({"max_tokens": "many"}, "guardrails.max_tokens"),
        ({"allowed_models": "acme/paid"}, "guardrails.allowed_models"),
        ({"allowed_models": []}, "guardrails.allowed_models"),
        ({"allowed_models": ["acme/paid", 5]}, "guardrails.allowed_models"),
        ({"allowed_providers": [""]}, "guardrails.allowed_providers"),
        ({"zdr": "yes"}, "guardrails.zdr"),
        ({"data_collection": "maybe"}, "guardrails.data_collection"),
        ({"budget": 5}, "guardrails.budget"),
        ("everything", "guardrails"),
    ],
)
def test_bad_guardrails_are_400_naming_the_field(srv: Server, rails: Any, field: str) -> None:
    r = HTTP.post(
        srv.base_url + "/keys", json={"name": "bad", "guardrails": rails}, headers=mgmt(srv)
    )
    assert r.status_code == 400 and field in message(r.json()), r.text
    key_hash = srv.create_key("to patch")["data"]["hash"]
    url = srv.base_url + f"/keys/{key_hash}"
    r = HTTP.patch(url, json={"guardrails": rails}, headers=mgmt(srv))
    assert r.status_code == 400 and field in message(r.json()), r.text
    assert HTTP.get(url, headers=mgmt(srv)).json()["data"]["guardrails"] is None
