"""Hypothesis on the untrusted-input translators: no exception but the documented ones.

- the SSE line decoder (providers/sse.py): `UnicodeDecodeError` for a line that is not
  UTF-8, `OverflowError` past `max_event_bytes`;
- each adapter's `stream_decoder().feed` and `parse_chat_response` on whatever a provider
  may send: `ValueError`, `TypeError`, `KeyError` (routing/attempt.py `_UNREADABLE`, which
  turns them into a provider error); what they return must be relayable (JSON objects
  orjson can write);
- each adapter's `build_chat_request` on requests `parse_chat_request` accepted: nothing;
- the inbound dialects `messages_to_chat`, `responses_to_chat`, `completions_to_chat`, and
  `parse_chat_request` on what they produce: a `GatewayError` with status 400; and what
  passes goes through every adapter's `build_chat_request` as in production.

Inputs are protocol-shaped (the fields each format has) with junk mixed in at every level,
so that the checks past the first are reached. Bounded and derandomized: the same examples
every run.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from crossroads.api.completions import completions_to_chat
from crossroads.api.messages.request import messages_to_chat
from crossroads.api.responses.request import responses_to_chat
from crossroads.errors import GatewayError
from crossroads.providers import builtin_adapters
from crossroads.providers.base import Adapter, UpstreamRequest
from crossroads.providers.sse import SSEDecoder
from crossroads.schema.catalog import Endpoint, Provider, Quirks
from crossroads.schema.chat import parse_chat_request
from fuzz_requests import CHAT, COMPLETIONS, MESSAGES, RESPONSES
from fuzz_strategies import JSON, REPLIES, STREAMS, TEXT, few, maybe

UNREADABLE = (ValueError, TypeError, KeyError)  # routing/attempt.py `_UNREADABLE`
ADAPTERS = builtin_adapters()
SETTINGS: dict[str, Any] = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
FUZZ = settings(max_examples=200, **SETTINGS)
MORE = settings(max_examples=400, **SETTINGS)  # most generated requests are (rightly) refused


def _relayable(value: Any) -> None:
    """What an adapter hands the router is written to the client with orjson."""
    orjson.dumps(value)


def _chunks_ok(pieces: Any) -> None:
    assert isinstance(pieces, list)
    for piece in pieces:
        assert isinstance(piece, dict)
        choices = piece.get("choices", [])
        assert isinstance(choices, list) and all(isinstance(c, dict) for c in choices), piece
        _relayable(piece)


# --- the SSE line decoder ---------------------------------------------------------------------


@FUZZ
@given(
    lines=few(
        st.binary(max_size=60) | st.sampled_from([b"\n", b"data: x\n", b": c\n"]), max_size=12
    )
)
def test_sse_decoder_any_lines(lines: list[bytes]) -> None:
    note(f"lines: {lines!r}")
    decoder = SSEDecoder(max_event_bytes=200)
    for line in lines:
        try:
            data = decoder.feed(line)
        except (UnicodeDecodeError, OverflowError):
            decoder = SSEDecoder(max_event_bytes=200)  # the stream is over; a new one starts
            continue
        assert data is None or isinstance(data, str)
    last = decoder.flush()
    assert last is None or isinstance(last, str)


@FUZZ
@given(
    events=few(
        st.lists(
            st.text(alphabet=st.characters(exclude_characters="\r\n")), min_size=1, max_size=3
        ),
        max_size=5,
    )
)
def test_sse_decoder_round_trip(events: list[list[str]]) -> None:
    """Events written as the format prescribes come back whole, in order."""
    decoder, got = SSEDecoder(), []
    for lines in events:
        wire = [b"data: " + line.encode() + b"\n" for line in lines] + [b": keep-alive\n", b"\n"]
        got += [d for d in map(decoder.feed, wire) if d is not None]
    assert got == ["\n".join(lines) for lines in events]


# --- provider replies ------------------------------------------------------------------------

PROTOCOLS = sorted(ADAPTERS)


def _as_received(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


@pytest.mark.parametrize("api", PROTOCOLS)
def test_parse_chat_response(api: str) -> None:
    adapter = ADAPTERS[api]

    @FUZZ
    @given(payload=REPLIES[api] | JSON)
    @example(payload=None).via("a JSON value that is not an object")
    @example(payload={"choices": [None], "candidates": [None], "content": [None]}).via("nulls")
    def run(payload: Any) -> None:
        note(f"payload: {payload!r}")
        try:
            completion = adapter.parse_chat_response(_as_received(payload))
        except UNREADABLE:
            return
        assert isinstance(completion.choices, list)  # empty: the router answers with none
        for choice in completion.choices:
            assert isinstance(choice, dict) and isinstance(choice.get("message"), dict), choice
        assert completion.usage is None or isinstance(completion.usage, dict)
        _relayable([completion.choices, completion.usage, completion.upstream_id])

    run()


def _on_the_wire(events: list[Any], junk: list[str | None]) -> list[str]:
    """Each event as the JSON text of an SSE `data`, a few replaced by text that is not JSON."""
    out = []
    for i, event in enumerate(events):
        bad = junk[i] if i < len(junk) else None
        out.append(bad if bad is not None else orjson.dumps(event).decode())
    return out


@pytest.mark.parametrize("api", PROTOCOLS)
def test_stream_decoder(api: str) -> None:
    adapter = ADAPTERS[api]
    junk = st.integers(0, 9).flatmap(lambda roll: TEXT if roll == 0 else st.none())
    structured = st.builds(_on_the_wire, STREAMS[api], st.lists(junk, min_size=10, max_size=10))
    anything = few(JSON.map(lambda v: orjson.dumps(v).decode()) | TEXT, max_size=4)
    stream = structured | anything

    @FUZZ
    @given(stream=stream)
    @example(stream=["null"]).via("a JSON value that is not an object")
    @example(stream=["[]", "1", '"x"', "{}"]).via("more of them")
    def run(stream: list[str]) -> None:
        note(f"events: {stream!r}")
        decoder = adapter.stream_decoder()
        for data in stream:
            try:
                pieces = decoder.feed(data)
            except UNREADABLE:
                return  # the router ends this attempt with a provider error
            _chunks_ok(pieces)

    run()


# --- requests: the chat request, the dialects, the adapters ------------------------------------


ENDPOINTS = [
    Endpoint(provider="p", upstream_model="m", max_completion_tokens=4096, model_id="a/m"),
    Endpoint(provider="p", upstream_model="m", supported_parameters=["max_tokens", "tools"]),
]
PROVIDERS = {
    "openai": [
        Provider(slug="p", name="P", api="openai", base_url="http://x/v1", api_key="k"),
        Provider(
            slug="p",
            name="P",
            api="openai",
            base_url="http://x/v1",
            quirks=Quirks(
                drop_params=["seed"],
                rename_params={"max_completion_tokens": "max_tokens"},
                reasoning="object",
                json_schema="json_object",
                stream_usage=False,
            ),
        ),
    ],
    "anthropic": [Provider(slug="p", name="P", api="anthropic", base_url="http://x", api_key="k")],
    "gemini": [Provider(slug="p", name="P", api="gemini", base_url="http://x/v1beta")],
}


def _build_everywhere(body: dict[str, Any]) -> None:
    """`body` (accepted by parse_chat_request) through every adapter, as the router sends it."""
    for api, adapter in ADAPTERS.items():
        for provider in PROVIDERS[api]:
            for endpoint in ENDPOINTS:
                for stream in (False, True):
                    built = _build(adapter, body, endpoint, provider, stream=stream)
                    assert isinstance(built.body, bytes) and isinstance(
                        orjson.loads(built.body), dict
                    )


def _build(
    adapter: Adapter, body: dict[str, Any], endpoint: Endpoint, provider: Provider, *, stream: bool
) -> UpstreamRequest:
    try:
        return adapter.build_chat_request(body, endpoint, provider, stream=stream)
    except Exception as exc:  # nothing is documented: the request was valid
        raise AssertionError(
            f"{adapter.api} build_chat_request raised {exc!r} on {body!r}"
        ) from exc


def _accepted(body: Any) -> bool:
    try:
        parse_chat_request(body)
    except GatewayError as error:
        assert error.status == 400, error
        return False
    return True


@FUZZ
@given(body=CHAT)
def test_build_chat_request(body: dict[str, Any]) -> None:
    note(f"body: {body!r}")
    if _accepted(body):
        _build_everywhere(body)


# --- inbound dialects ------------------------------------------------------------------------

DIALECTS = {
    "messages": (messages_to_chat, MESSAGES),
    "responses": (responses_to_chat, RESPONSES),
    "completions": (completions_to_chat, COMPLETIONS),
}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_dialect_to_chat(dialect: str) -> None:
    """A dialect's request becomes a chat request or a 400; what the chat validation accepts,
    every adapter can send."""
    to_chat, requests = DIALECTS[dialect]

    @MORE
    @given(raw=maybe(requests))
    def run(raw: Any) -> None:
        raw = _as_received(raw)
        note(f"request: {raw!r}")
        try:
            chat = to_chat(raw)
        except GatewayError as error:
            assert error.status == 400, error
            return
        assert isinstance(chat, dict)
        if _accepted(chat):
            _build_everywhere(chat)

    run()
