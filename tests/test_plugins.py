"""OpenRouter's `plugins`: `response-healing`, and a 400 for any plugin not implemented.

Pure tests of the healing (`plugins/healing.py`) and of which plugins a request asks for,
then through the server and the `openai` SDK, with a simulated provider whose reply is
set verbatim (`reply`): almost-JSON repaired, what cannot be repaired sent as it came, and
the generation record saying which.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from crossroads.errors import ConfigError, GatewayError
from crossroads.plugins import HEALING, plugins_of
from crossroads.plugins.compression import compress, smallest
from crossroads.plugins.files import MAX_PAGES, parse_files
from crossroads.plugins.healing import MAX_HEALED_CHARS, heal
from crossroads.plugins.moderation import flagged_categories, moderation_config, user_texts
from crossroads.plugins.search import (
    DEFAULT_PROMPT,
    Result,
    parse_results,
    query_of,
    search_config,
    with_results,
)
from crossroads.routing.tokens import estimate_prompt_tokens
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


def test_server_tools_are_refused_by_name_not_passed_on() -> None:
    function = {"type": "function", "function": {"name": "f", "parameters": {}}}
    assert plugins_of(chat(tools=[function])).healing is None
    for kind in ("openrouter:web_search", "openrouter:datetime", "openrouter:web_fetch"):
        with pytest.raises(GatewayError) as refused:
            plugins_of(chat(tools=[function, {"type": kind}]))
        assert refused.value.status == 400
        assert f"Server tool '{kind}' is not available" in refused.value.message


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
    for missing in ("web-fetch", "auto-router", "nonsense"):
        with pytest.raises(GatewayError) as refused:
            plugins_of(chat(plugins=[{"id": missing, "max_results": 3}]))
        assert refused.value.status == 400
        assert f"Plugin '{missing}' is not available" in refused.value.message


# -- context compression, pure ------------------------------------------------------------


def conversation(turns: int, words: int = 150) -> list[dict[str, Any]]:
    """A system prompt, then `turns` user/assistant exchanges of `words` words each, with a
    tool call and its two results in the middle."""
    text = " ".join(["word"] * words)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    for n in range(turns):
        messages.append({"role": "user", "content": f"question {n}: {text}"})
        if n == turns // 2:
            calls = [
                {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                for i in range(2)
            ]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            messages += [{"role": "tool", "tool_call_id": f"c{i}", "content": text} for i in (0, 1)]
        messages.append({"role": "assistant", "content": f"answer {n}: {text}"})
    messages.append({"role": "user", "content": "and finally?"})
    return messages


def pairs_intact(messages: list[dict[str, Any]]) -> bool:
    """Every tool result follows the call that asked for it, and every call has them all."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "tool":
            if message["tool_call_id"] not in open_calls:
                return False
            open_calls.discard(message["tool_call_id"])
            continue
        if open_calls:
            return False
        open_calls = {c["id"] for c in message.get("tool_calls") or []}
    return not open_calls


def test_compression_removes_from_the_middle_and_keeps_what_matters() -> None:
    messages = conversation(20)
    body = {"model": "m", "messages": messages}
    full = estimate_prompt_tokens(body)
    compressed = compress(body, 4096, estimate_prompt_tokens)
    assert compressed is not None and full > 4096
    kept = compressed.messages
    assert estimate_prompt_tokens({**body, "messages": kept}) <= 4096
    assert kept[:2] == messages[:2]  # the system prompt and the first question
    assert kept[-1] == messages[-1]  # the latest turn
    assert compressed.removed == len(messages) - len(kept) > 0
    assert pairs_intact(kept)
    # the messages kept are in their order, the oldest and the newest around the gap
    positions = [messages.index(m) for m in kept]
    assert positions == sorted(positions)
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False) if b - a > 1]
    assert len(gaps) == 1  # one hole, in the middle
    assert compress(body, full, estimate_prompt_tokens) == type(compressed)(messages, 0)


def test_compression_gives_up_when_even_the_kept_messages_do_not_fit() -> None:
    body = {"messages": conversation(4)}
    least = smallest(body, estimate_prompt_tokens)
    assert compress(body, least, estimate_prompt_tokens) is not None
    assert compress(body, least - 1, estimate_prompt_tokens) is None


def test_which_compression_a_request_asks_for() -> None:
    assert plugins_of(chat()).compression == "auto"
    assert plugins_of(chat(transforms=["middle-out"])).compression == "on"
    assert plugins_of(chat(transforms=[])).compression == "off"
    assert plugins_of(chat(plugins=[{"id": "context-compression"}])).compression == "on"
    off = [{"id": "context-compression", "enabled": False}]
    assert plugins_of(chat(plugins=off)).compression == "off"
    auto = plugins_of(chat())
    assert auto.compresses(8192) and not auto.compresses(8193) and not auto.compresses(None)
    assert plugins_of(chat(transforms=["middle-out"])).compresses(200_000)
    with pytest.raises(GatewayError, match="Transform 'top-down' is not available"):
        plugins_of(chat(transforms=["top-down"]))


# -- through the server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    started = Simulator("healer")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def srv(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = {
        "moderation": {"provider": "healer", "model": "omni-moderation-latest"},
        "web_search": {"engine": "searxng", "url": sim.url("")},
        "providers": [provider("healer", sim)],
        "models": [
            {"id": "acme/json", "name": "Acme: JSON", "endpoints": [endpoint("healer", 1, 2)]},
            {
                "id": "acme/small",
                "name": "Acme: Small",
                "endpoints": [endpoint("healer", 1, 2, context_length=4096)],
            },
            {
                "id": "acme/large",
                "name": "Acme: Large",
                "endpoints": [endpoint("healer", 1, 2, context_length=16384)],
            },
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
        ask(srv, extra_body={"plugins": [{"id": "web-fetch", "max_uses": 3}]})
    assert "Plugin 'web-fetch' is not available" in str(refused.value)
    assert refused.value.body["code"] == 400  # type: ignore[index]
    assert sim.state()["counters"]["requests"] == before  # refused before any provider
    off = ask(srv, extra_body={"plugins": [{"id": "web-fetch", "enabled": False}]})
    assert off.choices[0].message.content
    before = sim.state()["counters"]["requests"]
    with pytest.raises(openai.BadRequestError, match="Server tool 'openrouter:datetime'"):
        ask(srv, tools=[{"type": "openrouter:datetime"}])  # type: ignore[list-item]
    assert sim.state()["counters"]["requests"] == before  # never passed on


def test_a_long_conversation_is_compressed_to_a_4k_endpoint(srv: Server, sim: Simulator) -> None:
    messages = conversation(20)
    client = srv.openai()
    answer = client.chat.completions.create(model="acme/small", messages=messages, max_tokens=64)
    sent = sim.last_body()["messages"]
    assert len(sent) < len(messages)
    assert sent[:2] == messages[:2] and sent[-1] == messages[-1]
    assert pairs_intact(sent)
    assert estimate_prompt_tokens({"messages": sent}) + 64 <= 4096
    note = attempt_note(srv, answer.id)
    assert (
        note == f"context-compression: {len(messages) - len(sent)} messages removed from the middle"
    )
    # a provider that reports no prompt count is billed on the prompt it was sent
    sim.configure(usage={"prompt_tokens": None})
    try:
        again = client.chat.completions.create(model="acme/small", messages=messages, max_tokens=64)
    finally:
        sim.reset()
    billed = recorded(srv, again.id, srv.api_key)["tokens_prompt"]
    assert billed == estimate_prompt_tokens({"messages": sent}) < 4096
    # turned off, the same conversation does not fit the endpoint
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="acme/small",
            messages=messages,
            max_tokens=64,
            extra_body={"plugins": [{"id": "context-compression", "enabled": False}]},
        )
    assert "can take at most 4096" in str(refused.value)


def test_above_8k_compression_is_asked_for(srv: Server, sim: Simulator) -> None:
    messages = conversation(60)
    client = srv.openai()
    assert estimate_prompt_tokens({"messages": messages}) > 16384
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="acme/large", messages=messages, max_tokens=64)
    streamed = client.chat.completions.create(
        model="acme/large",
        messages=messages,
        max_tokens=64,
        stream=True,
        extra_body={"transforms": ["middle-out"]},
    )
    chunks = list(streamed)
    assert chunks[-1].usage is not None
    sent = sim.last_body()["messages"]
    assert len(sent) < len(messages) and pairs_intact(sent)
    assert "context-compression" in (attempt_note(srv, chunks[0].id) or "")


# -- file-parser ---------------------------------------------------------------------------


def pdf(*pages: str) -> bytes:
    """A real PDF, one page per text (fpdf2)."""
    from fpdf import FPDF

    document = FPDF()
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 10, text)
    return bytes(document.output())


def file_part(data: bytes, name: str = "report.pdf") -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {"type": "file", "file": {"filename": name, "file_data": PDF_URL + encoded}}


PDF_URL = "data:application/pdf;base64,"


def with_file(*parts: dict[str, Any], **body: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": "What does it say?"}, *parts]
    return {"messages": [{"role": "user", "content": content}], **body}


def test_pdfs_are_parsed_into_text_once_each() -> None:
    data = pdf("The harvest was 42 tonnes.", "Page two: rain in May.")
    body = with_file(file_part(data), file_part(data, "copy.pdf"))
    parsed_body, files = parse_files(body)
    (only,) = files  # the same bytes: parsed once
    assert only.hash == hashlib.sha256(data).hexdigest()
    assert "42 tonnes" in only.text and "rain in May" in only.text
    parts = parsed_body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "text", "text"]
    assert parts[1]["text"].startswith("report.pdf:\n\n") and "42 tonnes" in parts[1]["text"]
    assert body["messages"][0]["content"][1]["type"] == "file"  # the request is not changed
    annotation = only.annotation()
    assert annotation["type"] == "file" and annotation["file"]["hash"] == only.hash


def test_annotations_sent_back_skip_the_parse() -> None:
    data = pdf("Original text.")
    hashed = hashlib.sha256(data).hexdigest()
    sent_back = {
        "role": "assistant",
        "content": "It says hello.",
        "annotations": [
            {
                "type": "file",
                "file": {
                    "hash": hashed,
                    "name": "r.pdf",
                    "content": [{"type": "text", "text": "T"}],
                },
            }
        ],
    }
    body = with_file(file_part(data))
    body["messages"] = [body["messages"][0], sent_back, *body["messages"]]
    parsed_body, (file,) = parse_files(body)
    assert file.text == "T"  # taken from the annotation, not parsed again
    assert all("annotations" not in m for m in parsed_body["messages"])  # not for providers


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a pdf at all", "is not a PDF"),
        (b"%PDF-1.4\n garbage that ends nowhere", "is not a readable PDF"),
    ],
)
def test_a_broken_file_is_a_400_naming_it(data: bytes, message: str) -> None:
    with pytest.raises(GatewayError) as refused:
        parse_files(with_file(file_part(data, "bad.pdf")))
    assert refused.value.status == 400 and "'bad.pdf'" in refused.value.message
    assert message in refused.value.message


def test_an_encrypted_or_oversized_or_remote_pdf_is_a_400() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf("secret"))))
    writer.encrypt("password")
    locked = io.BytesIO()
    writer.write(locked)
    with pytest.raises(GatewayError, match="is an encrypted PDF"):
        parse_files(with_file(file_part(locked.getvalue())))
    long = pdf(*["page"] * (MAX_PAGES + 1))
    with pytest.raises(GatewayError, match=f"at most {MAX_PAGES} can be parsed"):
        parse_files(with_file(file_part(long)))
    remote = {"type": "file", "file": {"filename": "r.pdf", "file_data": "https://x.test/r.pdf"}}
    with pytest.raises(GatewayError, match="fetches no file from an address"):
        parse_files(with_file(remote))


def test_the_file_parser_through_the_sdk(srv: Server, sim: Simulator) -> None:
    data = pdf("Quarterly revenue: 1.5 million.", "Second page: costs fell.")
    client = srv.openai()
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "Summarise"}, file_part(data)]}
    ]
    answer = client.chat.completions.create(model="acme/json", messages=messages)
    sent = sim.last_body()["messages"][0]["content"]
    assert [p["type"] for p in sent] == ["text", "text"]  # the provider got text, no PDF
    assert "Quarterly revenue: 1.5 million." in sent[1]["text"]
    (note,) = answer.choices[0].message.annotations or []  # the SDK's own field
    annotation = note.model_dump()
    assert annotation["file"]["hash"] == hashlib.sha256(data).hexdigest()
    assert "costs fell" in annotation["file"]["content"][0]["text"]
    # next turn: the annotation comes back, and its text is used as it is
    annotation["file"]["content"][0]["text"] = "As annotated."
    follow = [
        *messages,
        {"role": "assistant", "content": "Done.", "annotations": [annotation]},
        {"role": "user", "content": [{"type": "text", "text": "Again"}, file_part(data)]},
    ]
    client.chat.completions.create(model="acme/json", messages=follow)
    last = sim.last_body()["messages"]
    assert last[-1]["content"][1]["text"].endswith("As annotated.")
    assert all("annotations" not in m for m in last)
    # streamed: the annotation comes with the first output
    stream = client.chat.completions.create(model="acme/json", messages=messages, stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    annotated = [i for i, d in enumerate(deltas) if "annotations" in (d.model_extra or {})]
    assert len(annotated) == 1  # once, with the first output (a role preamble may come first)
    assert all(not d.content for d in deltas[: annotated[0]])
    (streamed,) = (deltas[annotated[0]].model_extra or {})["annotations"]
    assert streamed["file"]["hash"] == hashlib.sha256(data).hexdigest()
    # refused with a 400 naming the file: a broken one, and an engine not available
    with pytest.raises(openai.BadRequestError, match="'bad.pdf' is not a PDF"):
        client.chat.completions.create(
            model="acme/json",
            messages=[{"role": "user", "content": [file_part(b"plain text", "bad.pdf")]}],
        )
    with pytest.raises(openai.BadRequestError, match="PDF engine 'mistral-ocr' is not available"):
        client.chat.completions.create(
            model="acme/json",
            messages=messages,
            extra_body={"plugins": [{"id": "file-parser", "pdf": {"engine": "mistral-ocr"}}]},
        )


# -- moderation ------------------------------------------------------------------------------


def test_the_moderation_section_and_answers_are_checked() -> None:
    assert moderation_config({}) is None
    config = moderation_config({"moderation": {"provider": "guard", "timeout_seconds": 2}})
    assert config is not None and (config.provider, config.timeout) == ("guard", 2.0)
    for bad in (
        {"provider": ""},
        {"provider": "g", "colour": 1},
        {"provider": "g", "timeout_seconds": 0},
    ):
        with pytest.raises(ConfigError):
            moderation_config({"moderation": bad})
    one = {"results": [{"flagged": True, "categories": {"violence": True, "hate": False}}]}
    assert flagged_categories(one, 1) == [["violence"]]
    assert flagged_categories({"results": [{"flagged": False}]}, 1) == [[]]
    for answer in (None, {"results": []}, {"results": [{"categories": {}}]}, {"results": "x"}):
        with pytest.raises(ValueError):
            flagged_categories(answer, 1)
    body = {
        "messages": [
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "image_url"}]},
            {"role": "assistant", "content": "ignored too"},
            {"role": "user", "content": "two"},
        ]
    }
    assert user_texts(body) == ["one", "two"]


def moderated(srv: Server, text: str) -> Any:
    return srv.openai().chat.completions.create(
        model="acme/json",
        messages=[{"role": "user", "content": text}],
        extra_body={"plugins": [{"id": "moderation"}]},
    )


def test_moderation_passes_clean_input_and_records_its_latency(srv: Server, sim: Simulator) -> None:
    sim.configure(latency_ms=30)
    try:
        answer = moderated(srv, "a kind question")
        received = sim.state()["received"]
    finally:
        sim.reset()
    checks = [r for r in received if r["path"] == "/v1/moderations"]
    assert checks and checks[-1]["body"] == {
        "input": ["a kind question"],
        "model": "omni-moderation-latest",
    }
    record = recorded(srv, answer.id, srv.api_key)
    assert record["moderation_latency"] >= 30


def test_flagged_input_is_a_403_and_reaches_no_model(srv: Server, sim: Simulator) -> None:
    sim.reset()  # what it received is cleared: only this test's requests follow
    before: list[str] = []
    with pytest.raises(openai.PermissionDeniedError) as refused:
        moderated(srv, "something forbidden here")
    error = refused.value.body
    assert error["code"] == 403  # type: ignore[index]
    metadata = error["metadata"]  # type: ignore[index]
    assert metadata["reasons"] == ["harassment"]
    assert metadata["flagged_input"] == "something forbidden here"
    after = [r["path"] for r in sim.state()["received"]]
    assert after[len(before) :][-1] == "/v1/moderations"  # the last request was the check
    assert "/v1/chat/completions" not in after[len(before) :]
    sim.configure(fail_rate=1.0)  # the check cannot be made: refused, never unmoderated
    try:
        with pytest.raises(openai.APIStatusError) as failed:
            moderated(srv, "a kind question")
    finally:
        sim.reset()
    assert failed.value.status_code == 502
    assert "moderation check could not be made" in str(failed.value)


def test_moderation_without_a_service_is_a_400(sim: Simulator, tmp_path: Path) -> None:
    config = {
        "providers": [provider("healer", sim)],
        "models": [{"id": "acme/json", "name": "J", "endpoints": [endpoint("healer", 1, 2)]}],
    }
    server = Server(tmp_path, config)
    try:
        with pytest.raises(openai.BadRequestError, match="'moderation' is not configured"):
            moderated(server, "hello")
    finally:
        server.stop()


# -- web search --------------------------------------------------------------------------------


def test_the_web_search_section_and_answers_are_checked() -> None:
    assert search_config({}) is None
    local = search_config({"web_search": {"engine": "searxng", "url": "http://127.0.0.1:8888/"}})
    assert local is not None and (local.url, local.api_key) == ("http://127.0.0.1:8888", None)
    brave = search_config({"web_search": {"engine": "brave", "api_key_env": "K"}}, {"K": "x"})
    assert brave is not None and brave.url.startswith("https://") and brave.api_key == "x"
    for bad in (
        {"engine": "bing"},
        {"engine": "searxng"},  # no url
        {"engine": "tavily", "api_key_env": "MISSING"},
        {"engine": "searxng", "url": "file:///etc/passwd"},
    ):
        with pytest.raises(ConfigError):
            search_config({"web_search": bad}, {})
    answer = {
        "results": [
            {"url": "https://a.example/x", "title": "A", "content": "x" * 5000},
            {"url": "javascript:alert(1)", "title": "bad"},  # not a web address: skipped
            "not a result",
            {"url": "http://b.example", "title": None, "content": 3},
        ]
    }
    found = parse_results("searxng", answer, 5)
    assert [r.url for r in found] == ["https://a.example/x", "http://b.example"]
    assert len(found[0].content) == 2000 and found[1].title == "http://b.example"
    brave_answer = {"web": {"results": [{"url": "https://c.example", "description": "d"}]}}
    assert parse_results("brave", brave_answer, 5)[0].content == "d"
    for broken in (None, [], {"results": "x"}):
        with pytest.raises(ValueError):
            parse_results("searxng", broken, 5)


def test_results_go_before_the_last_user_message() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "rust 2026 news"}]},
        ]
    }
    assert query_of(body) == "rust 2026 news"
    results = [Result("https://a.example", "A", "about a")]
    out = with_results(body, results, None)["messages"]
    assert [m["role"] for m in out] == ["user", "assistant", "user", "user"]  # never system
    assert out[2]["content"].startswith(DEFAULT_PROMPT.split("{date}")[0])
    assert "[1] A (https://a.example)\nabout a" in out[2]["content"]
    custom = with_results(body, results, "Results of {date}:")["messages"][2]["content"]
    assert custom.startswith("Results of 20")


def searched(srv: Server, model: str = "acme/json", **extra: Any) -> Any:
    return srv.openai().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "crossroads gateway"}], **extra
    )


def test_the_web_plugin_searches_and_cites(srv: Server, sim: Simulator) -> None:
    answer = searched(srv, extra_body={"plugins": [{"id": "web", "max_results": 3}]})
    received = sim.state()["received"]
    (search,) = [r for r in received[-2:] if r["path"] == "/search"]
    assert search["query"] == {"q": "crossroads gateway", "format": "json"}
    sent = sim.last_body()["messages"]
    assert [m["role"] for m in sent] == ["user", "user"]
    assert "[3] Result 3 for crossroads gateway" in sent[0]["content"]
    assert "[4]" not in sent[0]["content"]
    notes = [a.model_dump() for a in answer.choices[0].message.annotations or []]
    assert [n["type"] for n in notes] == ["url_citation"] * 3
    assert notes[0]["url_citation"]["url"] == "https://example.com/crossroads-gateway/1"
    assert notes[0]["url_citation"]["title"] == "Result 1 for crossroads gateway"


def test_online_is_the_web_plugin_with_its_defaults(srv: Server, sim: Simulator) -> None:
    answer = searched(srv, model="acme/json:online")
    assert answer.model == "acme/json"
    assert len(answer.choices[0].message.annotations or []) == 5
    stream = searched(srv, model="acme/json:online", stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    cited = [d.model_extra["annotations"] for d in deltas if "annotations" in (d.model_extra or {})]
    assert len(cited) == 1 and len(cited[0]) == 5
    sim.configure(fail_rate=1.0)
    try:  # a search that cannot be made is never skipped
        with pytest.raises(openai.APIStatusError) as failed:
            searched(srv, model="acme/json:online")
    finally:
        sim.reset()
    assert failed.value.status_code == 502 and "web search could not be made" in str(failed.value)


def test_a_large_engine_answer_is_read_whole_and_bounded(srv: Server, sim: Simulator) -> None:
    sim.configure(search_padding=30_000)  # ten results: an answer of about 300 KB, in chunks
    try:
        answer = searched(srv, model="acme/json:online")
    finally:
        sim.reset()
    notes = [a.model_dump() for a in answer.choices[0].message.annotations or []]
    assert len(notes) == 5
    assert all(len(n["url_citation"]["content"]) == 2000 for n in notes)  # each bounded


def test_healing_never_raises_whatever_the_reply_or_schema() -> None:
    unresolvable = parse_chat_request(
        {
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "t", "schema": {"$ref": "#/nowhere"}},
            },
        }
    ).response_format
    assert unresolvable is not None
    for text, fmt in (
        ('{"a": 1,}', unresolvable),
        ('{"big": 123456789012345678901234567890,', OBJECT),  # past 64 bits once repaired
        ("[" * 100_000, OBJECT),
    ):
        healed = heal(text, fmt)
        assert healed.text == text and (healed.note or "").startswith("response-healing"), text


def test_malformed_annotations_and_pdfs_are_never_a_500() -> None:
    data = pdf("fine")
    for notes in (5, [{"type": "file", "file": {"hash": "h", "content": 5}}], ["x"]):
        body = with_file(file_part(data))
        body["messages"].insert(0, {"role": "assistant", "content": "a", "annotations": notes})
        assert parse_files(body)[1][0].text == "fine"
    damaged = data.replace(b"/FlateDecode", b"/Flate+ecode")  # pypdf: NotImplementedError
    with pytest.raises(GatewayError) as refused:
        parse_files(with_file(file_part(damaged, "damaged.pdf")))
    assert refused.value.status == 400 and "'damaged.pdf'" in refused.value.message


@pytest.mark.parametrize("engine", ["brave", "tavily"])
def test_hosted_engines_are_asked_with_the_operator_s_key(
    engine: str, sim: Simulator, tmp_path: Path
) -> None:
    config = {
        "web_search": {"engine": engine, "url": sim.url(""), "api_key_env": "SEARCH_KEY"},
        "providers": [provider("healer", sim)],
        "models": [{"id": "acme/json", "name": "J", "endpoints": [endpoint("healer", 1, 2)]}],
    }
    server = Server(tmp_path, config, env={"SEARCH_KEY": "search-secret"})
    try:
        answer = searched(server, extra_body={"plugins": [{"id": "web", "max_results": 2}]})
        (search,) = [r for r in sim.state()["received"][-2:] if r["path"] != "/v1/chat/completions"]
    finally:
        server.stop()
    assert len(answer.choices[0].message.annotations or []) == 2
    if engine == "brave":
        assert search["path"] == "/res/v1/web/search"
        assert search["headers"]["X-Subscription-Token"] == "search-secret"
        assert search["query"] == {"q": "crossroads gateway", "count": "2"}
    else:
        assert search["path"] == "/search" and search["body"] == {
            "query": "crossroads gateway",
            "max_results": 2,
        }
        assert search["headers"]["Authorization"] == "Bearer search-secret"


def test_web_without_an_engine_is_a_400(sim: Simulator, tmp_path: Path) -> None:
    config = {
        "providers": [provider("healer", sim)],
        "models": [{"id": "acme/json", "name": "J", "endpoints": [endpoint("healer", 1, 2)]}],
    }
    server = Server(tmp_path, config)
    try:
        for ask_it in (
            lambda: searched(server, model="acme/json:online"),
            lambda: searched(server, extra_body={"plugins": [{"id": "web"}]}),
        ):
            with pytest.raises(openai.BadRequestError, match="'web' is not configured"):
                ask_it()
    finally:
        server.stop()


def test_the_request_s_data_policy_binds_moderation_and_search(
    srv: Server, sim: Simulator, tmp_path: Path
) -> None:
    deny = {"provider": {"data_collection": "deny"}}
    # moderation: the healer provider states no data policy, so it cannot take the text
    with pytest.raises(openai.BadRequestError, match="whose data policy this request"):
        srv.openai().chat.completions.create(
            model="acme/json",
            messages=[{"role": "user", "content": "hello"}],
            extra_body={"plugins": [{"id": "moderation"}], **deny},
        )
    # a hosted engine may not take the query (a self-hosted SearXNG may)
    config = {
        "web_search": {"engine": "brave", "url": sim.url(""), "api_key_env": "SEARCH_KEY"},
        "providers": [provider("healer", sim)],
        "models": [{"id": "acme/json", "name": "J", "endpoints": [endpoint("healer", 1, 2)]}],
    }
    server = Server(tmp_path, config, env={"SEARCH_KEY": "k"})
    try:
        sim.reset()
        with pytest.raises(openai.BadRequestError, match="sends the query to brave"):
            searched(server, model="acme/json:online", extra_body={"provider": {"zdr": True}})
        assert not sim.state()["received"]  # nothing left the server
    finally:
        server.stop()
