"""Admission's edges through a real server: a free variant counted however it is named or
reached, a request that reasons reserving what it may be billed, and the `max_tokens`
guardrail holding with reasoning budgets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Server, Simulator
from limits_setup import SERVER, chat_body, fresh_minute, message, paid_catalog, start


@pytest.fixture(scope="module")
def srv(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = {"server": {**SERVER, "free_requests_per_minute": 3}, **paid_catalog(sims)}
    server = start(tmp_path_factory.mktemp("edges"), config)
    yield server
    server.stop()


def ask(srv: Server, key: str, model: str, **extra: Any) -> Any:
    return srv.post("/chat/completions", chat_body(model, max_tokens=5, **extra), key=key)


def test_a_free_variant_counts_however_it_is_named_or_reached(srv: Server) -> None:
    key = srv.create_key("free spellings")["key"]
    fresh_minute()
    assert ask(srv, key, "ACME/Paid:FREE").status_code == 200  # any case: the same model
    fallback = ask(srv, key, "acme/nowhere", models=["acme/paid:free"])
    assert fallback.status_code == 200 and fallback.json()["model"] == "acme/paid:free"
    assert ask(srv, key, "acme/paid:free").status_code == 200
    refused = ask(srv, key, "Acme/Paid:Free")
    assert refused.status_code == 429, refused.text
    assert "free-models-per-min" in message(refused.json())
    assert ask(srv, key, "acme/paid").status_code == 200  # a paid variant is not limited


def test_a_request_that_reasons_reserves_what_it_may_be_billed(srv: Server) -> None:
    # acme/flat bills 1e-4 USD an output token and nothing for the prompt; 1000 of context
    key = srv.create_key("reasoning budget", limit=0.01)["key"]
    plain = srv.post("/chat/completions", chat_body("acme/flat", max_tokens=10), key=key)
    assert plain.status_code == 200, plain.text
    # reasoning may add a thinking budget to max_tokens: the endpoint's output bounds it
    thinking = chat_body("acme/flat", max_tokens=10, reasoning={"effort": "low"})
    refused = srv.post("/chat/completions", thinking, key=key)
    assert refused.status_code == 402, refused.text
    text = message(refused.json())
    assert "Key limit exceeded" in text and "up to 99" in text  # ~990 output tokens


def test_the_max_tokens_guardrail_holds_with_a_reasoning_budget(srv: Server) -> None:
    key = srv.create_key("capped", guardrails={"max_tokens": 50})["key"]
    over = chat_body("acme/paid", max_tokens=40, reasoning={"max_tokens": 45})
    r = srv.post("/chat/completions", over, key=key)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["metadata"]["guardrail"] == "max_tokens"
    assert "reasoning.max_tokens" in message(r.json())
    under = chat_body("acme/paid", max_tokens=40, reasoning={"max_tokens": 30})
    assert srv.post("/chat/completions", under, key=key).status_code == 200


def test_a_request_that_never_began_is_recorded_and_releases_its_hold(tmp_path: Path) -> None:
    """Unit-level: `Run.abandon` records a request that nothing recorded (a stream that
    never began), once."""
    from crossroads.routing.context import RequestContext
    from crossroads.routing.job import Job
    from crossroads.routing.plan import Plan
    from crossroads.routing.run import Run, Sinks
    from crossroads.schema.chat import parse_chat_request
    from crossroads.schema.limits import Ticket

    settled: list[tuple[Ticket | None, int]] = []
    records: list[Any] = []

    class Sink:
        def observe(self, sample: Any) -> None:
            pass

        def settle(self, ticket: Ticket | None, *, cost: int, tokens: int) -> bool:
            settled.append((ticket, cost))
            return False

        def submit(self, record: Any) -> None:
            records.append(record)

    body = chat_body("acme/x")
    ticket = Ticket(
        id="t", key_hash="k", reserved=5, key_hold=True, balance=False,
        prompt_tokens=3, minute=0, tpm=False,
    )  # fmt: skip
    ctx = RequestContext(generation_id="gen-1", api_key_hash="k", ticket=ticket)
    sink = Sink()
    plan = Plan(endpoints=[], requested=["acme/x"], prompt_tokens=3)
    job = Job(parse_chat_request(body), body, plan, ctx, None)
    run = Run(Sinks({}, sink, sink, sink), job, streamed=True)
    run.abandon()
    run.abandon()  # once only
    assert settled == [(ticket, 0)] and len(records) == 1 and records[0].cancelled
