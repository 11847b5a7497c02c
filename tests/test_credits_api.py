"""The account balance and zero-completion insurance, end to end: credits added to a running
server's database (`LedgerStore.add_credit`, and `crossroads credits add` once), paid
requests drawing them down, GET /credits and the ledger agreeing to the pico-USD, and
`credits: {enforce: true}` in the config.

Prices (`limits_setup.paid_catalog`): acme/paid 1/2 USD per million tokens, acme/flat 0/100
(an answer of n words costs n x 1e-4 USD, the worst case of max_tokens m is m x 1e-4).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crossroads.accounting.money import to_pico, to_usd
from harness import HTTP, Server, Simulator
from limits_setup import (
    SERVER,
    add_credits,
    chat_body,
    credits,
    ledger_charges,
    message,
    paid_catalog,
    recorded,
    start,
    stored,
    waited,
)

TOKEN = to_pico(100 / 1e6)  # pico-USD per completion token of acme/flat
TEN_WORDS = "one two three four five six seven eight nine ten"


@pytest.fixture(scope="module")
def srv(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("credits"), {"server": SERVER, **paid_catalog(sims)})
    yield server
    server.stop()


def usage_pico(srv: Server) -> int:
    return to_pico(credits(srv)["total_usage"])


def left_pico(srv: Server) -> int:
    """The balance requests are held to: the credits less the charges drawn from them."""
    return to_pico(credits(srv)["total_credits"]) - sum(ledger_charges(srv).values())


def charged(srv: Server, generation_id: str) -> int:
    """The ledger's charge for a generation, once its record was written (0: none)."""
    recorded(srv, generation_id)
    waited(lambda: stored_generation(srv, generation_id), what=f"{generation_id} in the database")
    return ledger_charges(srv).get(generation_id, 0)


def stored_generation(srv: Server, generation_id: str) -> bool:
    return bool(stored(srv, "SELECT 1 FROM generations WHERE id = ?", generation_id))


def usd_text(pico: int) -> str:
    """An amount as the server's messages write it."""
    return f"${to_usd(pico):.6f}".rstrip("0").rstrip(".")


def test_a_fresh_server_does_not_enforce_the_balance(srv: Server) -> None:
    assert credits(srv) == {"total_credits": 0, "total_usage": 0}
    assert srv.get("/key").json()["data"]["is_free_tier"] is True
    r = srv.chat("acme/paid", "no credits yet", max_tokens=5)
    assert r.status_code == 200 and r.json()["usage"]["cost"] > 0
    assert charged(srv, r.json()["id"]) == 0  # nothing drawn from a balance not in force
    # but the account used it: total_usage is what was spent, enforced or not (OpenRouter's)
    shown = credits(srv)
    assert shown["total_credits"] == 0
    assert to_pico(shown["total_usage"]) == to_pico(r.json()["usage"]["cost"])


def test_credits_through_the_openrouter_sdk(srv: Server) -> None:
    """GET /credits as OpenRouter's own SDK reads it, after paid requests on a key."""
    from openrouter import OpenRouter

    key = srv.create_key("sdk-credits")["key"]
    before = usage_pico(srv)
    costs = []
    for words in ("one", "one two three"):
        r = srv.post("/chat/completions", chat_body("acme/paid", words, max_tokens=8), key)
        assert r.status_code == 200, r.text
        costs.append(to_pico(r.json()["usage"]["cost"]))
        recorded(srv, r.json()["id"], key)
    assert all(c > 0 for c in costs)
    with OpenRouter(api_key=srv.management_key, server_url=srv.base_url) as client:

        def read() -> Any:
            data = client.credits.get_credits().data
            return data if to_pico(data.total_usage) - before == sum(costs) else None

        data = waited(read, what="the SDK's credits to show the spend")
    assert to_pico(data.total_credits) == to_pico(credits(srv)["total_credits"])


def test_credits_are_drawn_down_to_the_pico_then_402(srv: Server) -> None:
    add_credits(srv, "0.0123456789")
    assert srv.get("/key").json()["data"]["is_free_tier"] is False
    before = usage_pico(srv)  # the requests made before the balance was in force included
    charged_before = sum(ledger_charges(srv).values())
    costs: dict[str, int] = {}
    for words in ("a", "a b", "a b c d e", TEN_WORDS):  # different costs, all paid
        r = srv.chat("acme/paid", words, max_tokens=12)
        assert r.status_code == 200, r.text
        costs[r.json()["id"]] = to_pico(r.json()["usage"]["cost"])
    # streamed: the cost of the final usage chunk
    with HTTP.stream(
        "POST",
        srv.base_url + "/chat/completions",
        json=chat_body("acme/paid", "streamed words", max_tokens=12, stream=True),
        headers=srv.headers(),
    ) as s:
        lines = [line for line in s.iter_lines() if line.startswith("data: {")]
        streamed = httpx.Response(200, content=lines[-1].removeprefix("data: ")).json()
    costs[streamed["id"]] = to_pico(streamed["usage"]["cost"])
    assert all(c > 0 for c in costs.values())
    waited(lambda: usage_pico(srv) - before == sum(costs.values()), what="GET /credits")
    for generation_id, cost in costs.items():  # one ledger charge per generation, the same cost
        assert charged(srv, generation_id) == cost

    # acme/flat: each answer of TEN_WORDS at max_tokens 10 costs exactly its worst case
    left = left_pico(srv)
    served = 0
    while True:
        r = srv.chat("acme/flat", TEN_WORDS, max_tokens=10)
        if r.status_code != 200:
            break
        assert to_pico(r.json()["usage"]["cost"]) == 10 * TOKEN
        costs[r.json()["id"]] = 10 * TOKEN
        served += 1
        assert served < 100
    assert served == left // (10 * TOKEN)
    assert r.status_code == 402 and r.json()["error"]["metadata"]["limit"] == "balance"
    rest = left - served * 10 * TOKEN
    text = message(r.json())
    assert "Insufficient credits" in text and "may cost up to $0.001 " in text, text
    assert f"the account has {usd_text(rest)}." in text, text
    # a request whose worst case the rest still covers is served; then nothing is
    fits = rest // TOKEN
    assert fits > 0
    r = srv.chat("acme/flat", TEN_WORDS, max_tokens=int(fits))
    assert r.status_code == 200 and to_pico(r.json()["usage"]["cost"]) == fits * TOKEN
    costs[r.json()["id"]] = fits * TOKEN
    assert srv.chat("acme/flat", TEN_WORDS, max_tokens=1).status_code == 402

    # GET /credits and the ledger agree with what the responses reported, to the pico
    def agreed() -> bool:
        usage = usage_pico(srv)
        drawn = sum(ledger_charges(srv).values()) - charged_before
        return usage - before == sum(costs.values()) == drawn

    waited(agreed, what="GET /credits and the ledger to hold every charge")
    data = credits(srv)
    assert to_pico(data["total_credits"]) == to_pico("0.0123456789")
    assert sum(ledger_charges(srv).values()) <= to_pico(data["total_credits"])
    for generation_id, cost in costs.items():
        assert charged(srv, generation_id) == cost


def test_a_failed_request_costs_nothing(srv: Server, sims: dict[str, Simulator]) -> None:
    add_credits(srv, "0.01")
    before = usage_pico(srv)
    for sim in (sims["alpha"], sims["beta"]):
        sim.configure(fail_rate=1.0, status=500)
    failed = srv.chat("acme/duo", "every provider fails", max_tokens=5)
    assert failed.status_code >= 500, failed.text
    failed_id = failed.headers["x-generation-id"]
    record = recorded(srv, failed_id)
    assert record["total_cost"] == 0 and [a["status"] for a in record["provider_responses"]] == [
        500,
        500,
    ]
    assert charged(srv, failed_id) == 0
    assert usage_pico(srv) == before


def test_an_empty_answer_costs_nothing(srv: Server, sims: dict[str, Simulator]) -> None:
    """No completion tokens and a blank finish reason: zero-completion insurance."""
    add_credits(srv, "0.01")
    before = usage_pico(srv)
    sims["alpha"].configure(max_reply_tokens=0, finish_reason="")
    empty = srv.chat("acme/paid", "say nothing", max_tokens=5)
    assert empty.status_code == 200, empty.text
    assert empty.json()["usage"]["completion_tokens"] == 0
    assert empty.json()["usage"]["cost"] == 0, empty.json()["usage"]
    assert recorded(srv, empty.json()["id"])["total_cost"] == 0
    assert charged(srv, empty.json()["id"]) == 0
    assert usage_pico(srv) == before


def test_a_stream_the_client_cancels_pays_for_what_was_generated(
    srv: Server, sims: dict[str, Simulator]
) -> None:
    add_credits(srv, "0.01")
    before = usage_pico(srv)
    sims["alpha"].configure(tokens_per_second=20)  # 16 words: 0.8 s
    body = chat_body("acme/flat", " ".join(["word"] * 20), max_tokens=16, stream=True)
    pieces = 0
    with HTTP.stream(
        "POST", srv.base_url + "/chat/completions", json=body, headers=srv.headers()
    ) as s:
        generation_id = s.headers["x-generation-id"]
        for line in s.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                pieces += 1
            if pieces == 3:
                break  # the client goes away mid-answer
    record = waited(
        lambda: (g := recorded(srv, generation_id)) and g["cancelled"] and g,
        what="the cancelled record",
    )
    assert 3 <= record["tokens_completion"] < 16, record
    assert to_pico(record["total_cost"]) == record["tokens_completion"] * TOKEN > 0
    assert charged(srv, generation_id) == to_pico(record["total_cost"])
    waited(lambda: usage_pico(srv) - before == to_pico(record["total_cost"]), what="the charge")
    waited(
        lambda: sims["alpha"].state()["counters"]["streams_cancelled"] == 1,
        what="the provider's stream to be cancelled",
    )


@pytest.fixture(scope="module")
def enforced(
    sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config: dict[str, Any] = {"server": SERVER, "credits": {"enforce": True}, **paid_catalog(sims)}
    server = start(tmp_path_factory.mktemp("enforced"), config)
    yield server
    server.stop()


def test_config_enforces_the_balance_from_the_start(enforced: Server) -> None:
    assert credits(enforced) == {"total_credits": 0, "total_usage": 0}
    r = enforced.chat("acme/paid", "no credits", max_tokens=5)
    assert r.status_code == 402 and "Insufficient credits" in message(r.json())
    assert "the account has $0" in message(r.json())
    streamed = enforced.chat("acme/paid", "no credits", max_tokens=5, stream=True)
    assert streamed.status_code == 402
    free = enforced.chat("acme/paid:free", "free is served", max_tokens=5)
    assert free.status_code == 200 and free.json()["usage"]["cost"] == 0
    me = enforced.get("/key").json()["data"]
    assert me["is_free_tier"] is True and me["free_model_daily_requests"]["used"] == 1
    add_credits(enforced, "0.001", cli=True)
    r = enforced.chat("acme/paid", "now paid", max_tokens=5)
    assert r.status_code == 200, r.text
    assert to_pico(credits(enforced)["total_usage"]) == to_pico(r.json()["usage"]["cost"])
