"""Regressions: an empty routing plan, a stream broken after its end, a cut-off stream's
statistics, internal errors while streaming, log redaction, shared response state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from crossroads.api.http import _consume
from crossroads.api.messages.response import tool_use_block
from crossroads.errors import GatewayError
from crossroads.providers import builtin_adapters
from crossroads.providers.base import Completion
from crossroads.providers.http import _loggable
from crossroads.routing.attempt import Call
from crossroads.routing.context import ProviderTime, RequestContext
from crossroads.routing.job import Job
from crossroads.routing.plan import Plan
from crossroads.routing.relay import AnswerLeg, Leg, StreamLeg
from crossroads.routing.run import Run, Sinks, final_error
from crossroads.routing.service import Output, attempt_loop
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.schema.chat import parse_chat_request
from crossroads.schema.generation import GenerationRecord
from crossroads.telemetry.sample import AttemptSample
from harness import Server

PROVIDER = Provider(
    slug="p", name="P", api="openai", base_url="http://127.0.0.1:9/v1", api_key="p-secret-key"
)
ENDPOINT = Endpoint(provider="p", model_id="acme/x", upstream_model="x")


def _chunk(content: str | None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    return orjson.dumps(
        {"id": "u1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    ).decode()


class BrokenAfter:
    """An upstream client whose stream sends `events`, then breaks like a dropped connection."""

    def __init__(self, events: list[str]) -> None:
        self.sent = events

    async def events(self, response: Any, provider: Provider) -> AsyncIterator[str]:
        for data in self.sent:
            yield data
        raise aiohttp.ClientPayloadError("connection reset")


async def _collect(events: list[str]) -> list[dict[str, Any]]:
    adapter = builtin_adapters()["openai"]
    call = Call(PROVIDER, adapter, None, BrokenAfter(events), ProviderTime())  # type: ignore[arg-type]
    return [piece async for piece in call.chunks()]


# --- 1. an empty plan ---------------------------------------------------------------------------


def test_provider_constraints_leaving_nothing_is_a_404_envelope(server: Server) -> None:
    for stream in (False, True):
        r = server.chat(
            "acme/trio", provider={"order": ["nobody"], "allow_fallbacks": False}, stream=stream
        )
        assert r.status_code == 404, r.text
        error = r.json()["error"]
        assert error["code"] == 404 and "provider constraints" in error["message"]
        assert error["metadata"]["availability"]["code"] == "constraint_filtered"


def test_final_error_without_errors_is_not_an_index_error() -> None:
    error = final_error([])
    assert isinstance(error, GatewayError) and error.status == 404


# --- 3. a transport break after the protocol's end ----------------------------------------------


def test_a_break_after_the_finish_chunk_ends_a_complete_stream() -> None:
    pieces = asyncio.run(_collect([_chunk("hi"), _chunk(None, "stop")]))
    assert [p["choices"][0]["finish_reason"] for p in pieces] == [None, "stop"]


def test_a_break_before_the_end_is_still_a_failure() -> None:
    with pytest.raises(aiohttp.ClientPayloadError):  # `open()` turns it into an UpstreamError
        asyncio.run(_collect([_chunk("hi")]))


# --- 4, 5. streaming bookkeeping ----------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.samples: list[AttemptSample] = []
        self.records: list[GenerationRecord] = []
        self.charged: list[float] = []

    def observe(self, sample: AttemptSample) -> None:
        self.samples.append(sample)

    def settle(self, ticket: Any, *, cost: float, tokens: int) -> bool:
        self.charged.append(cost)
        return False

    def submit(self, record: GenerationRecord) -> None:
        self.records.append(record)


class FakeCall:
    provider = PROVIDER

    def __init__(self, pieces: list[dict[str, Any]]) -> None:
        self.pieces = pieces

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        for piece in self.pieces:
            await asyncio.sleep(0)
            yield piece

    async def completion(self) -> Completion:
        await asyncio.sleep(0)
        text = "".join(p["choices"][0]["delta"]["content"] for p in self.pieces)
        message = {"role": "assistant", "content": text}
        return Completion("u1", [{"index": 0, "message": message, "finish_reason": "stop"}], None)


class FakeUpstream:
    def __init__(self, pieces: list[dict[str, Any]]) -> None:
        self.pieces = pieces

    @asynccontextmanager
    async def call(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool, waits: Any
    ) -> Any:
        yield FakeCall(self.pieces)


def _attempts(
    pieces: list[dict[str, Any]], *, streamed: bool = True
) -> tuple[AsyncIterator[Output], Recorder]:
    """The attempt loop over one fake endpoint answering `pieces`, and what it records."""
    sink = Recorder()
    body = {"model": "acme/x", "messages": [{"role": "user", "content": "hi"}], "stream": streamed}
    job = Job(
        parse_chat_request(body),
        body,
        Plan(endpoints=[ENDPOINT], requested=["acme/x"], prompt_tokens=3),
        RequestContext(generation_id="gen-1", api_key_hash="k"),
        None,
    )
    run = Run(Sinks({"p": PROVIDER}, sink, sink, sink), job, streamed=streamed)
    kind: type[Leg] = StreamLeg if streamed else AnswerLeg
    return attempt_loop(FakeUpstream(pieces), run, kind), sink  # type: ignore[arg-type]


def _piece(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


def test_a_cancelled_stream_is_noted_but_not_measured() -> None:
    chunks, sink = _attempts([_piece(w) for w in ("one ", "two ", "three")])

    async def consume() -> None:
        await anext(chunks)
        await anext(chunks)
        await chunks.aclose()  # type: ignore[attr-defined]  # the client went away

    asyncio.run(consume())
    assert sink.samples == []  # a cut-off stream says nothing of the endpoint
    (record,) = sink.records
    assert record.cancelled and record.attempts[0]["status"] == 200
    assert "cancelled by client" in record.attempts[0]["error"]


@pytest.mark.parametrize("streamed", [True, False])
def test_an_internal_error_is_recorded_as_an_error_streamed_or_not(
    monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """A bug of the gateway's while billing the answer: an error record with code 500,
    charged nothing, whether the answer was streamed or not (the non-streamed path once
    recorded it as cancelled)."""
    chunks, sink = _attempts([_piece("one "), _piece("two ")], streamed=streamed)

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(Run, "bill", broken)

    async def consume() -> None:
        async for _ in chunks:
            pass

    with pytest.raises(KeyError):
        asyncio.run(consume())
    (record,) = sink.records
    assert not record.cancelled and record.finish_reason == "error"
    assert record.error is not None and record.error["code"] == 500
    assert sink.charged == [0]


def test_a_whole_answer_is_billed_on_the_estimate_when_usage_is_missing() -> None:
    chunks, sink = _attempts([_piece("one "), _piece("two")], streamed=False)

    async def consume() -> list[Output]:
        return [c async for c in chunks]

    (answer,) = asyncio.run(consume())
    assert isinstance(answer, dict) and answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "one two"
    assert answer["usage"]["prompt_tokens"] == 3 and answer["usage"]["completion_tokens"] > 0
    (record,) = sink.records
    assert record.finish_reason == "stop" and not record.cancelled
    assert len(sink.samples) == 1


# --- 6, 7, 8 ------------------------------------------------------------------------------------


def test_the_watcher_exception_is_retrieved() -> None:
    async def main() -> None:
        async def boom() -> None:
            raise RuntimeError("receive failed")

        task = asyncio.ensure_future(boom())
        await asyncio.sleep(0)
        _consume(task)
        assert task._log_traceback is False  # type: ignore[attr-defined]

    asyncio.run(main())


def test_logged_urls_carry_no_credentials() -> None:
    url = "http://bob:hunter22@h:8/v1/chat?key=abcdefgh&x=p-secret-key"
    logged = _loggable(url, PROVIDER)
    assert "hunter22" not in logged and "abcdefgh" not in logged and "p-secret-key" not in logged
    assert logged.startswith("http://h:8/v1/chat")


def test_tool_use_blocks_share_no_state() -> None:
    a, b = tool_use_block("1", "f", {}), tool_use_block("2", "g", {})
    a["caller"]["type"] = "changed"
    assert b["caller"] == {"type": "direct"}
