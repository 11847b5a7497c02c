"""Provider replies are untrusted input: the pure pieces that read them, one by one.

Redaction of credentials, `Retry-After`, JSON depth, error bodies, the SSE decoder's
limits, the stream-limit settings, and the adapters fed arbitrary JSON: whatever comes
in, an adapter either returns what the router can relay or raises its documented error.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import FIXTURES
from crossroads.errors import ConfigError, redact
from crossroads.gateway import upstream_limits
from crossroads.providers import builtin_adapters
from crossroads.providers.base import UpstreamError
from crossroads.providers.http import MAX_RETRY_AFTER, parse_retry_after
from crossroads.providers.sse import SSEDecoder
from crossroads.providers.untrusted import MAX_DEPTH, check_depth, read_json, read_usage, safe_raw
from crossroads.schema.catalog import Provider
from crossroads.settings import Settings

ADAPTER_ERRORS = (ValueError, TypeError, KeyError)  # the adapter contract (base.Adapter)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Incorrect API key provided: Bearer sk-proj-abcdef0123456789", "sk-proj-abcdef0123456789"),
        ('{"authorization": "Bearer live-token-123456"}', "live-token-123456"),
        ('{"x-api-key": "anthropic-secret"}', "anthropic-secret"),
        ('{\\"api_key\\": \\"hunter2-hunter2\\"}', "hunter2-hunter2"),
        ("https://host/v1beta/models/m?key=AIzaSyD-0123456789abcdefghijk&alt=sse", "AIzaSyD"),
        ("x-goog-api-key: gemini-secret", "gemini-secret"),
        ("Api-Key: Token delta-secret", "delta-secret"),
        ("access_token=abc123def456", "abc123def456"),
        ("the key gsk_0123456789abcdef was revoked", "gsk_0123456789abcdef"),
    ],
)
def test_credentials_are_redacted(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned and "[REDACTED]" in cleaned


def test_a_providers_own_key_is_redacted_verbatim_and_plain_text_is_kept() -> None:
    assert redact("you sent zebra-horse-battery", ["zebra-horse-battery"]) == "you sent [REDACTED]"
    for plain in (
        "max_tokens: 5",
        "The model is overloaded",
        "monkey=bananas",
        "key: messages",
        "max token budget exceeded",
        "Basic authentication required",
    ):
        assert redact(plain) == plain


def test_an_upstream_error_is_redacted_when_made() -> None:
    provider = Provider(slug="p", name="P", api_key="zebra-horse-battery")
    raw = {"error": {"message": "bad key zebra-horse-battery", "headers": {"Authorization": "x"}}}
    error = UpstreamError(provider, "http", "bad key zebra-horse-battery", status=401, raw=raw)
    shown = orjson.dumps(error.to_gateway_error().envelope()).decode()
    assert "zebra-horse-battery" not in shown and error.raw["error"]["message"].endswith(
        "[REDACTED]"
    )


def test_an_error_body_is_kept_small_and_shallow() -> None:
    deep: Any = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    assert safe_raw(deep) == "(unreadable error body)"
    big = safe_raw({"message": "x" * 100_000})
    assert isinstance(big, str) and len(big) == 4000
    assert safe_raw({"error": {"message": "slow down"}}) == {"error": {"message": "slow down"}}


NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("1e12", MAX_RETRY_AFTER),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_json_deeper_than_the_limit_is_refused() -> None:
    shallow = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert check_depth(read_json(shallow)) is not None
    with pytest.raises(ValueError, match="deeper"):
        read_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    with pytest.raises(ValueError):
        read_json(b'{"a": "\xff"}')


@pytest.mark.parametrize(
    ("usage", "error"),
    [
        ({"prompt_tokens": "12"}, TypeError),
        ({"completion_tokens": True}, TypeError),
        ({"total_tokens": 1.5}, ValueError),
        ({"prompt_tokens": -1}, ValueError),
        ({"prompt_tokens_details": "cached"}, TypeError),
        ({"completion_tokens_details": {"reasoning_tokens": [3]}}, TypeError),
        ("usage", TypeError),
    ],
)
def test_usage_of_the_wrong_type_is_refused(usage: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_usage(usage)


def test_usage_keeps_only_counts() -> None:
    usage = read_usage(
        {
            "prompt_tokens": 3,
            "completion_tokens": 2.0,
            "cost": 9e9,
            "evil": [[["x"]]],
            "prompt_tokens_details": {"cached_tokens": 1, "surprise": "x"},
        }
    )
    assert usage == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 1},
    }


def test_sse_decoder_limits() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    assert decoder.feed(b"data: " + b"x" * 50 + b"\n") is None
    with pytest.raises(OverflowError):
        decoder.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(UnicodeDecodeError):
        SSEDecoder().feed(b'data: {"a": "\xff"}\n')


def test_stream_limit_settings() -> None:
    s = Settings.load(
        file_settings={"upstream_max_body_bytes": 1000, "upstream_idle_timeout_seconds": 2},
        env={"CROSSROADS_UPSTREAM_STREAM_TIMEOUT_SECONDS": "30"},
    )
    limits = upstream_limits(s)
    assert (limits.max_body_bytes, limits.idle_seconds, limits.stream_seconds) == (1000, 2, 30)
    assert limits.idle_for(Provider(slug="p", name="P", timeout_seconds=0.5)) == 0.5
    for bad in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(ConfigError):
            Settings.load(env={"CROSSROADS_UPSTREAM_IDLE_TIMEOUT_SECONDS": bad})


# --- adapters fed anything -------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
FIELDS = [
    "choices", "message", "delta", "content", "finish_reason", "usage", "tool_calls",
    "function", "arguments", "type", "text", "stop_reason", "index", "content_block",
    "candidates", "parts", "finishReason", "usageMetadata", "promptTokenCount", "id",
    "prompt_tokens", "input_tokens", "output_tokens", "functionCall", "thinking",
]  # fmt: skip
VOCABULARY = [
    "message", "message_start", "message_delta", "message_stop", "content_block_start",
    "content_block_delta", "text_delta", "tool_use", "input_json_delta", "thinking_delta",
    "error", "text", "STOP", "stop",
]  # fmt: skip
shaped = st.recursive(
    st.none() | st.integers(-3, 3) | st.sampled_from(VOCABULARY) | st.booleans(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5)
    ),
    max_leaves=40,
)  # protocol-like shapes with wrong types in places, to reach past the first check


def _relayable(value: Any) -> None:
    """What an adapter returns is what the router relays: JSON it can encode, with the
    fields the relay reads of the types it reads them as."""
    orjson.dumps(value)
    for chunk in value if isinstance(value, list) else [value]:
        for choice in chunk["choices"]:
            part = choice.get("delta") or choice.get("message") or {}
            assert isinstance(part, dict)
            for key in ("content", "reasoning"):
                assert part.get(key) is None or isinstance(part[key], str)
            for call in part.get("tool_calls") or []:
                assert isinstance(call, dict)
                assert isinstance(call.get("function") or {}, dict)
            assert choice.get("finish_reason") is None or isinstance(choice["finish_reason"], str)
        usage = chunk.get("usage")
        assert usage is None or all(
            isinstance(v, int) for v in usage.values() if not isinstance(v, dict)
        )


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(payload=json_values | shaped)
def test_adapters_read_anything_or_say_they_cannot(api: str, payload: Any) -> None:
    adapter = builtin_adapters()[api]
    try:
        completion = adapter.parse_chat_response(payload)
    except ADAPTER_ERRORS:
        pass
    else:
        _relayable({"choices": completion.choices, "usage": completion.usage})
    decoder = adapter.stream_decoder()
    try:
        chunks = decoder.feed(orjson.dumps(payload).decode())
    except ADAPTER_ERRORS:
        return
    _relayable(chunks)


# Every field of every golden reply, replaced by each wrong value in turn.
WRONG_VALUES: list[Any] = [None, "x", "", 0, -1, 1.5, 1e30, 2**63, True, [], {}, [1], {"a": 1}]
REPLIES = {
    "openai": ["response_content_filter", "response_reasoning_content", "response_tool_calls"],
    "anthropic": ["response_text", "response_thinking", "response_parallel_tools"],
    "gemini": ["response_text", "response_function_calls", "response_thoughts"],
}
STREAMS = {
    "openai": ["stream_tool_calls", "stream_reasoning_length"],
    "anthropic": ["stream_text", "stream_tool_use", "stream_thinking"],
    "gemini": ["stream_text", "stream_thoughts_and_call"],
}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, (dict, list)):
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            yield from _paths(child, (*path, key))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def _stream_events(api: str, name: str) -> list[str]:
    sse = SSEDecoder()
    events = []
    for line in (FIXTURES / api / f"{name}.sse").read_bytes().splitlines(keepends=True):
        data = sse.feed(line)
        if data is not None and data != "[DONE]":
            events.append(data)
    return events


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
def test_every_field_of_a_real_reply_may_be_wrong(api: str) -> None:
    adapter = builtin_adapters()[api]
    tried = 0
    for name in REPLIES[api]:
        reply = orjson.loads((FIXTURES / api / f"{name}.json").read_bytes())
        for path in _paths(reply):
            for wrong in WRONG_VALUES:
                tried += 1
                try:
                    completion = adapter.parse_chat_response(_replaced(reply, path, wrong))
                except ADAPTER_ERRORS:
                    continue
                _relayable({"choices": completion.choices, "usage": completion.usage})
    for name in STREAMS[api]:
        events = [orjson.loads(e) for e in _stream_events(api, name)]
        for i, event in enumerate(events):
            for path in _paths(event):
                for wrong in WRONG_VALUES:
                    tried += 1
                    decoder = adapter.stream_decoder()
                    try:
                        for earlier in events[:i]:
                            decoder.feed(orjson.dumps(earlier).decode())
                        bad = _replaced(event, path, wrong)
                        chunks = decoder.feed(orjson.dumps(bad).decode())
                    except ADAPTER_ERRORS:
                        continue
                    _relayable(chunks)
    assert tried > 500
