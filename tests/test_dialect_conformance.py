"""/messages and /responses replies and stream events against the reference OpenAPI schemas,
through every upstream protocol; the `openrouter` SDK's `responses.send`; reasoning summaries
through the openai SDK (what the Vercel AI SDK and LangChain read)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from openrouter import OpenRouter

from harness import HTTP, Server
from spec_check import SpecChecker, sse_events
from test_protocols import UPSTREAMS

TOOL = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
FUNCTION = {"type": "function", "name": "get_weather", "parameters": TOOL["input_schema"]}
THOUGHT = "The user wrote 3 words."  # what the simulators think aloud about "a b c"


@pytest.fixture(scope="module")
def spec() -> Iterator[SpecChecker]:
    yield SpecChecker()


@pytest.fixture(params=list(UPSTREAMS))
def model(request: pytest.FixtureRequest) -> str:
    return request.param


def post(server: Server, path: str, body: dict[str, Any]) -> Any:
    return HTTP.post(server.base_url + path, headers=server.headers(), json=body)


def stream(server: Server, path: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    with HTTP.stream(
        "POST", server.base_url + path, headers=server.headers(), json={**body, "stream": True}
    ) as r:
        assert r.status_code == 200
        return sse_events(list(r.iter_lines()))


MESSAGES_SCENARIOS = {
    "text": {"max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]},
    "thinking and tools": {
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "tools": [TOOL],
        "messages": [{"role": "user", "content": "weather in Lima?"}],
    },
    "thinking and text": {
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [{"role": "user", "content": "a b c"}],
    },
    "max tokens": {"max_tokens": 2, "messages": [{"role": "user", "content": "one two three"}]},
}


@pytest.mark.parametrize("scenario", list(MESSAGES_SCENARIOS))
def test_messages_match_the_spec(
    server: Server, spec: SpecChecker, model: str, scenario: str
) -> None:
    body = {"model": model, **MESSAGES_SCENARIOS[scenario]}
    r = post(server, "/messages", body)
    assert r.status_code == 200, r.text
    message = r.json()
    spec.check("MessagesResult", message)
    for key in ("container", "stop_details", "stop_sequence"):  # required, nullable
        assert key in message and message[key] is None
    assert all(b["citations"] is None for b in message["content"] if b["type"] == "text")
    usage = message["usage"]
    for key in ("cache_creation", "server_tool_use", "service_tier", "inference_geo"):
        assert key in usage and usage[key] is None
    if "thinking" in body:
        assert usage["output_tokens_details"]["thinking_tokens"] > 0
    events = stream(server, "/messages", body)
    spec.check_events("MessagesStreamingResponse", events)
    kinds = [name for name, _ in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == message["stop_reason"]
    assert delta["usage"]["output_tokens"] == usage["output_tokens"]
    assert delta["usage"]["input_tokens"] == usage["input_tokens"]


def test_messages_errors_match_the_spec(server: Server, spec: SpecChecker, sims) -> None:
    base = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    bad = post(server, "/messages", {"model": "acme/open", **base, "max_tokens": "x"})
    missing = post(server, "/messages", {"model": "acme/none", **base})
    for r, status, kind in ((bad, 400, "invalid_request_error"), (missing, 404, "not_found_error")):
        assert r.status_code == status
        spec.check("AnthropicMessagesErrorResponse", r.json())
        assert r.json()["error"]["type"] == kind
    sims["alpha"].configure(die_after_chunks=2)
    events = stream(server, "/messages", {"model": "acme/open", **base, "max_tokens": 50})
    spec.check_events("MessagesStreamingResponse", events)
    assert events[-1][0] == "error"


RESPONSES_SCENARIOS = {
    "text": {"input": "hello there", "instructions": "Be brief.", "max_output_tokens": 100},
    "reasoning summary and tools": {
        "input": "weather in Lima?",
        "tools": [FUNCTION],
        "reasoning": {"effort": "low", "summary": "auto"},
        "metadata": {"team": "a"},
    },
    "reasoning and text": {"input": "a b c", "reasoning": {"effort": "low"}},
    "incomplete": {"input": "one two three", "max_output_tokens": 2},
    "json": {
        "input": "json please",
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}},
        "temperature": 0.5,
        "presence_penalty": 0.1,
        "parallel_tool_calls": None,
    },
}


@pytest.mark.parametrize("scenario", list(RESPONSES_SCENARIOS))
def test_responses_match_the_spec(
    server: Server, spec: SpecChecker, model: str, scenario: str
) -> None:
    body = {"model": model, **RESPONSES_SCENARIOS[scenario]}
    r = post(server, "/responses", body)
    assert r.status_code == 200, r.text
    response = r.json()
    spec.check("OpenResponsesResult", response)
    assert response["parallel_tool_calls"] is True
    assert response["presence_penalty"] == body.get("presence_penalty")
    assert response["frequency_penalty"] is None
    if response["status"] == "completed":
        assert response["completed_at"] >= response["created_at"]
    else:
        assert response["completed_at"] is None
    events = stream(server, "/responses", body)
    spec.check_events("ResponsesStreamingResponse", events)
    kinds = [name for name, _ in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == f"response.{response['status']}"
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == [i["type"] for i in response["output"]]
    assert final["usage"] == response["usage"]


def test_responses_failures_match_the_spec(server: Server, spec: SpecChecker, sims) -> None:
    r = post(server, "/responses", {"model": "acme/none", "input": "x"})
    assert r.status_code == 404
    spec.check("NotFoundResponse", r.json())
    sims["alpha"].configure(die_after_chunks=3)
    events = stream(server, "/responses", {"model": "acme/open", "input": "one two three"})
    spec.check_events("ResponsesStreamingResponse", events)
    failed = events[-1][1]["response"]
    assert events[-1][0] == "response.failed" and failed["status"] == "failed"
    assert failed["error"]["message"] and failed["completed_at"] is None


def openrouter_sdk(server: Server) -> OpenRouter:
    return OpenRouter(api_key=server.api_key, server_url=server.base_url)


def test_openrouter_sdk_responses_send(server: Server, model: str) -> None:
    with openrouter_sdk(server) as client:
        r = client.responses.send(model=model, input="hello there", temperature=0.3)
    assert r.status == "completed" and r.completed_at is not None and r.model == model
    assert r.parallel_tool_calls is True and r.temperature == 0.3 and r.presence_penalty is None
    message = next(item for item in r.output if item.type == "message")
    assert message.content[0].text == f"{UPSTREAMS[model][0]} says: hello there"
    assert r.usage.output_tokens == 4


def test_openrouter_sdk_responses_send_streamed(server: Server, model: str) -> None:
    with openrouter_sdk(server) as client:
        with client.responses.send(model=model, input="stream me", stream=True) as events:
            seen = list(events)
    kinds = [e.type for e in seen]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert text == f"{UPSTREAMS[model][0]} says: stream me"
    final = seen[-1].response
    assert final.status == "completed" and final.completed_at is not None
    assert final.output[0].content[0].text == text


def expected_reasoning_tokens(model: str, output_tokens: int) -> int:
    if UPSTREAMS[model][1] == "gemini":  # the Gemini simulator counts its thoughts
        return len(THOUGHT.split())  # a token a word
    return min(math.ceil(len(THOUGHT) / 4), output_tokens)  # estimated from the text


@pytest.mark.parametrize("summary", ["auto", "concise", "detailed"])
def test_reasoning_summary_through_the_openai_sdk(server: Server, model: str, summary: str) -> None:
    reasoning = {"effort": "low", "summary": summary}
    r = server.openai().responses.create(model=model, input="a b c", reasoning=reasoning)
    item = r.output[0]
    assert item.type == "reasoning" and [s.text for s in item.summary] == [THOUGHT]
    assert item.content[0].text == THOUGHT
    assert r.usage.output_tokens_details.reasoning_tokens == expected_reasoning_tokens(
        model, r.usage.output_tokens
    )
    events = list(
        server.openai().responses.create(
            model=model, input="a b c", reasoning=reasoning, stream=True
        )
    )
    kinds = [e.type for e in events]
    summary_kinds = [k for k in kinds if k.startswith("response.reasoning_summary")]
    assert summary_kinds == [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == THOUGHT
    done = next(e for e in events if e.type == "response.reasoning_summary_part.done")
    assert done.part.text == THOUGHT and done.summary_index == 0
    # the reasoning item is done before the answer starts, as OpenAI streams it
    assert kinds.index("response.output_item.done") < kinds.index("response.output_text.delta")
    final = events[-1].response
    assert final.output[0].summary[0].text == THOUGHT
    assert final.usage.output_tokens_details.reasoning_tokens > 0
    with server.openai().responses.stream(model=model, input="a b c", reasoning=reasoning) as s:
        assert s.get_final_response().output[0].summary[0].text == THOUGHT


def test_no_summary_unless_asked(server: Server) -> None:
    r = server.openai().responses.create(
        model="acme/open", input="a b c", reasoning={"effort": "low"}
    )
    assert r.output[0].summary == [] and r.output[0].content[0].text == THOUGHT
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    kinds = {
        e.type
        for e in server.openai().responses.create(
            model="acme/open", input="a b c", reasoning={"effort": "low"}, stream=True
        )
    }
    assert "response.reasoning_text.delta" in kinds
    assert not any(k.startswith("response.reasoning_summary") for k in kinds)
    r = server.openai().responses.create(model="acme/open", input="a b c")
    assert r.usage.output_tokens_details.reasoning_tokens == 0


def test_anthropic_sdk_sees_the_new_fields(server: Server, model: str) -> None:
    client = anthropic.Anthropic(base_url=server.url("/api"), api_key=server.api_key, max_retries=0)
    args = {
        "model": model,
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "tools": [TOOL],
        "messages": [{"role": "user", "content": "weather in Lima?"}],
    }
    with client.messages.stream(**args) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use" and final.stop_details is None
    assert final.container is None and final.usage.output_tokens_details.thinking_tokens > 0
    tool_use = final.content[-1]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "example"}
    follow = client.messages.create(
        **{
            **args,
            "messages": [
                *args["messages"],
                final.to_param(),
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": tool_use.id, "content": "warm"}
                    ],
                },
            ],
        }
    )
    assert follow.content[-1].type in ("text", "tool_use") and follow.id.startswith("gen-")
