"""The OpenAI-compatible adapter against golden payloads shaped as OpenAI and DeepSeek document."""

from __future__ import annotations

import orjson

from adapters import decode_stream, fixture, merged
from crossroads.providers.openai.adapter import OpenAIAdapter


def test_parallel_tool_calls_and_cached_tokens() -> None:
    c = OpenAIAdapter().parse_chat_response(fixture("openai/response_tool_calls.json"))
    choice = c.choices[0]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("tool_calls", "tool_calls")
    assert [orjson.loads(t["function"]["arguments"]) for t in choice["message"]["tool_calls"]] == [
        {"location": "Boston, MA"},
        {"location": "Paris"},
    ]
    assert (
        c.usage["prompt_tokens_details"]["cached_tokens"] == 64
        and c.system_fingerprint == "fp_44709d6fcb"
    )


def test_reasoning_content_becomes_reasoning() -> None:
    message = (
        OpenAIAdapter()
        .parse_chat_response(fixture("openai/response_reasoning_content.json"))
        .choices[0]["message"]
    )
    assert (
        message["reasoning"] == "Compare the tenths: 1 < 9." and "reasoning_content" not in message
    )
    assert message["reasoning_details"][0]["type"] == "reasoning.text"


def test_content_filter_and_errors() -> None:
    choice = (
        OpenAIAdapter()
        .parse_chat_response(fixture("openai/response_content_filter.json"))
        .choices[0]
    )
    assert choice["finish_reason"] == "content_filter"
    assert (
        OpenAIAdapter()
        .error_message(fixture("openai/error_rate_limit.json"))
        .startswith("Rate limit reached")
    )


def test_streamed_tool_call() -> None:
    m = merged(decode_stream("openai/stream_tool_calls.sse", OpenAIAdapter().stream_decoder()))
    assert m["tool_calls"] == {
        0: {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Rome"}'}
    }
    assert m["finish_reason"] == "tool_calls" and m["usage"]["total_tokens"] == 62


def test_streamed_reasoning_and_length() -> None:
    m = merged(
        decode_stream("openai/stream_reasoning_length.sse", OpenAIAdapter().stream_decoder())
    )
    assert m["reasoning"] == "Let me think." and m["content"] == "The answer"
    assert m["finish_reason"] == "length" and m["usage"]["completion_tokens"] == 5
