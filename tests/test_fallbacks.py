"""Provider- and model-level fallbacks, mid-stream failures and cancellation."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from harness import Server


def statuses(server: Server, generation_id: str) -> list:
    return [a["status"] for a in server.generation(generation_id)["provider_responses"]]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_provider_error_falls_back_to_next_endpoint(server: Server, sims, status: int) -> None:
    sims["beta"].configure(fail_rate=1.0, status=status)
    r = server.chat("acme/trio", provider={"order": ["beta", "alpha"]})
    assert r.status_code == 200 and r.json()["provider"] == "Alpha"
    assert statuses(server, r.json()["id"]) == [status, 200]


def test_timeout_falls_back(server: Server, sims) -> None:
    sims["beta"].configure(latency_ms=1500)  # beta's timeout is 1 s
    r = server.chat("acme/trio", provider={"order": ["beta", "alpha"]})
    assert r.json()["provider"] == "Alpha"
    attempts = server.generation(r.json()["id"])["attempts"]
    assert attempts[0]["status"] is None and "timed out" in attempts[0]["error"]


def test_connection_error_falls_back(server: Server) -> None:
    r = server.chat("acme/ghostly", provider={"order": ["ghost", "delta"]})
    assert r.json()["provider"] == "Delta"
    attempts = server.generation(r.json()["id"])["attempts"]
    assert attempts[0]["provider_slug"] == "ghost"
    assert attempts[0]["error"] == "Cannot reach provider: connection refused"  # no host, no port


def test_request_error_does_not_fall_back_to_another_provider(server: Server, sims) -> None:
    sims["beta"].configure(fail_rate=1.0, status=400)
    before = sims["alpha"].state()["counters"]["requests"]
    r = server.chat("acme/trio", provider={"order": ["beta", "alpha"]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["metadata"]["provider_name"] == "Beta"
    assert err["metadata"]["raw"]["error"]["message"] == "beta simulated failure"
    assert sims["alpha"].state()["counters"]["requests"] == before


def test_allow_fallbacks_false_returns_the_upstream_error(server: Server, sims) -> None:
    sims["beta"].configure(fail_rate=1.0, status=503)
    r = server.chat("acme/trio", provider={"order": ["beta"], "allow_fallbacks": False})
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["metadata"]["provider_name"] == "Beta" and err["metadata"]["provider_code"] == "503"
    assert "Provider returned error" in err["message"]


def test_every_provider_failing_returns_the_last_error_with_history(server: Server, sims) -> None:
    for name in ("alpha", "beta", "gamma"):
        sims[name].configure(fail_rate=1.0, status=502)
    r = server.chat("acme/trio", provider={"sort": "price"})
    assert r.status_code == 502
    meta = r.json()["error"]["metadata"]
    assert meta["provider_name"] == "Gamma"
    assert [e["provider"] for e in meta["previous_errors"]] == ["alpha", "beta"]


def test_all_rate_limited_is_429_with_retry_after(server: Server, sims) -> None:
    for name in ("alpha", "beta", "gamma"):
        sims[name].configure(fail_rate=1.0, status=429)
    r = server.chat("acme/trio")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["metadata"]["availability"]["code"] == "capacity_exhausted"
    with pytest.raises(openai.RateLimitError):
        server.openai().chat.completions.create(
            model="acme/trio", messages=[{"role": "user", "content": "x"}]
        )


def test_failed_request_is_recorded(server: Server, sims) -> None:
    sims["alpha"].configure(fail_rate=1.0, status=500)
    r = server.chat("acme/widget-1")
    assert r.status_code == 500
    g = server.generation(r.headers["x-generation-id"])
    assert g["finish_reason"] == "error" and g["total_cost"] == 0 and g["provider_name"] is None
    assert [a["status"] for a in g["provider_responses"]] == [500]
    assert g["error"]["code"] == 500 and g["error"]["metadata"]["provider_name"] == "Alpha"


def test_models_fallback_on_any_error(server: Server, sims) -> None:
    sims["alpha"].configure(fail_rate=1.0, status=400)
    r = server.openai().chat.completions.create(
        model="acme/widget-1",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"models": ["acme/backup"]},
    )
    assert r.model == "acme/backup" and r.model_extra["provider"] == "Delta"
    assert r.choices[0].message.content == "delta says: hi"
    assert statuses(server, r.id) == [400, 200]


def test_models_fallback_skips_models_that_cannot_be_served(server: Server) -> None:
    r = server.post(
        "/chat/completions",
        {
            "models": ["acme/locked", "nope/missing", "acme/backup"],
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert r.status_code == 200 and r.json()["model"] == "acme/backup"


def test_pre_stream_failure_is_a_plain_http_error(server: Server, sims) -> None:
    sims["alpha"].configure(fail_rate=1.0, status=503)
    body = {
        "model": "acme/widget-1",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    r = server.post("/chat/completions", body)
    assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["metadata"]["provider_name"] == "Alpha"
    g = server.generation(r.headers["x-generation-id"])
    assert g["streamed"] is True and g["finish_reason"] == "error"


def test_stream_falls_back_before_first_token(server: Server, sims) -> None:
    sims["beta"].configure(die_after_chunks=0)  # beta answers 200, then dies before any token
    stream = server.openai().chat.completions.create(
        model="acme/trio",
        messages=[{"role": "user", "content": "go"}],
        stream=True,
        extra_body={"provider": {"order": ["beta", "alpha"]}},
    )
    chunks = list(stream)
    assert {c.model_extra["provider"] for c in chunks} == {"Alpha"}
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha says: go"
    )


def test_mid_stream_failure_ends_with_an_error_chunk(server: Server, sims) -> None:
    sims["alpha"].configure(die_after_chunks=2)
    body = {
        "model": "acme/widget-1",
        "stream": True,
        "messages": [{"role": "user", "content": "one two three"}],
    }
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=body, headers=server.headers()
    ) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    last = events[-1]
    assert last["error"]["code"] == 502 and last["error"]["metadata"]["provider_name"] == "Alpha"
    assert last["choices"][0]["finish_reason"] == "error"
    message = last["error"]["message"]  # what happened, in words a client can act on
    assert "closed the connection" in message and "retry" in message
    assert "TransferEncodingError" not in message and "payload" not in message
    assert all("error" not in e for e in events[:-1])
    # the simulator resets the connection after two tokens; a reset may drop what was in flight
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert (
        text
        and "alpha says: one two three".startswith(text)
        and text != "alpha says: one two three"
    )
    g = server.generation(r.headers["x-generation-id"])
    assert g["finish_reason"] == "error" and g["total_cost"] == 0  # zero-completion insurance

    with pytest.raises(openai.APIError):
        for _ in server.openai().chat.completions.create(
            stream=True, **{k: v for k, v in body.items() if k != "stream"}
        ):
            pass


def test_client_disconnect_cancels_the_upstream_request(server: Server, sims) -> None:
    sims["alpha"].configure(tokens_per_second=4, max_reply_tokens=40)
    body = {
        "model": "acme/widget-1",
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(["word"] * 30)}],
    }
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=body, headers=server.headers()
    ) as r:
        generation_id = r.headers["x-generation-id"]
        lines = r.iter_lines()
        while not next(lines).startswith("data: "):
            pass
    deadline = time.monotonic() + 5
    while (
        sims["alpha"].state()["counters"]["streams_cancelled"] == 0 and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert sims["alpha"].state()["counters"]["streams_cancelled"] == 1
    assert sims["alpha"].state()["counters"]["completed"] == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if server.get(f"/generation?id={generation_id}").status_code == 200:
            break
        time.sleep(0.05)
    g = server.generation(generation_id)
    assert g["cancelled"] is True and g["streamed"] is True
