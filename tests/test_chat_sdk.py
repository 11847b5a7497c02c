"""Chat completions through the official SDKs, against real simulated providers."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openrouter import OpenRouter

from harness import Server

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def openrouter_stream_text(client: OpenRouter, content: str) -> str:
    text = ""
    with client.chat.send(
        model="acme/widget-1", messages=[{"role": "user", "content": content}], stream=True
    ) as events:
        for chunk in events:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    return text


def test_openai_sdk_non_streaming(server: Server) -> None:
    raw = server.openai().chat.completions.with_raw_response.create(
        model="acme/widget-1", messages=[{"role": "user", "content": "hello there"}]
    )
    r = raw.parse()
    assert r.id.startswith("gen-") and raw.headers["x-generation-id"] == r.id
    assert r.model == "acme/widget-1"
    assert r.model_extra["provider"] == "Alpha"
    assert r.choices[0].message.content == "alpha says: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].model_extra["native_finish_reason"] == "stop"
    # the simulator counts 4 prompt tokens + 3 per message, and 4 completion tokens
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 4, 9)
    assert r.usage.model_extra["cost"] == pytest.approx(5 * 1e-6 + 4 * 2e-6)
    details = r.usage.model_extra["cost_details"]
    assert details["upstream_inference_prompt_cost"] == pytest.approx(5e-6)
    assert details["upstream_inference_completions_cost"] == pytest.approx(8e-6)


def test_openai_sdk_streaming(server: Server) -> None:
    stream = server.openai().chat.completions.create(
        model="acme/widget-1", messages=[{"role": "user", "content": "stream please"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha says: stream please"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("gen-")
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 4  # "alpha says: stream please"
    assert chunks[-1].usage.model_extra["cost"] > 0


def test_raw_stream_framing(server: Server) -> None:
    body = {
        "model": "acme/widget-1",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=body, headers=server.headers()
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-generation-id"].startswith("gen-")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2].removeprefix("data: "))
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0
    assert last["id"] == r.headers["x-generation-id"]


def test_keepalive_comments_while_waiting_for_first_token(server: Server, sims) -> None:
    sims["alpha"].configure(latency_ms=700)
    body = {
        "model": "acme/widget-1",
        "stream": True,
        "messages": [{"role": "user", "content": "slow"}],
    }
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=body, headers=server.headers()
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert first_data >= 2 and all(line == ": OPENROUTER PROCESSING" for line in lines[:first_data])
    assert lines[-1] == "data: [DONE]"


def test_tools_pass_through(server: Server, sims) -> None:
    r = server.openai().chat.completions.create(
        model="acme/widget-1",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "example"
    }
    sent = sims["alpha"].last_body()
    assert (
        sent["tools"] == [WEATHER_TOOL]
        and sent["tool_choice"] == "auto"
        and sent["model"] == "mock-model"
    )

    follow_up = server.openai().chat.completions.create(
        model="acme/widget-1",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tool_choice="none",
    )
    assert follow_up.choices[0].message.content.startswith("alpha says:")
    assert sims["alpha"].last_body()["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "sunny",
    }


def test_tools_streaming(server: Server) -> None:
    stream = server.openai().chat.completions.create(
        model="acme/widget-1",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments) == {
        "city": "example"
    }
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["tool_calls"]


def test_openrouter_sdk(server: Server) -> None:
    with OpenRouter(
        api_key=server.api_key,
        server_url=server.base_url,
        http_referer="https://example.app",
        x_open_router_title="Example App",
    ) as client:
        res = client.chat.send(
            model="acme/widget-1", messages=[{"role": "user", "content": "hi"}], stream=False
        )
        assert res.choices[0].message.content == "alpha says: hi"
        assert res.id.startswith("gen-") and res.model == "acme/widget-1"
        record = server.generation(res.id)
        assert (
            record["http_referer"] == "https://example.app" and record["app_title"] == "Example App"
        )

        assert openrouter_stream_text(client, "yo") == "alpha says: yo"


def test_generation_lookup(server: Server) -> None:
    r = server.chat("acme/widget-1", "count me", max_tokens=3).json()
    g = server.generation(r["id"])
    assert g["id"] == r["id"] and g["model"] == "acme/widget-1" and g["provider_name"] == "Alpha"
    assert g["tokens_prompt"] == r["usage"]["prompt_tokens"] and g["tokens_completion"] == 3
    assert g["total_cost"] == pytest.approx(r["usage"]["cost"])
    assert g["finish_reason"] == "length" and g["native_finish_reason"] == "length"
    assert g["streamed"] is False and g["latency"] > 0
    assert [a["status"] for a in g["provider_responses"]] == [200]
    other = server.create_key("someone else")["key"]
    assert server.get(f"/generation?id={r['id']}", key=other).status_code == 404
    assert server.get("/generation?id=gen-missing").status_code == 404


def test_openrouter_sdk_reads_generation(server: Server) -> None:
    r = server.chat("acme/widget-1", "look me up").json()
    with OpenRouter(api_key=server.api_key, server_url=server.base_url) as client:
        g = client.generations.get_generation(id=r["id"])
    assert g.data.id == r["id"] and g.data.total_cost == pytest.approx(r["usage"]["cost"])


def test_v1_alias(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url("/v1"), api_key=server.api_key, max_retries=0)
    assert client.chat.completions.create(
        model="acme/widget-1", messages=[{"role": "user", "content": "a"}]
    ).id


def test_openrouter_sdk_stream_tolerates_keepalive_comments(server: Server, sims) -> None:
    sims["alpha"].configure(latency_ms=700)  # several keep-alive comments before the first token
    with OpenRouter(api_key=server.api_key, server_url=server.base_url) as client:
        assert openrouter_stream_text(client, "patience") == "alpha says: patience"
