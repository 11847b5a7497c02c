"""Validation at the edge of /messages and /responses: a wrong type is a 400 in the dialect's
own envelope, naming the field the client sent (never an internal chat field, never a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crossroads.errors import GatewayError
from crossroads.schema.chat import parse_translated_request
from harness import HTTP, Server
from spec_check import SpecChecker

MESSAGE = {"model": "acme/open", "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}
RESPONSE = {"model": "acme/open", "input": "x"}
TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}
FUNCTION = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
CALLED = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather"}]}


@pytest.fixture(scope="module")
def spec() -> Iterator[SpecChecker]:
    yield SpecChecker()


def messages(server: Server, body: dict[str, Any]) -> Any:
    return HTTP.post(
        server.url("/api/v1/messages"), headers={"x-api-key": server.api_key}, json=body
    )


def responses(server: Server, body: dict[str, Any]) -> Any:
    return HTTP.post(server.base_url + "/responses", headers=server.headers(), json=body)


def user(*blocks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


# (fields replacing MESSAGE's, the path the error must name)
MESSAGES_CASES = [
    ({"messages": "hello"}, "$.messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "$.messages[0].content"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "$.messages[0].role"),
    ({"messages": user({"type": "text", "text": 5})}, "$.messages[0].content[0].text"),
    ({"messages": user({"type": "text"})}, "$.messages[0].content[0]"),
    ({"messages": user({"type": "image", "source": "x"})}, "$.messages[0].content[0].source"),
    ({"messages": user({"type": "video"})}, "$.messages[0].content[0].type"),
    (
        {"messages": user({"type": "tool_result", "tool_use_id": "t1", "content": 5})},
        "$.messages[0].content[0].content",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{**CALLED["content"][0], "input": "x"}]},
            ]
        },
        "$.messages[1].content[0].input",
    ),
    ({"system": 5}, "$.system"),
    ({"system": [{"type": "text", "text": None}]}, "$.system[0].text"),
    ({"thinking": "enabled"}, "$.thinking"),
    ({"thinking": {"type": "enabled", "budget_tokens": "lots"}}, "$.thinking.budget_tokens"),
    ({"thinking": {"type": "sometimes"}}, "$.thinking.type"),
    ({"tools": "get_weather"}, "$.tools"),
    ({"tools": [{**TOOL, "name": 5}]}, "$.tools[0].name"),
    ({"tools": [{**TOOL, "input_schema": "object"}]}, "$.tools[0].input_schema"),
    ({"tools": [{**TOOL, "description": ["a"]}]}, "$.tools[0].description"),
    ({"tool_choice": "auto"}, "$.tool_choice"),
    ({"tool_choice": {"type": "tool", "name": 5}}, "$.tool_choice.name"),
    (
        {"tool_choice": {"type": "any", "disable_parallel_tool_use": "yes"}},
        "$.tool_choice.disable_parallel_tool_use",
    ),
    ({"metadata": "me"}, "$.metadata"),
    ({"metadata": {"user_id": 5}}, "$.metadata.user_id"),
    ({"max_tokens": "many"}, "$.max_tokens"),
    ({"stop_sequences": "END"}, "$.stop_sequences"),
    ({"temperature": "hot"}, "$.temperature"),
    ({"stream": "yes"}, "$.stream"),
    (
        {"output_config": {"format": {"type": "json_schema", "schema": 5}}},
        "$.output_config.format.schema",
    ),
]
# the same neighbourhoods, valid: the controls of the cases above
MESSAGES_VALID = [
    {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
    {"tools": [TOOL], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
    {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
    {"thinking": {"type": "enabled", "budget_tokens": 10}, "metadata": {"user_id": "u1"}},
]


@pytest.mark.parametrize("fields", MESSAGES_VALID)
def test_messages_valid_neighbours(server: Server, fields: dict[str, Any]) -> None:
    assert messages(server, {**MESSAGE, **fields}).status_code == 200


@pytest.mark.parametrize(("fields", "path"), MESSAGES_CASES)
def test_messages_wrong_types_are_400_naming_the_field(
    server: Server, spec: SpecChecker, fields: dict[str, Any], path: str
) -> None:
    r = messages(server, {**MESSAGE, **fields})
    assert r.status_code == 400, r.text
    error = r.json()
    spec.check("AnthropicMessagesErrorResponse", error)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert f"at `{path}`" in error["error"]["message"], error["error"]["message"]


RESPONSES_CASES = [
    ({"input": 5}, "$.input"),
    ({"input": [{"role": "user", "content": 5}]}, "$.input[0].content"),
    ({"input": [{"role": "robot", "content": "x"}]}, "$.input[0].role"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
        "$.input[0].content[0].text",
    ),
    (
        {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
        "$.input[0].arguments",
    ),
    (
        {"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
        "$.input[0].output",
    ),
    ({"input": [{"type": "reasoning", "summary": "thought"}]}, "$.input[0].summary"),
    ({"input": [{"type": "web_search_call", "id": "w"}]}, "$.input[0].type"),
    ({"reasoning": "high"}, "$.reasoning"),
    ({"reasoning": {"effort": 5}}, "$.reasoning.effort"),
    ({"reasoning": {"summary": "everything"}}, "$.reasoning.summary"),
    ({"text": "json"}, "$.text"),
    ({"text": {"format": "json"}}, "$.text.format"),
    (
        {"text": {"format": {"type": "json_schema", "name": "a", "schema": "object"}}},
        "$.text.format.schema",
    ),
    ({"tools": "get_weather"}, "$.tools"),
    ({"tools": [{**FUNCTION, "name": 5}]}, "$.tools[0].name"),
    ({"tools": [{**FUNCTION, "parameters": "object"}]}, "$.tools[0].parameters"),
    ({"tools": [{"type": "web_search"}]}, "$.tools[0].type"),
    ({"tool_choice": 5}, "$.tool_choice"),
    ({"tool_choice": "sometimes"}, "$.tool_choice"),
    ({"tool_choice": {"type": "function", "name": 5}}, "$.tool_choice.name"),
    ({"metadata": 5}, "$.metadata"),
    ({"metadata": {"team": 5}}, "$.metadata[...]"),  # msgspec does not name dict keys
    ({"max_output_tokens": "many"}, "$.max_output_tokens"),
    ({"instructions": 5}, "$.instructions"),
    ({"parallel_tool_calls": "yes"}, "$.parallel_tool_calls"),
    ({"temperature": "hot"}, "$.temperature"),
    ({"presence_penalty": "a bit"}, "$.presence_penalty"),
]


@pytest.mark.parametrize(("fields", "path"), RESPONSES_CASES)
def test_responses_wrong_types_are_400_naming_the_field(
    server: Server, spec: SpecChecker, fields: dict[str, Any], path: str
) -> None:
    r = responses(server, {**RESPONSE, **fields})
    assert r.status_code == 400, r.text
    error = r.json()
    spec.check("BadRequestResponse", error)
    assert error["error"]["code"] == 400
    assert f"at `{path}`" in error["error"]["message"], error["error"]["message"]


# limits the chat request has too: the error names the client's field, not the chat one
@pytest.mark.parametrize(
    ("dialect", "fields", "path"),
    [
        ("messages", {"tools": [{**TOOL, "name": "n" * 65}]}, "$.tools[0].name"),
        ("messages", {"tool_choice": {"type": "tool", "name": ""}}, "$.tool_choice.name"),
        ("messages", {"temperature": 3}, "$.temperature"),
        ("messages", {"stop_sequences": ["a", "b", "c", "d", "e"]}, "$.stop_sequences"),
        ("messages", {"max_tokens": 0}, "$.max_tokens"),
        ("messages", {"session_id": "s" * 300}, "$.session_id"),
        ("messages", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, None),
        ("responses", {"tools": [{**FUNCTION, "name": ""}]}, "$.tools[0].name"),
        ("responses", {"max_output_tokens": 0}, "$.max_output_tokens"),
        ("responses", {"top_p": 1.5}, "$.top_p"),
        (
            "responses",
            {"text": {"format": {"type": "json_schema", "name": "no spaces", "schema": {}}}},
            "$.text.format.name",
        ),
        (
            "responses",
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f1"}]}]},
            "$.input[0].content[0]",
        ),
    ],
)
def test_no_internal_field_names_in_errors(
    server: Server, dialect: str, fields: dict[str, Any], path: str | None
) -> None:
    r = (messages if dialect == "messages" else responses)(
        server, {**(MESSAGE if dialect == "messages" else RESPONSE), **fields}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "function" not in error["message"] and "json_schema" not in error["message"]
    assert "response_format" not in error["message"] and "$.stop`" not in error["message"]
    assert f"at `{path or '$.tools[0].type'}`" in error["message"], error["message"]


def test_unknown_fields_stay_allowed(server: Server) -> None:
    r = messages(
        server,
        {**MESSAGE, "context_management": {"edits": []}, "x-custom": 1, "service_tier": "auto"},
    )
    assert r.status_code == 200, r.text
    r = responses(server, {**RESPONSE, "include": ["reasoning.encrypted_content"], "x-custom": 1})
    assert r.status_code == 200, r.text


def test_stateless_rules(server: Server) -> None:
    for fields in ({"store": True}, {"background": True}, {"prompt": {"id": "pmpt_1"}}):
        r = responses(server, {**RESPONSE, **fields})
        assert r.status_code == 400 and next(iter(fields)) in r.json()["error"]["message"]


def test_whole_conversation_through_the_typed_translation(server: Server, sims) -> None:
    """Every kind of block reaches the provider, translated: nothing is dropped."""
    body = {
        **MESSAGE,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "tools": [TOOL],
        "messages": [
            *user(
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "url", "url": "http://img/a.png"}},
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "doc text"},
                },
            ),
            {
                **CALLED,
                "content": [
                    {"type": "text", "text": "calling"},
                    {**CALLED["content"][0], "input": {"city": "x"}},
                ],
            },
            *user(
                {"type": "tool_result", "tool_use_id": "t1", "content": "warm", "is_error": True}
            ),
        ],
    }
    assert messages(server, body).status_code == 200
    sent = sims["alpha"].last_body()["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert [p["type"] for p in sent[1]["content"]] == ["text", "image_url", "text"]
    assert sent[1]["content"][2]["text"] == "doc text"
    assert sent[2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"x"}',
    }
    assert sent[3] == {"role": "tool", "tool_call_id": "t1", "content": "Error: warm"}
    r = responses(
        server,
        {
            **RESPONSE,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "hi"},
                        {"type": "input_video", "video_url": "http://v"},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "done"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    sent_body = sims["alpha"].last_body()
    assert sent_body["presence_penalty"] == 0.5 and sent_body["frequency_penalty"] == -0.5
    assert [p["type"] for p in sent_body["messages"][0]["content"]] == ["text", "video_url"]
    assert r.json()["presence_penalty"] == 0.5 and r.json()["frequency_penalty"] == -0.5


def test_the_safety_net_never_names_an_internal_field() -> None:
    """A translated request the chat schema rejects: its error names the client's field
    when one maps, else no field at all."""
    renames = ((r"^\$\.tools\[(\d+)\]\.function\.", r"$.tools[\1]."),)
    tool = {"type": "function", "function": {"name": "n" * 65}}
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [tool]}
    with pytest.raises(GatewayError) as named:
        parse_translated_request(chat, renames)
    assert named.value.status == 400
    assert named.value.message.endswith("- at `$.tools[0].name`"), named.value.message
    chat = {"model": "m", "messages": [{"role": "user", "content": 5}]}
    with pytest.raises(GatewayError) as unnamed:
        parse_translated_request(chat, renames)
    assert unnamed.value.status == 400 and "$." not in unnamed.value.message
    assert unnamed.value.message.startswith("Invalid request: Expected")
    assert parse_translated_request({"messages": [{"role": "user", "content": "x"}]}, renames)
