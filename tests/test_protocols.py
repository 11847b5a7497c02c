"""One request shape, every upstream wire protocol: the openai SDK against each kind of provider."""

from __future__ import annotations

import json

import pytest

from harness import Server

# model id -> (simulator that serves it, wire protocol)
UPSTREAMS = {
    "acme/open": ("alpha", "openai"),
    "acme/sonnet": ("gamma", "anthropic"),
    "acme/flash": ("beta", "gemini"),
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(params=list(UPSTREAMS))
def model(request: pytest.FixtureRequest) -> str:
    return request.param


def sim_name(model: str) -> str:
    return UPSTREAMS[model][0]


def test_text(server: Server, model: str) -> None:
    r = server.sdk_chat(model, "hello there", max_tokens=50)
    assert r.choices[0].message.content == f"{sim_name(model)} says: hello there"
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 4
    assert r.usage.prompt_tokens > 0 and r.usage.model_extra["cost"] > 0 and r.model == model


def test_streaming(server: Server, model: str) -> None:
    chunks = list(
        server.openai().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "stream me"}], stream=True
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == f"{sim_name(model)} says: stream me"
    )
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


def test_length_finish(server: Server, model: str) -> None:
    r = server.sdk_chat(model, "one two three four", max_tokens=2)
    assert (
        r.choices[0].finish_reason == "length"
        and r.choices[0].message.content == f"{sim_name(model)} says:"
    )


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls(server: Server, model: str, stream: bool) -> None:
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    args = {
        "model": model,
        "messages": [{"role": "user", "content": "weather and time?"}],
        "tools": [WEATHER, clock],
    }
    if not stream:
        message = server.openai().chat.completions.create(**args).choices[0].message
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]
    else:
        slots: dict[int, list] = {}
        for chunk in server.openai().chat.completions.create(stream=True, **args):
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                slot = slots.setdefault(call.index, ["", ""])
                slot[0] += call.function.name or ""
                slot[1] += call.function.arguments or ""
        calls = [(name, json.loads(arguments)) for name, arguments in slots.values()]
    assert calls == [("get_weather", {"city": "example"}), ("get_time", {})]


def test_reasoning(server: Server, model: str) -> None:
    r = server.sdk_chat(model, "think hard", reasoning={"effort": "low"})
    message = r.choices[0].message
    assert message.model_extra["reasoning"] == "The user wrote 2 words."
    details = message.model_extra["reasoning_details"]
    assert (
        details[0]["type"] == "reasoning.text" and details[0]["text"] == "The user wrote 2 words."
    )
    if UPSTREAMS[model][1] == "anthropic":
        assert details[0]["signature"] and details[0]["format"] == "anthropic-claude-v1"
    hidden = (
        server.sdk_chat(model, "think hard", reasoning={"effort": "low", "exclude": True})
        .choices[0]
        .message
    )
    assert hidden.model_extra.get("reasoning") is None and not hidden.model_extra.get(
        "reasoning_details"
    )


def test_reasoning_streams_as_deltas(server: Server, model: str) -> None:
    chunks = list(
        server.openai().chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            extra_body={"reasoning": {"max_tokens": 2048}},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert (
        "".join(d.model_extra.get("reasoning") or "" for d in deltas) == "The user wrote 3 words."
    )
    assert any(d.model_extra.get("reasoning_details") for d in deltas)


def test_structured_output(server: Server, model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    r = server.sdk_chat(
        model,
        "a person",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "strict": True, "schema": schema},
        },
    )
    assert json.loads(r.choices[0].message.content) == {"name": "example", "age": 1}


def test_signed_thinking_goes_back_to_anthropic(server: Server, sims) -> None:
    first = server.sdk_chat(
        "acme/sonnet", "weather in Paris?", tools=[WEATHER], reasoning={"effort": "high"}
    )
    message = first.choices[0].message
    details = message.model_extra["reasoning_details"]
    follow = server.openai().chat.completions.create(
        model="acme/sonnet",
        tools=[WEATHER],
        extra_body={"reasoning": {"effort": "high"}},
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [c.model_dump() for c in message.tool_calls],
                "reasoning_details": details,
            },
            {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"},
        ],
    )
    assert follow.choices[0].finish_reason == "tool_calls"
    sent = sims["gamma"].state()["received"][-1]
    assert sent["path"] == "/v1/messages" and sent["headers"]["x-api-key"] == "anthropic-secret"
    assistant = sent["body"]["messages"][1]["content"]
    assert assistant[0] == {
        "type": "thinking",
        "thinking": details[0]["text"],
        "signature": details[0]["signature"],
    }
    assert (
        assistant[1]["type"] == "tool_use"
        and sent["body"]["messages"][2]["content"][0]["type"] == "tool_result"
    )


def test_prompt_cache_usage_reported(server: Server) -> None:
    r = server.openai().chat.completions.create(
        model="acme/sonnet",
        messages=[
            {
                "role": "system",
                "content": [
                    {
                        "type": "text",
                        "text": "A long shared preamble.",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            {"role": "user", "content": "hi"},
        ],
    )
    assert r.usage.prompt_tokens_details.cached_tokens == 4
    assert r.usage.model_extra["cost"] > 0


def test_thought_signature_goes_back_to_gemini(server: Server, sims) -> None:
    first = server.sdk_chat(
        "acme/flash", "weather in Oslo?", tools=[WEATHER], reasoning={"effort": "low"}
    )
    message = first.choices[0].message
    details = message.model_extra["reasoning_details"]
    server.openai().chat.completions.create(
        model="acme/flash",
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [c.model_dump() for c in message.tool_calls],
                "reasoning_details": details,
            },
            {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "cold"},
        ],
    )
    sent = sims["beta"].state()["received"][-1]
    assert sent["path"] == "/v1beta/models/gem-model:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "gemini-secret"
    model_turn = sent["body"]["contents"][1]
    assert (
        model_turn["role"] == "model"
        and model_turn["parts"][0]["thoughtSignature"] == details[0]["signature"]
    )
    assert sent["body"]["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "response": {"content": "cold"},
    }
