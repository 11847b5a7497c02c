"""POST /responses with the openai SDK's responses.create, and legacy /completions, over every
upstream protocol."""

from __future__ import annotations

import json

import openai
import pytest

from harness import HTTP, Server
from test_protocols import UPSTREAMS

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(params=list(UPSTREAMS))
def model(request: pytest.FixtureRequest) -> str:
    return request.param


def test_response(server: Server, model: str) -> None:
    r = server.openai().responses.create(
        model=model, input="hello there", instructions="Be brief.", max_output_tokens=100
    )
    assert r.output_text == f"{UPSTREAMS[model][0]} says: hello there"
    assert r.status == "completed" and r.model == model and r.object == "response"
    assert r.usage.output_tokens == 4 and r.usage.input_tokens > 0 and r.usage.total_tokens > 4
    received = r.model_extra["provider"]
    assert received


def test_streamed_response(server: Server, model: str) -> None:
    events = list(server.openai().responses.create(model=model, input="stream me", stream=True))
    kinds = [e.type for e in events]
    assert (
        kinds[:2] == ["response.created", "response.in_progress"]
        and kinds[-1] == "response.completed"
    )
    assert (
        "".join(e.delta for e in events if e.type == "response.output_text.delta")
        == f"{UPSTREAMS[model][0]} says: stream me"
    )
    final = events[-1].response
    assert (
        final.output_text == f"{UPSTREAMS[model][0]} says: stream me"
        and final.usage.output_tokens == 4
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with server.openai().responses.stream(model=model, input="helper") as stream:
        assert stream.get_final_response().output_text.endswith("says: helper")


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_and_outputs(server: Server, model: str, stream: bool) -> None:
    client = server.openai()
    if stream:
        events = list(
            client.responses.create(
                model=model, input="weather in Quito?", tools=[WEATHER], stream=True
            )
        )
        assert "response.function_call_arguments.delta" in {e.type for e in events}
        first = events[-1].response
    else:
        first = client.responses.create(model=model, input="weather in Quito?", tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "example"}
    second = client.responses.create(
        model=model,
        tools=[WEATHER],
        tool_choice="none",
        input=[
            {"role": "user", "content": "weather in Quito?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "mild"},
        ],
    )
    assert second.output_text.startswith(UPSTREAMS[model][0])


def test_reasoning_and_structured_output(server: Server, model: str) -> None:
    r = server.openai().responses.create(model=model, input="a b c", reasoning={"effort": "low"})
    reasoning = next(item for item in r.output if item.type == "reasoning")
    assert reasoning.content[0].text == "The user wrote 3 words."
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    r = server.openai().responses.create(
        model=model,
        input="json please",
        text={
            "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
        },
    )
    assert json.loads(r.output_text) == {"ok": True}


def test_incomplete_and_stateless_rules(server: Server) -> None:
    r = server.openai().responses.create(
        model="acme/open", input="one two three", max_output_tokens=2
    )
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    with pytest.raises(openai.BadRequestError):
        server.openai().responses.create(
            model="acme/open", input="x", previous_response_id="resp_123"
        )
    with pytest.raises(openai.BadRequestError):
        server.openai().responses.create(model="acme/open", input="x", store=True)


def test_stream_failure_becomes_response_failed(server: Server, sims) -> None:
    sims["alpha"].configure(die_after_chunks=2)
    events = list(
        server.openai().responses.create(model="acme/open", input="one two three", stream=True)
    )
    assert events[-1].type == "response.failed" and events[-1].response.error.message


def test_legacy_completions(server: Server, model: str) -> None:
    c = server.openai().completions.create(model=model, prompt="Once upon a time", max_tokens=50)
    assert (
        c.object == "text_completion"
        and c.choices[0].text == f"{UPSTREAMS[model][0]} says: Once upon a time"
    )
    assert c.choices[0].finish_reason == "stop" and c.usage.completion_tokens == 6
    pieces = list(server.openai().completions.create(model=model, prompt="in a land", stream=True))
    assert (
        "".join(p.choices[0].text for p in pieces if p.choices)
        == f"{UPSTREAMS[model][0]} says: in a land"
    )
    assert pieces[-1].usage.completion_tokens == 5
    r = HTTP.post(
        server.base_url + "/completions",
        headers=server.headers(),
        json={"model": model, "prompt": ["a", "b"]},
    )
    assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]
