"""POST /api/v1/messages with the official anthropic SDK, through every upstream wire protocol."""

from __future__ import annotations

import anthropic
import pytest

from harness import HTTP, Server
from test_protocols import UPSTREAMS

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(params=list(UPSTREAMS))
def model(request: pytest.FixtureRequest) -> str:
    return request.param


def client(server: Server, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.url("/api"), api_key=server.api_key, max_retries=0, **kw
    )


def test_message(server: Server, model: str) -> None:
    m = client(server).messages.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert (
        m.content[0].type == "text"
        and m.content[0].text == f"{UPSTREAMS[model][0]} says: hello there"
    )
    assert m.stop_reason == "end_turn" and m.model == model and m.id.startswith("gen-")
    assert m.usage.output_tokens == 4 and m.usage.input_tokens > 0


def test_streaming(server: Server, model: str) -> None:
    with client(server).messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "stream it"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"{UPSTREAMS[model][0]} says: stream it"
    assert (
        final.stop_reason == "end_turn"
        and final.usage.output_tokens == 4
        and final.usage.input_tokens > 0
    )


def test_bearer_auth_as_claude_code_sends_it(server: Server) -> None:
    c = anthropic.Anthropic(base_url=server.url("/api"), auth_token=server.api_key, max_retries=0)
    assert c.messages.create(
        model="acme/open", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ).content


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(server: Server, model: str, stream: bool) -> None:
    c = client(server)
    args = {
        "model": model,
        "max_tokens": 200,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "weather in Lima?"}],
    }
    if stream:
        with c.messages.stream(**args) as s:
            first = s.get_final_message()
    else:
        first = c.messages.create(**args)
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert (
        first.stop_reason == "tool_use"
        and tool_use.name == "get_weather"
        and tool_use.input == {"city": "example"}
    )
    second = c.messages.create(
        **{
            **args,
            "messages": [
                *args["messages"],
                {
                    "role": "assistant",
                    "content": [b.model_dump(exclude_none=True) for b in first.content],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": tool_use.id, "content": "warm"}
                    ],
                },
            ],
        },
        tool_choice={"type": "none"},
    )
    assert second.stop_reason == "end_turn" and second.content[-1].text.startswith(
        UPSTREAMS[model][0]
    )


def test_extended_thinking(server: Server, model: str) -> None:
    m = client(server).messages.create(
        model=model,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "x y"}],
    )
    thinking = m.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "The user wrote 2 words."
    if UPSTREAMS[model][1] == "anthropic":
        assert thinking.signature
    with client(server).messages.stream(
        model=model,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "x y"}],
    ) as stream:
        final = stream.get_final_message()
    assert (
        final.content[0].type == "thinking"
        and final.content[0].thinking == "The user wrote 2 words."
    )
    assert final.content[-1].type == "text"


def test_fallbacks_field(server: Server, sims) -> None:
    sims["alpha"].configure(fail_rate=1.0, status=400)
    m = client(server).messages.create(
        model="acme/open",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"fallbacks": [{"model": "acme/sonnet"}]},
    )
    assert m.model == "acme/sonnet" and m.content[0].text == "gamma says: hi"
    r = HTTP.post(
        server.url("/api/v1/messages"),
        headers={"x-api-key": server.api_key},
        json={
            "model": "acme/open",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "fallbacks": [{"model": "acme/sonnet"}],
            "models": ["acme/flash"],
        },
    )
    assert r.status_code == 400 and r.json()["type"] == "error"


def test_errors_in_anthropic_shape(server: Server, sims) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(server).messages.create(
            model="acme/none", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=server.url("/api"), api_key="nope", max_retries=0
        ).messages.create(
            model="acme/open", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        client(server).messages.create(
            model="acme/open", max_tokens=0, messages=[{"role": "user", "content": "x"}]
        )
    sims["gamma"].configure(fail_rate=1.0, status=429)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client(server).messages.create(
            model="acme/sonnet", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert limited.value.body["error"]["type"] == "rate_limit_error"


def test_mid_stream_failure_is_an_error_event(server: Server, sims) -> None:
    sims["alpha"].configure(die_after_chunks=2)
    with pytest.raises(anthropic.APIStatusError):
        with client(server).messages.stream(
            model="acme/open",
            max_tokens=50,
            messages=[{"role": "user", "content": "one two three"}],
        ) as stream:
            for _ in stream:
                pass


def test_generation_id_and_keepalive_on_every_dialect(server: Server, sims) -> None:
    body = {
        "model": "acme/open",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "id please"}],
    }
    r = HTTP.post(server.url("/api/v1/messages"), headers={"x-api-key": server.api_key}, json=body)
    assert r.json()["id"] == r.headers["x-generation-id"]
    assert server.generation(r.headers["x-generation-id"])["model"] == "acme/open"
    r = HTTP.post(
        server.base_url + "/responses",
        headers=server.headers(),
        json={"model": "acme/open", "input": "x"},
    )
    assert (
        server.generation(r.headers["x-generation-id"])["tokens_completion"]
        == r.json()["usage"]["output_tokens"]
    )
    sims["alpha"].configure(latency_ms=600)
    with HTTP.stream(
        "POST",
        server.url("/api/v1/messages"),
        headers={"x-api-key": server.api_key},
        json={**body, "stream": True},
    ) as stream:
        lines = [line for line in stream.iter_lines() if line]
    assert lines[0] == ": OPENROUTER PROCESSING" and "event: message_stop" in lines
