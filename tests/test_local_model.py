"""End to end through a real local model: `crossroads local` (llama.cpp, Gemma 3 270M) behind
the gateway.

Gemma 3 270M here is a base model without a chat template: these tests check structure,
streaming, usage, JSON-schema constraints and determinism, never the wording.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from harness import BIN, Output, Server, _stop, _wait, free_port

pytestmark = pytest.mark.local_model
MODEL = "google/gemma-3-270m"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = (
        tmp_path_factory.mktemp("llama") / "server.log"
    )  # llama.cpp logs a lot: a pipe would fill and block it
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN), "local", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
        output = Output(proc)
        try:
            _wait(  # the first run compiles llama.cpp
                f"http://127.0.0.1:{port}/v1/models", proc, output, timeout=30 * 60
            )
            yield port
        finally:
            _stop(proc, output)


@pytest.fixture(scope="module")
def gateway(local_server: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = {"providers": [{"slug": "local", "base_url": f"http://127.0.0.1:{local_server}/v1"}]}
    srv = Server(tmp_path_factory.mktemp("local"), config)
    yield srv
    srv.stop()


def test_discovered_and_listed(gateway: Server) -> None:
    rows = {p["slug"]: p for p in gateway.get("/providers").json()["data"]}
    assert rows["local"]["usable"] is True
    endpoint = gateway.get(f"/models/{MODEL}/endpoints").json()["data"]["endpoints"][0]
    assert (
        endpoint["tag"] == "local"
        and endpoint["available"] is True
        and endpoint["pricing"]["prompt"] == "0"
    )


def test_completion_structure_and_usage(gateway: Server) -> None:
    r = gateway.sdk_chat(MODEL, "The capital of France is", max_tokens=12, temperature=0)
    assert r.model == MODEL and r.model_extra["provider"] == "Local" and r.id.startswith("gen-")
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].finish_reason in (
        "stop",
        "length",
    )
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 12
    assert r.usage.model_extra["cost"] == 0
    record = gateway.generation(r.id)
    assert (
        record["provider_name"] == "Local"
        and record["tokens_completion"] == r.usage.completion_tokens
    )


def test_streaming(gateway: Server) -> None:
    chunks = list(
        gateway.openai().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Once upon a time"}],
            max_tokens=10,
            temperature=0,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and len({c.id for c in chunks}) == 1
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] in (["length"], ["stop"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_json_schema_is_enforced(gateway: Server) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    r = gateway.sdk_chat(
        MODEL,
        "Describe a person as JSON.",
        max_tokens=60,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    person = json.loads(r.choices[0].message.content)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


def test_deterministic_at_temperature_zero(gateway: Server) -> None:
    answers = {
        gateway.sdk_chat(MODEL, "Count: one, two,", max_tokens=12, temperature=0)
        .choices[0]
        .message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_other_dialects_reach_the_local_model(gateway: Server) -> None:
    message = anthropic.Anthropic(
        base_url=gateway.url("/api"), api_key=gateway.api_key, max_retries=0
    ).messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].type == "text" and message.usage.output_tokens > 0
    response = gateway.openai().responses.create(model=MODEL, input="Hello", max_output_tokens=8)
    assert response.status in ("completed", "incomplete") and response.usage.output_tokens > 0


def test_local_command_installs_once(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BIN), "local", "--install-only"], capture_output=True, text=True, timeout=30 * 60
    )
    assert out.returncode == 0 and "ready:" in out.stderr
