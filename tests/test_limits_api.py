"""A key's spending limit and its per-minute rates, end to end: real `crossroads serve` and
`crossroads simulate` processes, raw HTTP and the official SDKs.

The catalog (`limits_setup.paid_catalog`) has `acme/flat` at 0 USD a prompt token and
100 USD a million completion tokens: a request's worst case is exactly max_tokens x 1e-4 USD,
whatever its prompt, and the simulator's answer of n words costs n x 1e-4 USD.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openrouter import OpenRouter, errors

from crossroads.accounting.money import to_pico
from harness import HTTP, Server, Simulator
from limits_setup import (
    SERVER,
    bearer,
    chat_body,
    credits,
    fresh_minute,
    key_data,
    ledger_charges,
    message,
    mgmt,
    paid_catalog,
    recorded,
    requests_of,
    start,
    waited,
)

TOKEN = 100 / 1e6  # USD per completion token of acme/flat
TEN_WORDS = "one two three four five six seven eight nine ten"  # alpha says: + 10 words


@pytest.fixture(scope="module")
def srv(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("limits"), {"server": SERVER, **paid_catalog(sims)})
    yield server
    server.stop()


def new_key(srv: Server, **fields: Any) -> tuple[str, str]:
    created = srv.create_key("limited", **fields)
    return created["key"], created["data"]["hash"]


# one refused request per inbound API, streamed and not: (path, body, Anthropic's envelope)
DIALECTS = [
    ("/chat/completions", chat_body("acme/flat", max_tokens=20), False),
    ("/messages", {**chat_body("acme/flat"), "max_tokens": 20}, True),
    ("/responses", {"model": "acme/flat", "input": "hello", "max_output_tokens": 20}, False),
    ("/completions", {"model": "acme/flat", "prompt": "hello", "max_tokens": 20}, False),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("path", "body", "anthropic_envelope"),
    DIALECTS,
    ids=["chat", "messages", "responses", "completions"],
)
def test_key_limit_is_a_402_in_the_callers_dialect(
    srv: Server,
    sims: dict[str, Simulator],
    path: str,
    body: dict[str, Any],
    anthropic_envelope: bool,
    stream: bool,
) -> None:
    key, _ = new_key(srv, limit=0.001)  # a worst case of 20 tokens is 0.002 USD
    before = requests_of(sims["alpha"])
    r = srv.post(path, {**body, "stream": stream}, key=key)
    assert r.status_code == 402, r.text
    assert r.headers["content-type"].startswith("application/json")
    payload = r.json()
    if anthropic_envelope:
        assert payload["type"] == "error" and payload["error"]["type"] == "billing_error"
        text = payload["error"]["message"]
    else:
        assert payload["error"]["code"] == 402
        assert payload["error"]["metadata"]["limit"] == "key-limit"
        text = message(payload)
    assert "Key limit exceeded" in text and "may cost up to $0.002" in text, text
    assert "up to 20 output tokens" in text and "$0.001 left" in text, text
    assert requests_of(sims["alpha"]) == before  # nothing went upstream
    # the same request within the limit is served
    smaller = {k: (5 if "max" in k else v) for k, v in body.items()}
    assert srv.post(path, {**smaller, "stream": stream}, key=key).status_code == 200


def test_the_limit_counts_what_was_spent_to_the_pico(srv: Server) -> None:
    key, key_hash = new_key(srv, limit=0.001, limit_reset="daily")
    spent = srv.post(
        "/chat/completions", chat_body("acme/flat", "hi", max_tokens=5), key=key
    ).json()
    # "alpha says: hi": 3 completion tokens
    assert to_pico(spent["usage"]["cost"]) == to_pico(3 * TOKEN)
    data = key_data(srv, key_hash)
    assert to_pico(data["usage"]) == to_pico(data["usage_daily"]) == to_pico(3 * TOKEN)
    assert to_pico(data["limit_remaining"]) == to_pico(0.001 - 3 * TOKEN)
    # 0.0007 USD left: a worst case of 8 tokens (0.0008) is refused, one of 7 is served
    refused = srv.post("/chat/completions", chat_body("acme/flat", max_tokens=8), key=key)
    assert refused.status_code == 402
    text = message(refused.json())
    assert "may cost up to $0.0008" in text and "$0.0007 left of its daily limit of $0.001" in text
    served = srv.post("/chat/completions", chat_body("acme/flat", TEN_WORDS, max_tokens=7), key=key)
    assert served.status_code == 200, served.text
    assert served.json()["usage"]["completion_tokens"] == 7
    assert to_pico(key_data(srv, key_hash)["usage_daily"]) == to_pico(0.001)
    assert (
        srv.post("/chat/completions", chat_body("acme/flat", max_tokens=1), key=key).status_code
        == 402
    )


def test_sdks_raise_their_payment_errors(srv: Server) -> None:
    key, _ = new_key(srv, limit=0.0005)
    client = openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0)
    asks: list[Any] = [
        lambda: client.chat.completions.create(
            model="acme/flat", messages=[{"role": "user", "content": "x"}], max_tokens=20
        ),
        lambda: client.chat.completions.create(
            model="acme/flat",
            messages=[{"role": "user", "content": "x"}],
            max_tokens=20,
            stream=True,
        ),
        lambda: client.responses.create(model="acme/flat", input="x", max_output_tokens=20),
        lambda: client.completions.create(model="acme/flat", prompt="x", max_tokens=20),
    ]
    for ask in asks:
        with pytest.raises(openai.APIStatusError) as refused:
            ask()
        assert refused.value.status_code == 402
        assert "Key limit exceeded" in refused.value.message
        assert "$0.0005 left" in refused.value.message
    claude = anthropic.Anthropic(base_url=srv.url("/api"), api_key=key, max_retries=0)
    for streamed in (False, True):
        with pytest.raises(anthropic.PaymentRequiredError) as paid:
            claude.messages.create(
                model="acme/flat",
                max_tokens=20,
                messages=[{"role": "user", "content": "x"}],
                stream=streamed,
            )
        assert paid.value.status_code == 402
        assert paid.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
        assert "$0.0005 left" in paid.value.message
    # under the limit the same SDK is served
    ok = client.chat.completions.create(
        model="acme/flat", messages=[{"role": "user", "content": "x"}], max_tokens=5
    )
    assert ok.usage is not None and ok.usage.completion_tokens == 3


def test_concurrent_requests_never_pass_the_limit(srv: Server, sims: dict[str, Simulator]) -> None:
    n = 3
    worst = 10 * TOKEN  # max_tokens 10; every answer is 10 tokens: it costs the worst case
    key, key_hash = new_key(srv, limit=n * worst)
    sims["alpha"].configure(latency_ms=150)  # every request in flight at once
    body = chat_body("acme/flat", TEN_WORDS, max_tokens=10)

    def ask(i: int) -> httpx.Response:
        streamed = i % 2 == 1
        if not streamed:
            return client.post(srv.base_url + "/chat/completions", json=body, headers=bearer(key))
        return client.post(
            srv.base_url + "/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
            headers=bearer(key),
        )

    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=40)) as client:
        with ThreadPoolExecutor(10 * n) as pool:
            answers = list(pool.map(ask, range(10 * n)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * n + [402] * (9 * n), statuses
    costs = [_cost(r) for r in answers if r.status_code == 200]
    assert all(to_pico(c) == to_pico(worst) for c in costs), costs
    assert sum(to_pico(c) for c in costs) == to_pico(n * worst)
    data = key_data(srv, key_hash)
    assert to_pico(data["usage"]) == to_pico(n * worst) <= to_pico(data["limit"])
    assert to_pico(data["limit_remaining"]) == 0
    assert requests_of(sims["alpha"]) == n  # the refused ones never reached the provider
    assert not ledger_charges(srv)  # no balance in force: nothing drawn from it
    # ... yet the account's usage holds what was spent, as OpenRouter's `total_usage` does
    waited(lambda: to_pico(credits(srv)["total_usage"]) >= n * worst, what="GET /credits")


def _cost(r: httpx.Response) -> float:
    """usage.cost of a whole answer, or of a stream's last chunk with usage."""
    if r.headers["content-type"].startswith("application/json"):
        return float(r.json()["usage"]["cost"])
    events = [
        line.removeprefix("data: ") for line in r.text.splitlines() if line.startswith("data: {")
    ]
    last = httpx.Response(200, content=events[-1]).json()
    return float(last["usage"]["cost"])


def test_requests_per_minute_set_at_creation(srv: Server) -> None:
    created = srv.create_key("two a minute", requests_per_minute=2)
    key = created["key"]
    assert created["data"]["requests_per_minute"] == 2
    me = srv.get("/key", key=key).json()["data"]
    assert me["rate_limit"]["requests"] == 2 and me["rate_limit"]["interval"] == "1m"
    fresh_minute()
    for _ in range(2):
        assert srv.post("/chat/completions", chat_body("acme/paid"), key=key).status_code == 200
    r = srv.post("/chat/completions", chat_body("acme/paid"), key=key)
    assert r.status_code == 429
    assert "requests-per-minute" in message(r.json()) and "2 requests a minute" in message(r.json())
    assert r.json()["error"]["metadata"]["limit"] == "requests-per-minute"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-limit"] == "2" and r.headers["x-ratelimit-remaining"] == "0"
    client = openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="acme/paid", messages=[{"role": "user", "content": "x"}]
        )
    # another key is not limited by this one's rate
    assert srv.chat("acme/paid").status_code == 200


def test_tokens_per_minute_set_by_patch(srv: Server) -> None:
    key, key_hash = new_key(srv)
    url = srv.base_url + f"/keys/{key_hash}"
    patched = HTTP.patch(url, json={"tokens_per_minute": 20}, headers=mgmt(srv))
    assert patched.status_code == 200 and patched.json()["data"]["tokens_per_minute"] == 20
    fresh_minute()
    served = 0
    for _ in range(10):  # each request is ~10 tokens (prompt and answer)
        r = srv.post("/chat/completions", chat_body("acme/paid", "a b c"), key=key)
        if r.status_code != 200:
            break
        served += 1
    assert r.status_code == 429 and 1 <= served <= 2, (served, r.text)
    assert "tokens-per-minute" in message(r.json()) and r.headers["x-ratelimit-limit"] == "20"
    assert "retry-after" in r.headers
    # lifted: served again at once
    lifted = HTTP.patch(url, json={"tokens_per_minute": None}, headers=mgmt(srv))
    assert lifted.json()["data"]["tokens_per_minute"] is None
    assert srv.post("/chat/completions", chat_body("acme/paid"), key=key).status_code == 200
    # and a rate of requests set by PATCH as well
    HTTP.patch(url, json={"requests_per_minute": 1}, headers=mgmt(srv)).raise_for_status()
    assert srv.post("/chat/completions", chat_body("acme/paid"), key=key).status_code == 200
    assert srv.post("/chat/completions", chat_body("acme/paid"), key=key).status_code == 429


@pytest.mark.parametrize(
    "fields",
    [
        {"requests_per_minute": 0},
        {"requests_per_minute": "ten"},
        {"tokens_per_minute": -5},
        {"tokens_per_minute": 1.5},
    ],
)
def test_bad_rates_are_400_naming_the_field(srv: Server, fields: dict[str, Any]) -> None:
    r = HTTP.post(srv.base_url + "/keys", json={"name": "bad", **fields}, headers=mgmt(srv))
    assert r.status_code == 400 and next(iter(fields)) in message(r.json()), r.text
    _, key_hash = new_key(srv)
    r = HTTP.patch(srv.base_url + f"/keys/{key_hash}", json=fields, headers=mgmt(srv))
    assert r.status_code == 400 and next(iter(fields)) in message(r.json()), r.text


def test_openrouter_sdk_manages_limited_keys(srv: Server) -> None:
    with OpenRouter(api_key=srv.management_key, server_url=srv.base_url) as admin:
        created = admin.api_keys.create(name="sdk limited", limit=0.002, limit_reset="weekly")
        key, key_hash = created.key, created.data.hash
        assert created.data.limit == 0.002 and created.data.limit_reset == "weekly"
        assert created.data.limit_remaining == 0.002 and created.data.usage == 0
        assert key_hash in {k.hash for k in admin.api_keys.list().data}

        served = srv.post(
            "/chat/completions", chat_body("acme/flat", "hi", max_tokens=5), key=key
        ).json()
        cost = served["usage"]["cost"]
        got = admin.api_keys.get(hash=key_hash).data
        assert to_pico(got.usage) == to_pico(got.usage_weekly) == to_pico(cost)
        assert to_pico(got.limit_remaining) == to_pico(0.002) - to_pico(cost)
        with OpenRouter(api_key=key, server_url=srv.base_url) as own:
            mine = own.api_keys.get_current_key_metadata().data
            assert mine.limit == 0.002 and to_pico(mine.usage) == to_pico(cost)
            assert to_pico(mine.limit_remaining) == to_pico(0.002) - to_pico(cost)

        # lowered below what was spent: refused at once
        updated = admin.api_keys.update(hash=key_hash, limit=0.0002)
        assert updated.data.limit == 0.0002 and updated.data.limit_remaining == 0
        r = srv.post("/chat/completions", chat_body("acme/flat", max_tokens=1), key=key)
        assert r.status_code == 402
        raised = admin.api_keys.update(hash=key_hash, limit=None, limit_reset=None)
        assert raised.data.limit is None and raised.data.limit_remaining is None
        last = srv.post("/chat/completions", chat_body("acme/flat"), key=key)
        assert last.status_code == 200
        recorded(srv, last.json()["id"], key)  # total_usage is the records': wait for this one

        balance = admin.credits.get_credits().data
        raw = credits(srv)
        assert balance.total_credits == raw["total_credits"] == 0
        assert balance.total_usage == raw["total_usage"]

        assert admin.api_keys.delete(hash=key_hash).DELETED is True
        with pytest.raises(errors.OpenRouterError) as gone:
            admin.api_keys.get(hash=key_hash)
        assert gone.value.status_code == 404
    assert srv.post("/chat/completions", chat_body("acme/flat"), key=key).status_code == 401
