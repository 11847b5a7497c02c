"""The shared wire helpers: one behaviour each, pinned here."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import pytest

from crossroads.catalog.loader import _api_key, _config_problem
from crossroads.providers.anthropic.request import to_anthropic_body
from crossroads.providers.anthropic.response import chat_usage_from_anthropic
from crossroads.providers.gemini.request import to_gemini_body
from crossroads.providers.gemini.response import chat_usage_from_gemini
from crossroads.providers.openai.adapter import to_openai_body
from crossroads.providers.wire import (
    RAW_ARGUMENTS_KEY,
    append_turn,
    hash_user_id,
    json_object,
    parse_tool_arguments,
    split_data_url,
)
from crossroads.schema.catalog import Endpoint, Provider, parse_price


def test_hash_user_id_is_32_hex_digits_of_sha256_of_str() -> None:
    assert hash_user_id("user-42") == "6d894aa3ee802549d7f340e7c1cf0d1c"
    assert hash_user_id(42) == hash_user_id("42")


def test_every_protocol_hashes_the_user_the_same_way() -> None:
    endpoint = Endpoint(provider="p", upstream_model="m")
    provider = Provider(slug="p", name="P", api="openai", base_url="http://x/v1")
    body = {"messages": [{"role": "user", "content": "hi"}], "user": "user-42"}
    expected = "6d894aa3ee802549d7f340e7c1cf0d1c"
    assert to_openai_body(body, endpoint, provider, stream=False)["user"] == expected
    assert to_anthropic_body(body, endpoint, stream=False)[0]["metadata"] == {"user_id": expected}


def test_split_data_url() -> None:
    assert split_data_url("data:image/png;base64,AAAA", "x/y") == ("image/png", "AAAA")
    assert split_data_url("data:;base64,AAAA", "x/y") == ("x/y", "AAAA")
    assert split_data_url("data:a/b;name=f;base64,A;base64,B", "x/y") == (
        "a/b;name=f",
        "A;base64,B",
    )
    assert split_data_url("data:text/plain,hello", "x/y") is None  # not base64
    assert split_data_url("https://x.test/a.png", "x/y") is None


def test_append_turn_merges_consecutive_turns_of_one_role() -> None:
    turns: list[dict[str, Any]] = []
    append_turn(turns, "user", [{"n": 1}], items_key="parts")
    append_turn(turns, "user", [{"n": 2}], items_key="parts")
    append_turn(turns, "model", [], items_key="parts")  # nothing to add: no turn
    append_turn(turns, "model", [{"n": 3}], items_key="parts")
    append_turn(turns, "user", [{"n": 4}], items_key="parts")
    assert turns == [
        {"role": "user", "parts": [{"n": 1}, {"n": 2}]},
        {"role": "model", "parts": [{"n": 3}]},
        {"role": "user", "parts": [{"n": 4}]},
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ({"a": 1}, {"a": 1}),
        (None, {}),
        ("", {}),
        ("[1, 2]", {"w": [1, 2]}),
        ("3", {"w": 3}),
        ("not json", {"w": "not json"}),
        (7, {"w": 7}),
    ],
)
def test_json_object(value: object, expected: dict[str, Any]) -> None:
    assert json_object(value, wrap_key="w") == expected


def test_parse_tool_arguments_keeps_what_is_not_an_object_under_raw() -> None:
    assert RAW_ARGUMENTS_KEY == "_raw"
    assert parse_tool_arguments('{"city": "Oslo"}') == {"city": "Oslo"}
    assert parse_tool_arguments(None) == parse_tool_arguments("") == {}
    assert parse_tool_arguments('{"city": ') == {"_raw": '{"city": '}
    assert parse_tool_arguments("[1]") == {"_raw": [1]}


def test_both_protocols_parse_tool_arguments_alike() -> None:
    endpoint = Endpoint(provider="p", upstream_model="m")
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{bad"}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call]}]
    body = {"messages": messages}
    anthropic = to_anthropic_body(body, endpoint, stream=False)[0]["messages"][1]["content"][0]
    gemini = to_gemini_body(body, endpoint)["contents"][1]["parts"][0]["functionCall"]
    assert anthropic["input"] == gemini["args"] == {"_raw": "{bad"}


def test_parse_price() -> None:
    assert parse_price("0.000002") == Decimal("0.000002")
    assert parse_price(0.1) == Decimal("0.1")  # via str(): not the float's binary expansion
    assert parse_price(3) == Decimal(3)
    assert parse_price(None) == parse_price("") == Decimal(0)
    with pytest.raises(InvalidOperation):
        parse_price("cheap")


def test_blended_price_is_prompt_plus_completion() -> None:
    e = Endpoint(
        provider="p", pricing={"prompt": "0.000001", "completion": "0.000003", "request": "1"}
    )
    assert e.blended_price() == Decimal("0.000004")
    assert Endpoint(provider="p").blended_price() == Decimal(0)


def test_chat_usage_from_anthropic_counts_cache_in_prompt() -> None:
    raw = {
        "input_tokens": 10,
        "cache_read_input_tokens": 5,
        "cache_creation_input_tokens": 2,
        "output_tokens": 7,
    }
    assert chat_usage_from_anthropic(raw) == {
        "prompt_tokens": 17,
        "completion_tokens": 7,
        "total_tokens": 24,
        "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 2},
    }


def test_chat_usage_from_gemini_counts_thoughts_as_completion() -> None:
    meta = {
        "promptTokenCount": 10,
        "toolUsePromptTokenCount": 1,
        "candidatesTokenCount": 4,
        "thoughtsTokenCount": 3,
        "cachedContentTokenCount": 2,
    }
    assert chat_usage_from_gemini(meta) == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


def test_provider_key_and_config_problem_are_pure() -> None:
    provider = Provider(slug="p", name="P", api="openai", base_url="http://x", api_key_env="P_KEY")
    assert _api_key(provider, {"P_KEY": "k"}) == "k"
    assert _api_key(provider, {"P_KEY": ""}) is None
    assert _config_problem(provider, {"openai"}, "k", requires_key=True) is None
    assert _config_problem(provider, {"openai"}, None, requires_key=False) == (
        "missing credentials: set P_KEY"
    )
    assert provider.api_key is None  # neither call set it
    keyless = Provider(slug="q", name="Q", api="openai", base_url="http://x")
    assert _config_problem(keyless, {"openai"}, None, requires_key=False) is None
    assert "api_key_env" in (_config_problem(keyless, {"openai"}, None, requires_key=True) or "")
    assert "not supported" in (_config_problem(keyless, {"gemini"}, "k", requires_key=False) or "")
