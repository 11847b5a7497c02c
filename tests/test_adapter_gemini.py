"""The Gemini adapter against golden payloads shaped as Google documents them."""

from __future__ import annotations

import orjson
import pytest

from adapters import decode_stream, endpoint, fixture, merged
from crossroads.providers.gemini import GeminiAdapter
from crossroads.providers.gemini.request import to_gemini_body
from crossroads.schema.catalog import Provider

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_request_translation() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVB"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
                "reasoning_details": [
                    {
                        "type": "reasoning.encrypted",
                        "data": "sig-oslo",
                        "id": "call_0",
                        "format": "google-gemini-v1",
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 3}'},
            {"role": "tool", "tool_call_id": "call_0", "content": "plain text"},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.3,
        "top_p": 0.8,
        "max_tokens": 200,
        "stop": ["END"],
        "seed": 7,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
        "reasoning": {"effort": "low"},
    }
    out = to_gemini_body(body, endpoint("gemini-2.5-flash"))
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    user, model, results = out["contents"]
    assert user["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "AAA"}}
    assert user["parts"][2] == {
        "fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a.jpg"}
    }
    assert user["parts"][3]["inlineData"]["mimeType"] == "application/pdf"
    assert model == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                "thoughtSignature": "sig-oslo",
            }
        ],
    }
    assert results["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 3}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "plain text"}}},
    ]
    config = out["generationConfig"]
    assert config == {
        "temperature": 0.3,
        "topP": 0.8,
        "seed": 7,
        "maxOutputTokens": 200,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"thinkingBudget": 40, "includeThoughts": True},
    }
    assert out["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    off = to_gemini_body(
        {"messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "none"}},
        endpoint(),
    )
    assert off["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


def test_urls_and_headers() -> None:
    provider = Provider(
        slug="g",
        name="G",
        api="gemini",
        base_url="https://generativelanguage.googleapis.com/v1beta",
        api_key="k",
    )
    plain = GeminiAdapter().build_chat_request(
        {"messages": []}, endpoint("gemini-2.5-flash"), provider, stream=False
    )
    assert plain.url.endswith("/v1beta/models/gemini-2.5-flash:generateContent")
    assert plain.headers["x-goog-api-key"] == "k"
    streamed = GeminiAdapter().build_chat_request(
        {"messages": []}, endpoint("m"), provider, stream=True
    )
    assert streamed.url.endswith("/models/m:streamGenerateContent?alt=sse")
    assert orjson.loads(streamed.body) == {"contents": []}


def test_text_response() -> None:
    c = GeminiAdapter().parse_chat_response(fixture("gemini/response_text.json"))
    choice = c.choices[0]
    assert choice["message"]["content"] == "AI learns patterns from data."
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("stop", "STOP")
    assert (
        c.usage["prompt_tokens"] == 8
        and c.usage["completion_tokens"] == 7
        and c.upstream_id == "mAitaLmkHPPlz7IPvtfUqQ4"
    )


def test_parallel_function_calls_keep_their_signature() -> None:
    c = GeminiAdapter().parse_chat_response(fixture("gemini/response_function_calls.json"))
    message = c.choices[0]["message"]
    assert c.choices[0]["finish_reason"] == "tool_calls" and message["content"] is None
    assert [orjson.loads(t["function"]["arguments"]) for t in message["tool_calls"]] == [
        {"location": "London"},
        {"location": "Paris"},
    ]
    assert message["reasoning_details"] == [
        {
            "type": "reasoning.encrypted",
            "data": "CiQB0e2Kb1ZyJuxn6Uu5JkIbsigMaZWjOy3D0EZNJW5PN0m7b4w=",
            "id": "call_0",
            "format": "google-gemini-v1",
            "index": 0,
        }
    ]
    assert (
        c.usage["completion_tokens"] == 86
        and c.usage["completion_tokens_details"]["reasoning_tokens"] == 50
    )


def test_thought_parts_become_reasoning() -> None:
    c = GeminiAdapter().parse_chat_response(fixture("gemini/response_thoughts.json"))
    message = c.choices[0]["message"]
    assert message["reasoning"].startswith("**Analyzing the prime question**")
    assert message["content"] == "There are 15 prime numbers below 50."
    assert [d["type"] for d in message["reasoning_details"]] == [
        "reasoning.text",
        "reasoning.encrypted",
    ]
    assert c.usage["prompt_tokens_details"]["cached_tokens"] == 4


@pytest.mark.parametrize(
    ("name", "finish", "native"),
    [
        ("response_safety.json", "content_filter", "SAFETY"),
        ("response_blocked_prompt.json", "content_filter", "SAFETY"),
        ("response_max_tokens.json", "length", "MAX_TOKENS"),
        ("response_recitation.json", "content_filter", "RECITATION"),
        ("response_malformed_call.json", "error", "MALFORMED_FUNCTION_CALL"),
    ],
)
def test_finish_reasons(name: str, finish: str, native: str) -> None:
    choice = GeminiAdapter().parse_chat_response(fixture(f"gemini/{name}")).choices[0]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == (finish, native)


def test_errors() -> None:
    assert (
        GeminiAdapter()
        .error_message(fixture("gemini/error_quota.json"))
        .startswith("Resource has been exhausted")
    )
    with pytest.raises(ValueError):
        GeminiAdapter().parse_chat_response(fixture("gemini/error_quota.json"))


def test_text_stream() -> None:
    chunks = decode_stream("gemini/stream_text.sse", GeminiAdapter().stream_decoder())
    m = merged(chunks)
    assert m["content"] == "The quick brown fox jumps." and m["finish_reason"] == "stop"
    assert (
        m["usage"]["completion_tokens"] == 5
        and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    )
    assert sum(1 for c in chunks if c.get("usage")) == 1


def test_thoughts_and_call_stream() -> None:
    m = merged(
        decode_stream("gemini/stream_thoughts_and_call.sse", GeminiAdapter().stream_decoder())
    )
    assert (
        m["reasoning"] == "Thinking about the weather tool." and m["finish_reason"] == "tool_calls"
    )
    assert m["tool_calls"] == {
        0: {"id": "call_0", "name": "get_weather", "arguments": '{"city":"Oslo"}'}
    }
    assert m["reasoning_details"][-1] == {
        "type": "reasoning.encrypted",
        "data": "sigOslo",
        "id": "call_0",
        "format": "google-gemini-v1",
        "index": 1,
    }
    assert m["usage"]["completion_tokens"] == 28
