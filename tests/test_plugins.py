"""OpenRouter's `plugins`: `response-healing`, and a 400 for any plugin not implemented.

Pure tests of the healing (`plugins/healing.py`) and of which plugins a request asks for,
then through the server and the `openai` SDK, with a simulated provider whose reply is
set verbatim (`reply`): almost-JSON repaired, what cannot be repaired sent as it came, and
the generation record saying which.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from crossroads.errors import GatewayError
from crossroads.plugins import HEALING, plugins_of
from crossroads.plugins.healing import MAX_HEALED_CHARS, heal
from crossroads.schema.chat import ResponseFormat, parse_chat_request
from harness import Server, Simulator, endpoint, provider
from limits_setup import recorded

OBJECT = ResponseFormat(type="json_object")
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
STRICT = parse_chat_request(
    {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}},
    }
).response_format
assert STRICT is not None


# -- the healing, pure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ('```json\n{"city": "Oslo", "days": 3,}\n```', {"city": "Oslo", "days": 3}),
        ("{city: 'Oslo', \"days\": 3", {"city": "Oslo", "days": 3}),  # unquoted, truncated
        ('Here it is: {"city": "Oslo", "days": 3} // done', {"city": "Oslo", "days": 3}),
    ],
)
def test_almost_json_is_repaired_and_checked(reply: str, value: dict[str, Any]) -> None:
    for fmt in (OBJECT, STRICT):
        healed = heal(reply, fmt)
        assert orjson.loads(healed.text) == value
        assert healed.note == "response-healing: the reply's JSON repaired"


def test_valid_json_is_left_as_it_came() -> None:
    text = '{"city":  "Oslo", "days": 3}'  # two spaces: not re-encoded
    assert heal(text, STRICT) == heal(text, OBJECT) == type(heal(text, OBJECT))(text, None)


@pytest.mark.parametrize(
    ("reply", "fmt", "note"),
    [
        ("no JSON here at all", OBJECT, "the reply is not JSON and could not be repaired"),
        ('{"city": "Oslo"}', STRICT, "it does not match the schema: 'days' is a required"),
        ('{"city": "Oslo", days: "three"', STRICT, "repaired, but it does not match the schema"),
        ("[1, 2, 3]", OBJECT, "it is not a JSON object"),
        ("x" * (MAX_HEALED_CHARS + 1), OBJECT, "the reply is over"),
    ],
)
def test_what_cannot_be_healed_is_sent_as_it_came(
    reply: str, fmt: ResponseFormat, note: str
) -> None:
    healed = heal(reply, fmt)
    assert healed.text == reply
    assert healed.note is not None and note in healed.note, healed.note


def chat(**body: Any) -> Any:
    return parse_chat_request({"messages": [{"role": "user", "content": "x"}], **body})


def test_which_plugins_a_request_asks_for() -> None:
    json_body = {"response_format": {"type": "json_object"}}
    healing = [{"id": HEALING}]
    assert plugins_of(chat(plugins=healing, **json_body)).healing == OBJECT
    assert plugins_of(chat(plugins=healing)).healing is None  # no JSON asked for
    assert plugins_of(chat(plugins=healing, stream=True, **json_body)).healing is None
    assert (
        plugins_of(chat(plugins=[{"id": HEALING, "enabled": False}], **json_body)).healing is None
    )
    assert plugins_of(chat(plugins=[{"id": "web", "enabled": False}])).healing is None
    for missing in ("web", "file-parser", "moderation", "nonsense"):
        with pytest.raises(GatewayError) as refused:
            plugins_of(chat(plugins=[{"id": missing, "max_results": 3}]))
        assert refused.value.status == 400
        assert f"Plugin '{missing}' is not available" in refused.value.message


# -- through the server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    started = Simulator("healer")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def srv(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = {
        "providers": [provider("healer", sim)],
        "models": [
            {"id": "acme/json", "name": "Acme: JSON", "endpoints": [endpoint("healer", 1, 2)]}
        ],
    }
    server = Server(Path(tmp_path_factory.mktemp("plugins")), config)
    yield server
    server.stop()


def ask(srv: Server, **extra: Any) -> Any:
    return srv.openai().chat.completions.create(
        model="acme/json",
        messages=[{"role": "user", "content": "a city and a number of days, as JSON"}],
        response_format={"type": "json_object"},
        **extra,
    )


def attempt_note(srv: Server, generation_id: str) -> str | None:
    record = recorded(srv, generation_id, srv.api_key)
    (attempt,) = record["attempts"]
    note: str | None = attempt["error"]
    return note


def test_a_broken_json_reply_is_healed_through_the_sdk(srv: Server, sim: Simulator) -> None:
    sim.configure(reply='```json\n{"city": "Oslo", "days": 3,}\n```')
    try:
        plain = ask(srv)  # without the plugin: as the provider sent it
        healed = ask(srv, extra_body={"plugins": [{"id": "response-healing"}]})
        streamed = ask(srv, stream=True, extra_body={"plugins": [{"id": "response-healing"}]})
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    finally:
        sim.reset()
    assert plain.choices[0].message.content.startswith("```json")
    assert orjson.loads(healed.choices[0].message.content) == {"city": "Oslo", "days": 3}
    assert healed.usage.completion_tokens == plain.usage.completion_tokens  # billed as sent
    assert attempt_note(srv, healed.id) == "response-healing: the reply's JSON repaired"
    assert attempt_note(srv, plain.id) is None
    assert text.startswith("```json")  # a stream is passed on as it comes


def test_an_unrepairable_reply_is_returned_and_the_record_says_so(
    srv: Server, sim: Simulator
) -> None:
    sim.configure(reply="Sorry, I cannot answer that.")
    try:
        answer = ask(srv, extra_body={"plugins": [{"id": "response-healing"}]})
    finally:
        sim.reset()
    assert answer.choices[0].message.content == "Sorry, I cannot answer that."
    note = attempt_note(srv, answer.id)
    assert note == "response-healing: the reply is not JSON and could not be repaired"


def test_a_plugin_that_is_not_implemented_is_a_400_naming_it(srv: Server, sim: Simulator) -> None:
    before = sim.state()["counters"]["requests"]
    with pytest.raises(openai.BadRequestError) as refused:
        ask(srv, extra_body={"plugins": [{"id": "web", "max_results": 3}]})
    assert "Plugin 'web' is not available" in str(refused.value)
    assert refused.value.body["code"] == 400  # type: ignore[index]
    assert sim.state()["counters"]["requests"] == before  # refused before any provider
    off = ask(srv, extra_body={"plugins": [{"id": "web", "enabled": False}]})
    assert off.choices[0].message.content
