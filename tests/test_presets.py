"""Provider presets (a key in the environment is enough) and discovery of local servers."""

from __future__ import annotations

import time
from pathlib import Path

from harness import HTTP, Server, Simulator, free_port


def providers(server: Server) -> dict[str, dict]:
    return {p["slug"]: p for p in HTTP.get(server.base_url + "/providers").json()["data"]}


def test_a_key_in_the_environment_is_enough(tmp_path: Path) -> None:
    srv = Server(
        tmp_path, None, env={"GROQ_API_KEY": "gsk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}
    )
    try:
        rows = providers(srv)
        assert rows["groq"]["usable"] is True and rows["anthropic"]["usable"] is True
        assert (
            rows["deepinfra"]["usable"] is False
            and "DEEPINFRA_API_KEY" in rows["deepinfra"]["unusable_reason"]
        )
        endpoints = HTTP.get(srv.base_url + "/models/openai/gpt-oss-120b/endpoints").json()["data"][
            "endpoints"
        ]
        assert [e["tag"] for e in endpoints if e["available"]] == ["groq"]
    finally:
        output = srv.stop()
    assert "groq" in output and "anthropic" in output  # the start-up banner lists usable providers


def test_preset_routes_with_the_providers_own_model_name(sims, tmp_path: Path) -> None:
    config = {
        "providers": [
            {"slug": "deepinfra", "base_url": sims["delta"].url()},
            {"slug": "cerebras", "base_url": sims["delta"].url()},
        ]
    }
    srv = Server(
        tmp_path, config, env={"DEEPINFRA_API_KEY": "di-key", "CEREBRAS_API_KEY": "cb-key"}
    )
    try:
        r = srv.sdk_chat("openai/gpt-oss-120b", "hi", provider={"only": ["deepinfra"]})
        assert r.model_extra["provider"] == "DeepInfra"
        sent = sims["delta"].state()["received"][-1]
        assert (
            sent["body"]["model"] == "openai/gpt-oss-120b"
            and sent["headers"]["Authorization"] == "Bearer di-key"
        )
        srv.sdk_chat("openai/gpt-oss-120b", "hi", provider={"only": ["cerebras"]}, max_tokens=20)
        sent = sims["delta"].state()["received"][-1]
        assert (
            sent["body"]["model"] == "gpt-oss-120b" and sent["body"]["max_completion_tokens"] == 20
        )
    finally:
        srv.stop()


def test_openrouter_as_an_upstream_serves_the_whole_catalog(sims, tmp_path: Path) -> None:
    config = {"providers": [{"slug": "openrouter", "base_url": sims["delta"].url()}]}
    srv = Server(tmp_path, config, env={"OPENROUTER_API_KEY": "sk-or-test"})
    try:
        r = srv.sdk_chat("anthropic/claude-sonnet-4.5", "hi", reasoning={"effort": "high"})
        assert r.model_extra["provider"] == "OpenRouter"
        sent = sims["delta"].state()["received"][-1]
        assert sent["body"]["model"] == "anthropic/claude-sonnet-4.5"
        assert sent["body"]["reasoning"] == {
            "effort": "high"
        }  # passed on as OpenRouter's own object
        assert sent["headers"]["Authorization"] == "Bearer sk-or-test"
    finally:
        srv.stop()


def test_local_servers_are_discovered(sims, tmp_path: Path) -> None:
    late_port = free_port()
    config = {
        "server": {"discovery_interval_seconds": 0.3},
        "providers": [
            {"slug": "ollama", "base_url": sims["alpha"].url()},
            {"slug": "vllm", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
            {"slug": "lmstudio", "base_url": f"http://127.0.0.1:{late_port}/v1"},
        ],
    }
    srv = Server(tmp_path, config)
    late = None
    try:
        rows = providers(srv)
        assert rows["ollama"]["usable"] is True
        assert rows["vllm"]["usable"] is False and rows["vllm"]["unusable_reason"].startswith(
            "not running"
        )
        r = srv.sdk_chat("ollama/mock-model", "hello local")
        assert r.choices[0].message.content == "alpha says: hello local"
        assert sims["alpha"].last_body()["model"] == "mock-model"
        ids = {m["id"] for m in HTTP.get(srv.base_url + "/models").json()["data"]}
        assert "ollama/mock-model" in ids and "lmstudio/mock-model" not in ids

        late = Simulator("late", port=late_port)  # a local server that starts after Crossroads
        deadline = time.monotonic() + 10
        while not providers(srv)["lmstudio"]["usable"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (
            srv.sdk_chat("lmstudio/mock-model", "later").choices[0].message.content
            == "late says: later"
        )
    finally:
        if late is not None:
            late.stop()
        srv.stop()
