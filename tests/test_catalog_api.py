"""The catalog API: models, endpoints, providers; bundled data and config overrides."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openrouter import OpenRouter

from conftest import shared_config
from harness import HTTP, Server, Simulator

MODEL_REQUIRED = {
    "id",
    "canonical_slug",
    "name",
    "created",
    "pricing",
    "context_length",
    "architecture",
    "top_provider",
    "per_request_limits",
    "supported_parameters",
    "default_parameters",
    "supported_voices",
    "links",
}
ENDPOINT_REQUIRED = {
    "name",
    "model_id",
    "model_name",
    "context_length",
    "pricing",
    "provider_name",
    "tag",
    "quantization",
    "max_completion_tokens",
    "max_prompt_tokens",
    "supported_parameters",
    "uptime_last_30m",
    "uptime_last_5m",
    "uptime_last_1d",
    "supports_implicit_caching",
    "latency_last_30m",
    "throughput_last_30m",
}


def test_models_list_has_bundled_and_configured_models(server: Server) -> None:
    body = HTTP.get(server.base_url + "/models").json()
    assert set(body) == {"data", "total_count", "links"} and body["links"] == {"next": None}
    ids = {m["id"] for m in body["data"]}
    assert {"openai/gpt-oss-120b", "openai/gpt-oss-120b:free", "acme/widget-1", "acme/trio"} <= ids
    assert body["total_count"] == len(body["data"]) > 300
    for model in body["data"]:
        assert MODEL_REQUIRED <= set(model), model["id"]
        assert "text" in model["architecture"]["output_modalities"]
    widget = next(m for m in body["data"] if m["id"] == "acme/widget-1")
    assert widget["name"] == "Acme: Widget 1" and widget["context_length"] == 32768
    assert widget["pricing"] == {"prompt": "0.000001", "completion": "0.000002"}
    assert widget["links"]["details"] == "/api/v1/models/acme/widget-1/endpoints"


def test_models_filters_and_pagination(server: Server) -> None:
    page = HTTP.get(server.base_url + "/models", params={"limit": 10, "offset": 5}).json()
    assert len(page["data"]) == 10 and page["links"]["next"] == "/api/v1/models?offset=15&limit=10"
    images = HTTP.get(server.base_url + "/models", params={"output_modalities": "image"}).json()
    assert 0 < images["total_count"] < page["total_count"]
    assert all("image" in m["architecture"]["output_modalities"] for m in images["data"])
    vision = HTTP.get(server.base_url + "/models", params={"input_modalities": "image,file"}).json()
    assert all(
        {"image", "file"} <= set(m["architecture"]["input_modalities"]) for m in vision["data"]
    )
    tools = HTTP.get(
        server.base_url + "/models", params={"supported_parameters": "tools,seed"}
    ).json()
    assert all({"tools", "seed"} <= set(m["supported_parameters"]) for m in tools["data"])
    found = HTTP.get(server.base_url + "/models", params={"q": "gpt-oss-120b"}).json()
    assert {m["id"] for m in found["data"]} == {"openai/gpt-oss-120b", "openai/gpt-oss-120b:free"}
    count = HTTP.get(server.base_url + "/models/count").json()["data"]["count"]
    assert count == page["total_count"]
    assert HTTP.get(server.base_url + "/models", params={"limit": "x"}).status_code == 400


def test_gpt_oss_endpoints_with_real_providers(server: Server) -> None:
    data = HTTP.get(server.base_url + "/models/openai/gpt-oss-120b/endpoints").json()["data"]
    tags = {e["tag"] for e in data["endpoints"]}
    assert {"deepinfra/bf16", "groq", "cerebras/fp16", "coreweave/fp4"} <= tags and len(tags) == 20
    for e in data["endpoints"]:
        assert ENDPOINT_REQUIRED <= set(e)
        assert e["available"] is False and e["unavailable_reason"]
        assert e["latency_last_30m"] is None  # no traffic here: no figures, never borrowed ones
    reasons = {e["tag"]: e["unavailable_reason"] for e in data["endpoints"]}
    assert "missing credentials" in reasons["deepinfra/bf16"]
    assert all(reasons.values())
    free = HTTP.get(server.base_url + "/models/openai/gpt-oss-120b:free/endpoints").json()["data"][
        "endpoints"
    ]
    assert [(e["tag"], e["pricing"]["prompt"]) for e in free] == [("open-inference/int8", "0")]


def test_endpoints_report_live_figures_and_availability(server: Server) -> None:
    for _ in range(3):
        assert server.chat("acme/widget-1").status_code == 200
    e = HTTP.get(server.base_url + "/models/acme/widget-1/endpoints").json()["data"]["endpoints"][0]
    assert e["available"] is True and e["unavailable_reason"] is None
    assert e["provider_name"] == "Alpha" and e["tag"] == "alpha" and e["quantization"] == "fp8"
    assert e["uptime_last_5m"] is not None and e["latency_last_30m"]["p50"] > 0


@pytest.mark.parametrize("model", ["acme/flash", "acme/locked", "acme/trio"])
def test_endpoint_context_length_is_always_an_integer(server: Server, model: str) -> None:
    """PublicEndpoint requires an integer context_length: an endpoint configured without one
    takes the model's, and 0 (unknown) when the model states none either."""
    info = HTTP.get(server.base_url + f"/model/{model}").json()["data"]
    data = HTTP.get(server.base_url + f"/models/{model}/endpoints").json()["data"]
    for e in data["endpoints"]:
        assert isinstance(e["context_length"], int)
        assert ENDPOINT_REQUIRED <= set(e) and {"prompt", "completion"} <= set(e["pricing"])
    lengths = [e["context_length"] for e in data["endpoints"]]
    expected = {"acme/flash": [0], "acme/locked": [0], "acme/trio": [4096, 32768, 131072]}
    assert info["context_length"] is None or model == "acme/trio"
    assert lengths == expected[model]


def test_single_model_and_unknown(server: Server) -> None:
    data = HTTP.get(server.base_url + "/model/openai/gpt-oss-120b").json()["data"]
    assert data["id"] == "openai/gpt-oss-120b" and data["context_length"] == 131072
    assert (
        HTTP.get(server.base_url + "/model/openai/gpt-oss-120b:free").json()["data"]["pricing"][
            "prompt"
        ]
        == "0"
    )
    assert HTTP.get(server.base_url + "/model/acme/none").status_code == 404
    assert HTTP.get(server.base_url + "/models/acme/none/endpoints").status_code == 404


def test_providers_say_which_are_usable(server: Server) -> None:
    rows = {p["slug"]: p for p in HTTP.get(server.base_url + "/providers").json()["data"]}
    assert rows["alpha"]["usable"] is True and rows["alpha"]["name"] == "Alpha"
    assert (
        rows["locked"]["usable"] is False
        and "LOCKED_TEST_API_KEY" in rows["locked"]["unusable_reason"]
    )
    assert rows["deepinfra"]["usable"] is False and rows["deepinfra"]["privacy_policy_url"]
    assert {"name", "slug", "privacy_policy_url", "terms_of_service_url", "status_page_url"} <= set(
        rows["groq"]
    )


def test_openrouter_sdk_catalog_calls(server: Server) -> None:
    with OpenRouter(api_key=server.api_key, server_url=server.base_url) as client:
        listed = client.models.list()
        assert any(m.id == "acme/widget-1" for m in listed.result.data)
        endpoints = client.endpoints.list(author="openai", slug="gpt-oss-120b")
        assert len(endpoints.data.endpoints) == 20
        providers = client.providers.list()
        assert any(p.slug == "alpha" for p in providers.data)


@pytest.fixture
def overriding(sims: dict[str, Simulator], tmp_path: Path) -> Iterator[Server]:
    config = shared_config(sims)
    # route a bundled model to a simulator, and rename a bundled provider
    config["providers"].append(
        {
            "slug": "groq",
            "api": "openai",
            "base_url": sims["delta"].url(),
            "api_key_env": "GROQ_TEST_KEY",
        }
    )
    config["models"].append(
        {
            "id": "openai/gpt-oss-120b",
            "description": "overridden",
            "endpoints": [{"provider": "groq", "upstream_model": "gpt-oss"}],
        }
    )
    srv = Server(tmp_path, config, env={"GROQ_TEST_KEY": "secret-groq"})
    yield srv
    srv.stop()


def test_config_overrides_bundled_models_and_providers(overriding: Server, sims) -> None:
    model = HTTP.get(overriding.base_url + "/model/openai/gpt-oss-120b").json()["data"]
    assert model["description"] == "overridden" and model["context_length"] == 131072
    endpoints = HTTP.get(overriding.base_url + "/models/openai/gpt-oss-120b/endpoints").json()[
        "data"
    ]["endpoints"]
    assert len(endpoints) == 20  # merged by tag: groq replaced, the others kept
    groq = next(e for e in endpoints if e["tag"] == "groq")
    assert groq["available"] is True and groq["pricing"]["prompt"]  # bundled price kept
    r = overriding.chat("openai/gpt-oss-120b")
    assert r.status_code == 200 and r.json()["provider"] == "Groq"
    received = sims["delta"].state()["received"][-1]
    assert (
        received["body"]["model"] == "gpt-oss"
        and received["headers"]["Authorization"] == "Bearer secret-groq"
    )


ISSUE_CONFIG = """
providers:
  - slug: alpha            # used in provider.order / only / ignore
    name: Alpha            # display name, returned as `provider` in responses
    api: openai            # wire protocol
    base_url: {base_url}
    api_key_env: ALPHA_API_KEY   # optional
models:
  - id: acme/widget-1      # author/slug; a ':free' id is its own model, like OpenRouter's
    name: "Acme: Widget 1"
    context_length: 32768
    description: optional
    endpoints:
      - provider: alpha
        upstream_model: mock-model
        context_length: 32768
        max_completion_tokens: 4096
        quantization: fp8
        pricing: {{prompt: "0.000001", completion: "0.000002"}}
        supported_parameters: [max_tokens, temperature, tools, tool_choice]
"""


def test_the_documented_config_shape(sims, tmp_path: Path) -> None:
    srv = Server(
        tmp_path,
        ISSUE_CONFIG.format(base_url=sims["alpha"].url()),
        env={"ALPHA_API_KEY": "alpha-secret"},
    )
    try:
        r = srv.sdk_chat("acme/widget-1", "exactly as documented", temperature=0.2)
        assert r.model_extra["provider"] == "Alpha" and r.choices[0].message.content.startswith(
            "alpha says:"
        )
        received = sims["alpha"].state()["received"][-1]
        assert received["headers"]["Authorization"] == "Bearer alpha-secret"
        assert received["body"]["model"] == "mock-model" and received["body"]["temperature"] == 0.2
        model = HTTP.get(srv.base_url + "/model/acme/widget-1").json()["data"]
        assert model["description"] == "optional" and model["name"] == "Acme: Widget 1"
    finally:
        srv.stop()
    without_key = Server(tmp_path / "nokey", ISSUE_CONFIG.format(base_url=sims["alpha"].url()))
    try:
        r = without_key.chat("acme/widget-1")
        assert (
            r.status_code == 404
            and "missing credentials: set ALPHA_API_KEY" in r.json()["error"]["message"]
        )
    finally:
        without_key.stop()
