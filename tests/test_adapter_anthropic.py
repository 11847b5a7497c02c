"""The Anthropic adapter against golden payloads shaped as Anthropic documents them."""

from __future__ import annotations

import orjson
import pytest

from adapters import decode_stream, endpoint, fixture, merged
from crossroads.providers.anthropic import AnthropicAdapter
from crossroads.providers.anthropic.request import to_anthropic_body
from crossroads.schema.catalog import Provider

PNG = "data:image/png;base64,iVBORw0KGgo="
PDF = "data:application/pdf;base64,JVBERi0xLjQK"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def test_request_translation() -> None:
    body = {
        "model": "anthropic/claude-sonnet-4.5",
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}
                ],
            },
            {"role": "developer", "content": "Answer in English."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'},
                    },
                ],
                "reasoning_details": [
                    {
                        "type": "reasoning.text",
                        "text": "thinking...",
                        "signature": "sig-1",
                        "format": "anthropic-claude-v1",
                    },
                    {"type": "reasoning.encrypted", "data": "opaque"},
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "rainy"},
        ],
        "tools": [WEATHER],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
        "temperature": 1.5,
        "top_p": 0.9,
        "max_tokens": 300,
        "user": "alice",
    }
    out, betas = to_anthropic_body(body, endpoint("claude-sonnet-4-5"), stream=True)
    assert out["model"] == "claude-sonnet-4-5" and out["stream"] is True and betas == []
    assert out["system"] == [
        {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in English."},
    ]
    user, assistant, results = out["messages"]
    assert [b["type"] for b in user["content"]] == ["text", "image", "image", "document"]
    assert user["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "iVBORw0KGgo=",
    }
    assert user["content"][2]["source"] == {"type": "url", "url": "https://x.test/cat.jpg"}
    assert (
        user["content"][3]["source"]["media_type"] == "application/pdf"
        and user["content"][3]["title"] == "a.pdf"
    )
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "thinking...",
        "signature": "sig-1",
    }
    assert assistant["content"][1] == {"type": "redacted_thinking", "data": "opaque"}
    assert assistant["content"][3] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"location": "Paris"},
    }
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"},
        ],
    }
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert (
        out["stop_sequences"] == ["END"] and out["temperature"] == 1.0 and out["max_tokens"] == 300
    )
    assert out["metadata"]["user_id"] != "alice"


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "budget", "final_max"),
    [
        ({"effort": "high"}, 10000, 8000, 10000),
        ({"effort": "low"}, 2000, 1024, 2000),  # at least 1024
        ({"max_tokens": 3000}, 2000, 3000, 5000),  # max_tokens must stay above the budget
        ({"effort": "medium"}, 400000, 128000, 400000),  # at most 128k
    ],
)
def test_reasoning_becomes_a_thinking_budget(reasoning, max_tokens, budget, final_max) -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "reasoning": reasoning,
        "max_tokens": max_tokens,
        "temperature": 0.2,
    }
    out, _ = to_anthropic_body(body, endpoint(), stream=False)
    assert (
        out["thinking"] == {"type": "enabled", "budget_tokens": budget}
        and out["max_tokens"] == final_max
    )
    assert "temperature" not in out


def test_structured_outputs_and_automatic_caching() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    }
    out, betas = to_anthropic_body(body, endpoint(max_completion_tokens=64000), stream=False)
    assert out["output_format"] == {"type": "json_schema", "schema": schema}
    assert betas == ["structured-outputs-2025-11-13"]
    assert out["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert out["max_tokens"] == 16384  # none requested: the endpoint's limit, capped
    request = AnthropicAdapter().build_chat_request(
        body,
        endpoint(),
        Provider(
            slug="p", name="P", api="anthropic", base_url="https://api.anthropic.com", api_key="k"
        ),
        stream=False,
    )
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert (
        request.headers["x-api-key"] == "k" and request.headers["anthropic-version"] == "2023-06-01"
    )
    assert request.headers["anthropic-beta"] == "structured-outputs-2025-11-13"
    assert orjson.loads(request.body)["model"] == "upstream-model"


def test_text_response() -> None:
    c = AnthropicAdapter().parse_chat_response(fixture("anthropic/response_text.json"))
    assert c.upstream_id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    choice = c.choices[0]
    assert choice["message"]["content"] == "Hello! How can I help you today?"
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("stop", "end_turn")
    assert (
        c.usage["prompt_tokens"] == 12
        and c.usage["completion_tokens"] == 9
        and c.usage["total_tokens"] == 21
    )


def test_parallel_tool_use_response() -> None:
    c = AnthropicAdapter().parse_chat_response(fixture("anthropic/response_parallel_tools.json"))
    message = c.choices[0]["message"]
    assert (
        c.choices[0]["finish_reason"] == "tool_calls"
        and message["content"] == "I'll check both cities."
    )
    assert [orjson.loads(t["function"]["arguments"]) for t in message["tool_calls"]] == [
        {"location": "San Francisco, CA"},
        {"location": "New York, NY", "unit": "celsius"},
    ]
    assert message["tool_calls"][1]["id"] == "toolu_01B19q90qw90lq917835lq8"


def test_thinking_response_keeps_signatures() -> None:
    c = AnthropicAdapter().parse_chat_response(fixture("anthropic/response_thinking.json"))
    message = c.choices[0]["message"]
    assert message["reasoning"] == "Let me analyze this step by step..."
    text, redacted = message["reasoning_details"]
    assert text["type"] == "reasoning.text" and text["signature"].startswith("WaUjzkyp")
    assert text["format"] == "anthropic-claude-v1" and redacted["type"] == "reasoning.encrypted"
    assert message["content"] == "Based on my analysis, the answer is 42."


def test_cache_usage_and_finish_reasons() -> None:
    c = AnthropicAdapter().parse_chat_response(fixture("anthropic/response_cache_and_length.json"))
    assert c.usage["prompt_tokens"] == 21 + 188086 + 2000
    assert c.usage["prompt_tokens_details"] == {"cached_tokens": 2000, "cache_write_tokens": 188086}
    assert c.choices[0]["finish_reason"] == "length"
    stop = (
        AnthropicAdapter()
        .parse_chat_response(fixture("anthropic/response_stop_sequence.json"))
        .choices[0]
    )
    assert (stop["finish_reason"], stop["native_finish_reason"]) == ("stop", "stop_sequence")
    refusal = (
        AnthropicAdapter()
        .parse_chat_response(fixture("anthropic/response_refusal.json"))
        .choices[0]
    )
    assert refusal["finish_reason"] == "content_filter" and refusal["message"]["content"] == ""


def test_error_payload() -> None:
    assert (
        AnthropicAdapter().error_message(fixture("anthropic/error_overloaded.json")) == "Overloaded"
    )
    with pytest.raises(ValueError):
        AnthropicAdapter().parse_chat_response(fixture("anthropic/error_overloaded.json"))


def test_text_stream() -> None:
    chunks = decode_stream("anthropic/stream_text.sse", AnthropicAdapter().stream_decoder())
    m = merged(chunks)
    assert m["content"] == "Hello!" and (m["finish_reason"], m["native_finish_reason"]) == (
        "stop",
        "end_turn",
    )
    assert m["usage"]["prompt_tokens"] == 25 and m["usage"]["completion_tokens"] == 15
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["upstream_id"] == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"


def test_tool_use_stream() -> None:
    m = merged(decode_stream("anthropic/stream_tool_use.sse", AnthropicAdapter().stream_decoder()))
    assert m["content"] == "Okay, let's check the weather." and m["finish_reason"] == "tool_calls"
    assert m["tool_calls"] == {
        0: {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "arguments": '{"location": "San Francisco, CA"}',
        },
        1: {"id": "toolu_02", "name": "get_time", "arguments": '{"tz": "PST"}'},
    }


def test_thinking_stream() -> None:
    m = merged(decode_stream("anthropic/stream_thinking.sse", AnthropicAdapter().stream_decoder()))
    assert m["reasoning"] == "I need to find the GCD of 1071 and 462.\n\n1071 = 2 x 462 + 147"
    assert m["reasoning_details"][-1]["signature"].startswith("EqQBCgIYAhIM")
    assert {d["index"] for d in m["reasoning_details"]} == {0}
    assert m["content"] == "The GCD is 21."
    assert (
        m["usage"]["prompt_tokens_details"]["cached_tokens"] == 1000
        and m["usage"]["prompt_tokens"] == 1040
    )


def test_stream_error_event_raises() -> None:
    with pytest.raises(ValueError, match="Overloaded"):
        decode_stream("anthropic/stream_error.sse", AnthropicAdapter().stream_decoder())
