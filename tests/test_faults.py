"""The fault matrix: every way a provider breaks, on every wire protocol, through every API.

One Crossroads server sits in front of a fault-injecting simulator ("faulty", which speaks
OpenAI, Anthropic and Gemini) and a healthy one ("ok"). Each model puts a broken endpoint
first and the healthy one second (`:floor`: cheapest first, whatever happened before).
For each fault x wire protocol x inbound API (streamed and not), the client gets a clean
fallback (the fault came before any output) or the dialect's error event (it came after),
never a 500; the generation record exists and says what happened; nothing is charged
wrongly; no credential and no network detail reaches the client or the record.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from crossroads.providers import builtin_adapters
from crossroads.providers.base import UpstreamError
from crossroads.providers.http import UpstreamClient, UpstreamLimits
from crossroads.routing.attempt import Upstream
from crossroads.routing.context import ProviderTime
from crossroads.schema.catalog import Endpoint, Provider
from harness import HTTP, Blackhole, Server, Simulator, dead_port

PROTOCOLS = ("openai", "anthropic", "gemini")
APIS = ("chat", "messages", "responses", "completions")
PROMPT = "hello there my good friend"
FAULTY_TEXT = f"faulty says: {PROMPT}"
HEALTHY_TEXT = f"ok says: {PROMPT}"
MAX_TOKENS = 64
CONTEXT = 8192
KEYS = {  # the providers' own keys: never shown to a client, never recorded
    "openai": "sk-faulty-openai-0123456789abcdef",
    "anthropic": "zebra-horse-battery-staple-anthropic",
    "gemini": "zebra-horse-battery-staple-gemini",
    "ok": "sk-healthy-0123456789abcdef",
}
NAMES = {"fault": "Faulty", "stall": "Stalling", "timing": "Timing"}  # of the broken providers
FIRST_OUTPUT = {"openai": 2, "anthropic": 4, "gemini": 1}  # as simulator/<protocol>.py says
PRICES = {"faulty": (1.0, 2.0), "ok": (3.0, 4.0)}  # USD per million tokens: prompt, completion
SHORT = 0.1  # the timeouts of the "timing" providers, whose faults come before any output
IDLE = 0.5  # how long the "stall" providers may stay silent: their first output comes sooner
DEADLINE = 1.0  # how long any stream may run here: the legitimate ones take milliseconds


def _base_url(sim: Simulator | Blackhole | None, port: int, protocol: str) -> str:
    path = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta"}[protocol]
    return sim.url(path) if sim is not None else f"http://127.0.0.1:{port}{path}"


def fault_config(faulty: Simulator, ok: Simulator, hole: Blackhole, dead: int) -> dict:
    providers: list[dict[str, Any]] = [
        {"slug": "ok", "name": "Ok", "api": "openai", "base_url": ok.url(), "api_key": KEYS["ok"]}
    ]
    models = []
    for p in PROTOCOLS:
        common = {"api": p, "api_key": KEYS[p]}
        providers += [
            {"slug": f"f-{p}", "name": f"Faulty {p}", "base_url": _base_url(faulty, 0, p),
             "timeout_seconds": 10, **common},
            {"slug": f"s-{p}", "name": f"Stalling {p}", "base_url": _base_url(faulty, 0, p),
             "timeout_seconds": IDLE, **common},
            {"slug": f"t-{p}", "name": f"Timing {p}", "base_url": _base_url(faulty, 0, p),
             "timeout_seconds": SHORT, **common},
            {"slug": f"dead-{p}", "name": f"Dead {p}", "base_url": _base_url(None, dead, p),
             **common},
            {"slug": f"hole-{p}", "name": f"Hole {p}", "base_url": _base_url(hole, 0, p),
             "connect_timeout_seconds": SHORT, **common},
        ]  # fmt: skip
        for family, slug in (
            ("fault", "f"),
            ("stall", "s"),
            ("timing", "t"),
            ("refused", "dead"),
            ("hole", "hole"),
        ):
            models.append(
                {
                    "id": f"{family}/{p}",
                    "endpoints": [_endpoint(f"{slug}-{p}", "faulty"), _endpoint("ok", "ok")],
                }
            )
        models.append({"id": f"alone/{p}", "endpoints": [_endpoint(f"f-{p}", "faulty")]})
    return {
        "server": {
            "upstream_stream_timeout_seconds": DEADLINE,
            "stream_keepalive_seconds": 5.0,
            "circuit_failures": 0,  # every case must reach its faulty endpoint first
        },
        "providers": providers,
        "models": models,
    }


def _endpoint(provider: str, prices: str) -> dict[str, Any]:
    prompt, completion = PRICES[prices]
    return {
        "provider": provider,
        "upstream_model": f"{provider}-model",
        "context_length": CONTEXT,
        "max_completion_tokens": 1024,
        "pricing": {"prompt": f"{prompt / 1e6:.10f}", "completion": f"{completion / 1e6:.10f}"},
    }


@pytest.fixture(scope="module")
def hole() -> Iterator[Blackhole]:
    h = Blackhole()
    yield h
    h.close()


@pytest.fixture(scope="module")
def dead() -> int:
    return dead_port()


@pytest.fixture(scope="module")
def faulty() -> Iterator[Simulator]:
    sim = Simulator("faulty")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def fserver(
    faulty: Simulator, hole: Blackhole, dead: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    ok = Simulator("ok")
    srv = Server(tmp_path_factory.mktemp("faults"), fault_config(faulty, ok, hole, dead))
    yield srv
    srv.stop()
    ok.stop()


@pytest.fixture(autouse=True)
def _healthy_again(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "faulty" in request.fixturenames:
        request.getfixturevalue("faulty").reset()


# --- one request through one inbound API, and what came back --------------------------------


def request_body(api: str, model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    messages = [{"role": "user", "content": PROMPT}]
    if api == "chat":
        body = {"messages": messages, "max_tokens": MAX_TOKENS}
    elif api == "messages":
        body = {"messages": messages, "max_tokens": MAX_TOKENS}
    elif api == "responses":
        body = {"input": PROMPT, "max_output_tokens": MAX_TOKENS}
    else:
        body = {"prompt": PROMPT, "max_tokens": MAX_TOKENS}
    path = {"chat": "/chat/completions"}.get(api, f"/{api}")
    return path, {"model": model, "stream": stream, **body}


@dataclass
class Answer:
    status: int
    raw: str  # everything the client received
    generation_id: str | None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    text: str = ""
    ended: bool = False  # the dialect's normal end (non-streamed: a 200)
    error: dict[str, Any] | None = None  # the error body or the stream's error event
    events: list[tuple[str, Any]] = field(default_factory=list)


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    name, data = "", []
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        yield name, "\n".join(data)


def _read_stream(api: str, answer: Answer, lines: Iterator[str]) -> None:
    for name, data in _sse(lines):
        if data == "[DONE]":
            answer.events.append(("done", None))
            answer.ended = True
            continue
        event = json.loads(data)
        answer.events.append((name, event))
        if api in ("chat", "completions"):
            if event.get("error"):
                answer.error = event["error"]
            for choice in event.get("choices") or []:
                piece = (
                    choice.get("text") if api == "completions" else choice["delta"].get("content")
                )
                answer.text += piece or ""
        elif api == "messages":
            if name == "error":
                answer.error = event["error"]
            elif name == "message_stop":
                answer.ended = True
            elif name == "content_block_delta" and event["delta"]["type"] == "text_delta":
                answer.text += event["delta"]["text"]
        else:
            if name == "response.failed":
                answer.error = event["response"]["error"]
            elif name == "response.completed":
                answer.ended = True
            elif name == "response.output_text.delta":
                answer.text += event["delta"]


def _text(api: str, body: dict[str, Any]) -> str:
    if api == "chat":
        return body["choices"][0]["message"]["content"] or ""
    if api == "completions":
        return body["choices"][0]["text"]
    if api == "messages":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    return "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def ask(server: Server, api: str, model: str, stream: bool) -> Answer:
    path, body = request_body(api, model, stream)
    url = server.base_url + path
    if not stream:
        r = HTTP.post(url, json=body, headers=server.headers())
        answer = Answer(r.status_code, r.text, r.headers.get("x-generation-id"), r.headers)
        payload = r.json()
        if r.status_code == 200:
            answer.text, answer.ended = _text(api, payload), True
        else:
            answer.error = payload.get("error")
        return answer
    with httpx.stream("POST", url, json=body, headers=server.headers(), timeout=30) as r:
        raw = r.read().decode()
    answer = Answer(r.status_code, raw, r.headers.get("x-generation-id"), r.headers)
    if r.headers["content-type"].startswith("application/json"):
        answer.error = json.loads(raw).get("error")
        return answer
    _read_stream(api, answer, iter(raw.splitlines()))
    return answer


def cost(prices: str, prompt: int, completion: int) -> float:
    p, c = PRICES[prices]
    return round((prompt * p + completion * c) / 1e6, 12)


# --- the faults ------------------------------------------------------------------------------

Sim = dict[str, Any] | Callable[[str], dict[str, Any]]
COMPLETION_FIELD = {"openai": "completion_tokens", "anthropic": "output_tokens",
                    "gemini": "candidatesTokenCount"}  # fmt: skip
PROMPT_FIELD = {"openai": "prompt_tokens", "anthropic": "input_tokens",
                "gemini": "promptTokenCount"}  # fmt: skip


@dataclass(frozen=True)
class Fault:
    sim: Sim  # the simulator's behaviour, or a function of the protocol giving it
    words: str  # what the failed attempt's error says (a piece of it, any case)
    family: str = "fault"  # which model: the broken endpoint's provider
    plain: str = "fallback"  # the non-streamed outcome: fallback | served
    streamed: str | Callable[[str], str] = "fallback"  # fallback | midstream | served
    status: int | None = None  # the failed attempt's status (200 mid-stream)
    stream_family: str | None = None  # a different model for the streamed case


def _usage(value: Any, field_of: dict[str, str] = COMPLETION_FIELD) -> Callable[[str], dict]:
    return lambda p: {"usage": {field_of[p]: value}}


def _after(fault: str) -> dict[str, Any]:
    return {"fault": fault, "fault_after_output": True}


FAULTS: dict[str, Fault] = {
    "http_500": Fault({"fail_rate": 1, "status": 500}, "simulated failure", status=500),
    "http_503": Fault({"fail_rate": 1, "status": 503}, "simulated failure", status=503),
    "rate_limited": Fault(
        {"fail_rate": 1, "status": 429, "retry_after": "7"}, "simulated failure", status=429
    ),
    "auth_echo": Fault(
        {"fail_rate": 1, "status": 401, "echo_credentials": True}, "credentials", status=401
    ),
    "connect_refused": Fault({}, "connection refused", family="refused"),
    "connect_timeout": Fault({}, "timed out", family="hole"),
    "slow_headers": Fault({"headers_delay_ms": 5000}, "timed out", family="timing"),
    "slow_first_byte": Fault({"first_byte_delay_ms": 5000}, "timed out", family="timing"),
    "malformed": Fault({"fault": "malformed"}, "invalid response|stream failed"),
    "malformed_after_output": Fault(
        _after("malformed"), "invalid response|stream failed", streamed="midstream"
    ),
    "invalid_utf8": Fault({"fault": "invalid_utf8"}, "utf-8"),
    "invalid_utf8_after_output": Fault(_after("invalid_utf8"), "utf-8", streamed="midstream"),
    "oversized": Fault({"fault": "oversized"}, "larger than"),
    "oversized_after_output": Fault(_after("oversized"), "larger than", streamed="midstream"),
    "deep": Fault({"fault": "deep"}, "deeper than"),
    "deep_after_output": Fault(_after("deep"), "deeper than", streamed="midstream"),
    "died_after_output": Fault(
        lambda p: {"die_after_chunks": FIRST_OUTPUT[p] + 1},
        "closed the connection",
        plain="served",  # non-streamed answers are whole: nothing dies
        streamed="midstream",
    ),
    "cut": Fault({"fault": "cut"}, "closed the connection|ended the stream", streamed="midstream"),
    "stall": Fault(
        {**_after("stall"), "give_up_seconds": 10},
        "timed out",
        family="timing",
        stream_family="stall",
        streamed="midstream",
    ),
    "endless": Fault(
        {"fault": "endless", "give_up_seconds": 3},  # past DEADLINE: the gateway ends it first
        "timed out|did not finish",
        family="timing",
        stream_family="fault",
        streamed="midstream",
    ),
    "finish_reason_type": Fault({"finish_reason": 42}, "not a string", streamed="midstream"),
    "usage_type": Fault(
        _usage("12"),
        "not a number",
        # Anthropic reports usage in its first event, the others in their last
        streamed=lambda p: "fallback" if p == "anthropic" else "midstream",
    ),
    "usage_negative": Fault(
        _usage(-5), "negative", streamed=lambda p: "fallback" if p == "anthropic" else "midstream"
    ),
    "usage_absurd": Fault(
        lambda p: {"usage": {PROMPT_FIELD[p]: 10**15, COMPLETION_FIELD[p]: 10**13}},
        "usage clamped",
        plain="served",
        streamed="served",
    ),
}


def _case_ids() -> Iterator[Any]:
    for name in FAULTS:
        for protocol in PROTOCOLS:
            for api in APIS:
                for stream in (False, True):
                    mode = "stream" if stream else "plain"
                    yield pytest.param(
                        name, protocol, api, stream, id=f"{name}-{protocol}-{api}-{mode}"
                    )


@pytest.mark.parametrize(("name", "protocol", "api", "stream"), list(_case_ids()))
def test_fault(
    fserver: Server, faulty: Simulator, dead: int, hole: Blackhole,
    name: str, protocol: str, api: str, stream: bool,
) -> None:  # fmt: skip
    fault = FAULTS[name]
    settings = fault.sim(protocol) if callable(fault.sim) else fault.sim
    if settings:
        faulty.configure(**settings)
    family = (fault.stream_family if stream else None) or fault.family
    outcome = fault.plain if not stream else fault.streamed
    outcome = outcome(protocol) if callable(outcome) else outcome
    answer = ask(fserver, api, f"{family}/{protocol}:floor", stream)

    assert answer.status != 500 and answer.status == 200, answer.raw[:500]
    assert answer.generation_id, "every answer names its generation record"
    record = fserver.generation(answer.generation_id)
    assert record["streamed"] is stream and record["cancelled"] is False
    for shown in (answer.raw, json.dumps(record)):
        for secret in KEYS.values():
            assert secret not in shown
        assert f":{dead}" not in shown and f":{hole.port}" not in shown
        assert "Bearer sk-" not in shown and "127.0.0.1" not in shown
    attempts = record["attempts"]

    if outcome == "fallback":
        assert answer.text == HEALTHY_TEXT and answer.ended and answer.error is None
        assert record["provider_name"] == "Ok" and record["finish_reason"] == "stop"
        assert record["error"] is None
        assert [a["status"] for a in attempts] == [fault.status, 200]
        assert _matches(fault.words, attempts[0]["error"])
        assert record["total_cost"] == cost(
            "ok", record["tokens_prompt"], record["tokens_completion"]
        )
        assert record["total_cost"] > 0
    elif outcome == "midstream":
        assert answer.error is not None and not answer.ended, answer.raw[-800:]
        if name == "endless":  # the same words again and again
            assert answer.text.startswith("faulty") and len(answer.text) > len(FAULTY_TEXT)
        else:
            assert answer.text and FAULTY_TEXT.startswith(answer.text)
        assert "retry" in answer.error["message"].lower()
        assert _matches(fault.words, answer.error["message"])
        assert record["provider_name"] == f"{NAMES[family]} {protocol}"
        assert record["finish_reason"] == "error" and record["error"]["code"] in (408, 502)
        assert record["total_cost"] == 0  # zero-completion insurance: an error is not charged
        assert [a["status"] for a in attempts] == [200]
        assert _matches(fault.words, attempts[0]["error"])
    else:  # served by the faulty provider, its usage bounded
        assert answer.text == FAULTY_TEXT and answer.ended and answer.error is None
        assert record["provider_name"] == f"Faulty {protocol}" and record["error"] is None
        assert record["finish_reason"] == "stop"
        assert record["tokens_prompt"] <= CONTEXT and record["tokens_completion"] <= MAX_TOKENS
        expected = cost("faulty", record["tokens_prompt"], record["tokens_completion"])
        assert record["total_cost"] == expected and record["total_cost"] < 0.01
        assert [a["status"] for a in attempts] == [200]
        if name == "usage_absurd":
            assert _matches(fault.words, attempts[0]["error"])


def _matches(words: str, text: str | None) -> bool:
    return text is not None and any(w in text.lower() for w in words.lower().split("|"))


# --- faults the matrix does not cover ---------------------------------------------------------

USAGE_FIELDS = {
    "openai": ["prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
               "completion_tokens_details"],
    "anthropic": ["input_tokens", "output_tokens", "cache_read_input_tokens",
                  "cache_creation_input_tokens"],
    "gemini": ["promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
               "cachedContentTokenCount", "totalTokenCount", "toolUsePromptTokenCount"],
}  # fmt: skip
WRONG = ["12", [1], {"n": 1}, True, 1.5, -1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_every_usage_field_of_the_wrong_type_is_a_provider_error(
    fserver: Server, faulty: Simulator, protocol: str, stream: bool
) -> None:
    for name in USAGE_FIELDS[protocol]:
        for value in WRONG:
            if isinstance(value, dict) and name.endswith("_details"):
                value = {"cached_tokens": "12", "reasoning_tokens": "12"}
            faulty.configure(usage={name: value})
            answer = ask(fserver, "chat", f"fault/{protocol}:floor", stream)
            assert answer.status == 200, (name, value, answer.raw[:300])
            record = fserver.generation(answer.generation_id)
            if answer.error is None:  # fell back before any output
                assert answer.text == HEALTHY_TEXT and record["provider_name"] == "Ok"
                assert [a["status"] for a in record["attempts"]] == [None, 200], (name, value)
            else:  # the usage came after the text: the stream ends with the error
                assert stream and record["finish_reason"] == "error"
                assert record["total_cost"] == 0
            failure = record["attempts"][0]["error"]
            assert "usage" in failure.lower() and name in failure, (name, value, failure)


def _http_date(seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("7", (7, 7)),
        ("2.5", (3, 3)),
        ("http-date", (20, 31)),
        ("http-date-past", None),
        ("1e12", (3600, 3600)),
        ("inf", None),
        ("nan", None),
        ("-5", None),
        ("soon", None),
    ],
)
def test_retry_after_when_every_provider_is_rate_limited(
    fserver: Server,
    faulty: Simulator,
    protocol: str,
    stream: bool,
    sent: str,
    expected: tuple[int, int] | None,
) -> None:
    header = {"http-date": _http_date(30), "http-date-past": _http_date(-30)}.get(sent, sent)
    faulty.configure(fail_rate=1, status=429, retry_after=header)
    answer = ask(fserver, "chat", f"alone/{protocol}", stream)
    assert answer.status == 429 and answer.error is not None
    retry = answer.headers.get("retry-after")
    if expected is None:
        assert retry is None
    else:
        assert retry is not None and expected[0] <= int(retry) <= expected[1], retry
    hint = answer.error["metadata"]["availability"]["retry_after"]
    assert hint is None if expected is None else math.isfinite(hint) and 0 < hint <= 3600
    record = fserver.generation(answer.generation_id)
    assert record["finish_reason"] == "error" and record["total_cost"] == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("api", APIS)
def test_an_error_body_echoing_credentials_reaches_the_client_redacted(
    fserver: Server, faulty: Simulator, protocol: str, api: str
) -> None:
    faulty.configure(fail_rate=1, status=401, echo_credentials=True)
    sent = faulty.state()
    for stream in (False, True):
        answer = ask(fserver, api, f"alone/{protocol}", stream)
        assert answer.status == 401 and answer.error is not None, answer.raw[:300]
        record = fserver.generation(answer.generation_id)
        for shown in (answer.raw, json.dumps(record)):
            assert KEYS[protocol] not in shown and "[REDACTED]" in shown
        assert "invalid credentials" in answer.raw
        assert record["error"]["code"] == 401 and record["total_cost"] == 0
    received = faulty.state()["received"][len(sent["received"]) :]
    assert any(KEYS[protocol] in json.dumps(r["headers"]) for r in received)  # it was sent


def test_network_details_stay_in_the_server_log(fserver: Server, dead: int) -> None:
    answer = ask(fserver, "chat", "refused/openai:floor", False)
    record = fserver.generation(answer.generation_id)
    assert answer.status == 200 and str(dead) not in answer.raw + json.dumps(record)
    assert "connection refused" in record["attempts"][0]["error"]
    deadline = time.monotonic() + 5
    while f"127.0.0.1:{dead}" not in fserver.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"127.0.0.1:{dead}" in fserver.log()  # the operator sees where it failed


async def test_the_upstream_client_enforces_its_limits(faulty: Simulator) -> None:
    """The limits themselves, in-process against the simulator: a stream's deadline and
    idle time, one event's size, a body's size."""

    async def attempt(limits: UpstreamLimits, *, stream: bool) -> None:
        client = UpstreamClient(limits=limits)
        await client.start()
        provider = Provider(slug="f", name="F", api="openai", base_url=faulty.url(), api_key="k")
        endpoint = Endpoint(provider="f", upstream_model="m")
        upstream = Upstream({"f": provider}, builtin_adapters(), client)
        body = {"model": "x", "messages": [{"role": "user", "content": PROMPT}]}
        try:
            async with upstream.call(endpoint, body, stream=stream, waits=ProviderTime()) as call:
                if stream:
                    async for _ in call.chunks():
                        pass
                else:
                    await call.completion()
        finally:
            await client.close()

    cases = [
        ({"fault": "endless"}, UpstreamLimits(stream_seconds=0.5), "did not finish within 0.5 s"),
        (_after("stall"), UpstreamLimits(idle_seconds=0.3), "sent nothing for 0.3 s"),
        ({}, UpstreamLimits(max_event_bytes=50), "event larger than 50 bytes"),
    ]
    for behaviour, limits, words in cases:
        faulty.reset(give_up_seconds=10, **behaviour)
        with pytest.raises(UpstreamError, match=words):
            await attempt(limits, stream=True)
    faulty.reset()
    with pytest.raises(UpstreamError, match="answer is larger than 100 bytes"):
        await attempt(UpstreamLimits(max_body_bytes=100), stream=False)
    faulty.reset()
    await attempt(UpstreamLimits(max_body_bytes=2000, max_event_bytes=500), stream=True)
    await attempt(UpstreamLimits(max_body_bytes=2000, max_event_bytes=500), stream=False)
