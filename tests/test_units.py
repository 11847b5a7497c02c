"""Pure functions: translation, pricing, ordering, SSE decoding, settings, catalog loading."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from crossroads.accounting.money import Bill, to_pico, to_usd
from crossroads.accounting.pricing import usage_cost
from crossroads.catalog import ConfigError, load_catalog
from crossroads.ids import RandomIds
from crossroads.providers.base import normalise_finish_reason
from crossroads.providers.openai.adapter import OpenAIAdapter, to_openai_body
from crossroads.providers.sse import SSEDecoder
from crossroads.routing.ordering import load_balanced
from crossroads.routing.tokens import estimate_prompt_tokens
from crossroads.schema.catalog import Endpoint, Provider, Quirks
from crossroads.settings import Settings


def ep(tag: str, prompt: str, completion: str, **extra) -> Endpoint:
    e = Endpoint(
        provider=tag, tag=tag, pricing={"prompt": prompt, "completion": completion, **extra}
    )
    e.model_id = "m/x"
    e.upstream_model = "up"
    return e


def test_cost_with_cache_reasoning_discount_and_insurance() -> None:
    e = ep(
        "a",
        "0.000002",
        "0.000010",
        input_cache_read="0.0000005",
        internal_reasoning="0.00002",
        request="0.001",
    )
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "prompt_tokens_details": {"cached_tokens": 400},
        "completion_tokens_details": {"reasoning_tokens": 50},
    }
    bill = usage_cost(usage, e, "stop")
    prompt = 600 * 2e-6 + 400 * 0.5e-6 + 0.001
    completion = 150 * 10e-6 + 50 * 20e-6
    assert bill.prompt == to_pico(prompt) and bill.completion == to_pico(completion)
    assert bill.total == to_pico(prompt) + to_pico(completion)
    e.pricing["discount"] = 0.25
    assert to_usd(usage_cost(usage, e, "stop").total) == pytest.approx((prompt + completion) * 0.75)
    assert usage_cost(usage, e, "error") == Bill()
    assert usage_cost({"prompt_tokens": 10, "completion_tokens": 0}, e, None).total == 0


def test_pricing_overrides_for_long_prompts() -> None:
    e = ep(
        "a", "0.000001", "0.000002", overrides=[{"min_prompt_tokens": 200000, "prompt": "0.000004"}]
    )
    assert usage_cost({"prompt_tokens": 1000, "completion_tokens": 0}, e, "stop").total == to_pico(
        1000e-6
    )
    long = usage_cost({"prompt_tokens": 300000, "completion_tokens": 0}, e, "stop")
    assert long.total == to_pico(1.2)


def test_openai_body_drops_router_fields_and_unsupported_parameters() -> None:
    e = ep("a", "0", "0")
    e.supported_parameters = ["max_tokens", "temperature"]
    provider = Provider(
        slug="a",
        name="A",
        api="openai",
        base_url="http://x/v1",
        quirks=Quirks(drop_params=["seed"], rename_params={"temperature": "temp"}),
    )
    body = {
        "model": "m/x",
        "models": ["m/y"],
        "provider": {"sort": "price"},
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 9,
        "temperature": 0.5,
        "top_k": 3,
        "seed": 1,
        "safe_prompt": True,
        "stream": False,
        "user": "alice",
        "plugins": [],
        "top_p": None,
    }
    out = to_openai_body(body, e, provider, stream=True)
    assert out == {
        "model": "up",
        "messages": body["messages"],
        "max_tokens": 9,
        "temp": 0.5,
        "safe_prompt": True,
        "user": out["user"],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert out["user"] != "alice"


def test_openai_adapter_request_and_response() -> None:
    provider = Provider(slug="a", name="A", api="openai", base_url="http://x/v1/", api_key="secret")
    req = OpenAIAdapter().build_chat_request(
        {"messages": []}, ep("a", "0", "0"), provider, stream=False
    )
    assert (
        req.url == "http://x/v1/chat/completions"
        and req.headers["Authorization"] == "Bearer secret"
    )
    assert orjson.loads(req.body)["model"] == "up"
    c = OpenAIAdapter().parse_chat_response(
        {
            "id": "x",
            "choices": [
                {
                    "message": {"content": "hi", "reasoning_content": "because"},
                    "finish_reason": "eos",
                }
            ],
        }
    )
    assert c.choices[0]["finish_reason"] == "stop" and c.choices[0]["native_finish_reason"] == "eos"
    assert c.choices[0]["message"] == {
        "role": "assistant",
        "content": "hi",
        "refusal": None,
        "reasoning": "because",
        "reasoning_details": [
            {"type": "reasoning.text", "text": "because", "format": "unknown", "index": 0}
        ],
    }
    with pytest.raises(ValueError):
        OpenAIAdapter().parse_chat_response({"object": "error"})
    with pytest.raises(ValueError):
        OpenAIAdapter().stream_decoder().feed('{"error": {"message": "boom"}}')


@pytest.mark.parametrize(
    ("native", "normal"),
    [
        ("stop", "stop"),
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("SAFETY", "content_filter"),
        ("function_call", "tool_calls"),
        (None, None),
        ("weird", "stop"),
    ],
)
def test_finish_reasons(native, normal) -> None:
    assert normalise_finish_reason(native) == normal


def test_sse_decoder() -> None:
    d = SSEDecoder()
    lines = [
        b": comment\n",
        b"event: x\n",
        b'data: {"a":\n',
        b"data:1}\r\n",
        b"\n",
        b"\n",
        b"data: [DONE]\n",
    ]
    assert [x for x in (d.feed(line) for line in lines) if x is not None] == ['{"a":\n1}']
    assert d.flush() == "[DONE]"


def test_load_balancing_weights_inverse_square_of_price() -> None:
    endpoints = [ep("a", "0.000001", "0"), ep("b", "0.000002", "0"), ep("c", "0.000003", "0")]
    rng = random.Random(7)
    firsts = Counter(load_balanced(endpoints, rng)[0].tag for _ in range(20000))
    assert firsts["a"] / firsts["c"] == pytest.approx(9, rel=0.15)
    assert firsts["a"] / firsts["b"] == pytest.approx(4, rel=0.1)
    order = load_balanced(endpoints, rng)
    assert sorted(order[1:], key=lambda e: e.tag) == order[1:]  # the rest by price


def test_prompt_estimate_counts_text_media_and_tools() -> None:
    plain = estimate_prompt_tokens({"messages": [{"role": "user", "content": "x" * 400}]})
    assert plain == 104
    media = estimate_prompt_tokens(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x" * 40},
                        {"type": "image_url", "image_url": {"url": "data:"}},
                    ],
                }
            ]
        }
    )
    assert media == 10 + 4 + 1000


def test_settings_precedence() -> None:
    s = Settings.load(
        {"port": 9000, "host": None},
        file_settings={"port": 1, "stream_keepalive_seconds": 3},
        env={"CROSSROADS_PORT": "2", "CROSSROADS_ROUTING_SEED": "5"},
    )
    assert (s.port, s.stream_keepalive_seconds, s.routing_seed, s.host) == (
        9000,
        3.0,
        5,
        "127.0.0.1",
    )
    with pytest.raises(ConfigError):
        Settings.load(file_settings={"colour": "blue"}, env={})
    with pytest.raises(ConfigError, match="setting port: cannot use 'eighty'"):
        Settings.load({"port": "eighty"}, env={})
    with pytest.raises(ConfigError, match="setting routing_seed: cannot use 'x'"):
        Settings.load(env={"CROSSROADS_ROUTING_SEED": "x"})


@pytest.mark.parametrize(
    "env",
    [
        {"CROSSROADS_CIRCUIT_FAILURES": "-1"},
        {"CROSSROADS_CIRCUIT_COOLDOWN_SECONDS": "0"},
        {"CROSSROADS_CIRCUIT_COOLDOWN_SECONDS": "90"},  # past the 60 s maximum
        {"CROSSROADS_STATS_FLUSH_INTERVAL_SECONDS": "-5"},
        {"CROSSROADS_ACCESS_LOG": "perhaps"},
        {"CROSSROADS_TELEMETRY": "2"},
    ],
)
def test_telemetry_settings_are_checked(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.load(env=env)


def test_boolean_settings_read_words() -> None:
    s = Settings.load(env={"CROSSROADS_ACCESS_LOG": "yes", "CROSSROADS_TELEMETRY": "off"})
    assert (s.access_log, s.telemetry) == (True, False)
    assert Settings.load(env={"CROSSROADS_CIRCUIT_FAILURES": "0"}).circuit_failures == 0


def test_catalog_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'nobody'"):
        load_catalog(
            {"models": [{"id": "a/b", "endpoints": [{"provider": "nobody"}]}]},
            adapters={"openai"},
            env={},
        )
    with pytest.raises(ConfigError, match="context_length"):
        load_catalog(
            {"models": [{"id": "a/b", "context_length": "big"}]}, adapters={"openai"}, env={}
        )
    with pytest.raises(ConfigError, match="bogus"):
        load_catalog(
            {"providers": [{"slug": "x", "name": "X", "bogus": 1}]}, adapters={"openai"}, env={}
        )
    catalog = load_catalog(
        {"providers": [{"slug": "deepinfra", "api": "openai", "api_key_env": "DI_KEY"}]},
        adapters={"openai"},
        env={"DI_KEY": "k"},
    )
    assert catalog.providers["deepinfra"].usable and catalog.providers["deepinfra"].api_key == "k"
    assert catalog.providers["deepinfra"].name == "DeepInfra"  # bundled fields kept


def test_reasoning_resolution_and_effort_mapping() -> None:
    from crossroads.providers.reasoning import resolve_reasoning

    assert resolve_reasoning({}) is None
    assert resolve_reasoning({"include_reasoning": True}).enabled
    assert resolve_reasoning({"include_reasoning": False}).exclude
    spec = resolve_reasoning({"reasoning": {"effort": "high"}})
    assert spec.enabled and spec.budget(10000) == 8000 and spec.effort_for(None) == "high"
    budget = resolve_reasoning({"reasoning": {"max_tokens": 2000}})
    assert budget.budget(999) == 2000 and budget.effort_for(10000) == "low"
    assert not resolve_reasoning({"reasoning_effort": "none"}).enabled
    assert resolve_reasoning({"reasoning": {"enabled": True}}).effort_for(None) == "medium"


def test_openai_reasoning_and_json_schema_quirks() -> None:
    e = ep("a", "0", "0")
    e.supported_parameters = ["reasoning", "response_format", "max_tokens"]
    provider = Provider(slug="a", name="A", api="openai", base_url="http://x/v1")
    body = {
        "messages": [],
        "reasoning": {"max_tokens": 500},
        "max_tokens": 1000,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "p", "schema": {"type": "object"}},
        },
    }
    out = to_openai_body(body, e, provider, stream=False)
    assert out["reasoning_effort"] == "medium" and "reasoning" not in out
    assert out["response_format"]["type"] == "json_schema"
    provider.quirks = Quirks(json_schema="json_object", reasoning="object")
    out = to_openai_body(body, e, provider, stream=False)
    assert out["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    assert out["reasoning"] == {"max_tokens": 500}
    e.supported_parameters = ["max_tokens"]
    assert "reasoning" not in to_openai_body(body, e, provider, stream=False)


def test_random_ids_are_hex_of_the_length_asked_and_never_repeat() -> None:
    ids = RandomIds(block=64)  # a small block: most ids cross into a new one
    made = [ids.hex(10) for _ in range(2000)] + [ids.hex(100)]  # one larger than a block
    assert all(len(i) == 20 for i in made[:-1]) and len(made[-1]) == 200
    assert all(int(i, 16) >= 0 for i in made)
    assert len(set(made)) == len(made)
