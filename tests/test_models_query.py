"""GET /models and /models/count query parameters: every filter and sort, through a server
whose catalog has models made for them (author `probe`, beside the bundled catalog), and
the 400s for values the spec does not allow or filters this server has no data for.

The probe models, in catalog order (prices in USD per million tokens, prompt/completion):

| model    | endpoints     | price  | context | age | tokenizer | AA intel/coding/agentic | arena |
|----------|---------------|--------|---------|-----|-----------|-------------------------|-------|
| cheap    | alpha         | 0.1/.2 | 8000    | 2   | Llama3    | 30 / 20 / -             | 1200  |
| mid      | beta          | 1/4    | 128000  | 40  | Qwen3     | 55 / 60 / 40            | none  |
| pricey   | gamma         | 10/30  | 200000  | 400 | GPT       | 70 / - / 65             | 1300  |
| plain    | delta         | 2/2    | -       | 10  | Other     | no benchmarks           | -     |
| painter  | alpha (image) | .5/.5  | 32000   | 1   | Gemini    | -                       | -     |
| multi    | alpha, gamma  | 3/3    | 64000   | 100 | Other     | -                       | -     |

alpha keeps no data (zdr), beta trains on it, gamma retains prompts, delta states no policy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import shared_config
from harness import HTTP, Server, Simulator, endpoint
from openapi_schema import check

DAY = 86400
TEXT = ["cheap", "mid", "pricey", "plain", "multi"]  # the default output modality: text


def _model(slug: str, name: str, days: int) -> dict[str, Any]:
    # a minute more than whole days, so that the age in days is exactly `days` while tests run
    return {"id": f"probe/{slug}", "name": name, "created": int(time.time()) - days * DAY - 60}


def _architecture(tokenizer: str, inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    return {"tokenizer": tokenizer, "input_modalities": inputs, "output_modalities": outputs}


def _aa(intelligence: float | None, coding: float | None, agentic: float | None) -> dict:
    return {
        "intelligence_index": intelligence,
        "coding_index": coding,
        "agentic_index": agentic,
    }


def _arena(category: str, elo: float) -> dict[str, Any]:
    return {"arena": "models", "category": category, "elo": elo, "rank": 3, "win_rate": 55.5}


def probe_models() -> list[dict[str, Any]]:
    text = ["text"]
    return [
        {
            **_model("cheap", "Probe: Cheap", 2),
            "context_length": 8000,
            "architecture": _architecture("Llama3", text, text),
            "benchmarks": {
                "artificial_analysis": _aa(30, 20, None),
                "design_arena": [
                    _arena("website", 1100),
                    _arena("webapps", 1200),
                ],
            },
            "endpoints": [
                endpoint(
                    "alpha", 0.1, 0.2, supported_parameters=["max_tokens", "temperature", "tools"]
                )
            ],
        },
        {
            **_model("mid", "Probe: Mid", 40),
            "context_length": 128000,
            "architecture": _architecture("Qwen3", ["text", "image"], text),
            "benchmarks": {"artificial_analysis": _aa(55, 60, 40), "design_arena": []},
            "endpoints": [
                endpoint("beta", 1, 4, supported_parameters=["max_tokens", "temperature"])
            ],
        },
        {
            **_model("pricey", "Probe: Pricey", 400),
            "context_length": 200000,
            "architecture": _architecture("GPT", text, text),
            "benchmarks": {
                "artificial_analysis": _aa(70, None, 65),
                "design_arena": [_arena("svg", 1300.5)],
            },
            "endpoints": [
                endpoint("gamma", 10, 30, supported_parameters=["max_tokens", "tools", "seed"])
            ],
        },
        {
            **_model("plain", "Probe: Gemma Tuned", 10),
            "endpoints": [endpoint("delta", 2, 2, supported_parameters=["max_tokens"])],
        },
        {
            **_model("painter", "Probe: Painter", 1),
            "context_length": 32000,
            "architecture": _architecture("Gemini", text, ["image"]),
            "endpoints": [endpoint("alpha", 0.5, 0.5, supported_parameters=["max_tokens"])],
        },
        {
            **_model("multi", "Probe: Multi", 100),
            "endpoints": [
                endpoint("alpha", 3, 3, context_length=64000, supported_parameters=["max_tokens"]),
                endpoint("gamma", 3, 3, supported_parameters=["max_tokens"]),
            ],
        },
        {  # another author: an endpoint configured without a price or a context length
            "id": "elsewhere/unpriced",
            "name": "Elsewhere: Unpriced",
            "endpoints": [{"provider": "beta", "upstream_model": "beta-model"}],
        },
    ]


@pytest.fixture(scope="module")
def probe(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = shared_config(sims)
    config["models"] += probe_models()
    srv = Server(tmp_path_factory.mktemp("probe"), config)
    yield srv
    srv.stop()


def models(server: Server, path: str = "/models", **params: Any) -> dict[str, Any]:
    r = HTTP.get(server.base_url + path, params=params)
    assert r.status_code == 200, r.text
    assert not check(r.json(), path, "get", 200, "application/json")
    return r.json()


def probe_ids(server: Server, **params: Any) -> list[str]:
    """The probe models /models returns for `params`, in its order, without the author."""
    params = {"model_authors": "probe", **params}
    body = models(server, **params)
    ids = [m["id"].removeprefix("probe/") for m in body["data"]]
    assert body["total_count"] == len(ids)
    count = models(server, "/models/count", **params)["data"]["count"]
    assert count == len(ids)  # /models/count takes the same filters
    return ids


def test_probe_models_in_catalog_order(probe: Server) -> None:
    assert probe_ids(probe) == TEXT
    assert probe_ids(probe, output_modalities="all") == [*TEXT[:4], "painter", "multi"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"output_modalities": "image"}, ["painter"]),
        ({"output_modalities": "audio,image"}, ["painter"]),
        ({"input_modalities": "image"}, ["mid"]),
        ({"input_modalities": "text,image"}, ["mid"]),
        ({"supported_parameters": "tools"}, ["cheap", "pricey"]),
        ({"supported_parameters": "tools,seed"}, ["pricey"]),
        ({"q": "GEMMA"}, ["plain"]),  # the name, any case
        ({"q": "probe/mi"}, ["mid"]),  # the id
        ({"context": 64000}, ["mid", "pricey", "multi"]),  # plain has no known context
        ({"context": 1}, ["cheap", "mid", "pricey", "multi"]),
        ({"min_price": 1}, ["mid", "pricey", "plain", "multi"]),
        ({"max_price": 1}, ["cheap", "mid"]),
        ({"max_price": 0.1}, ["cheap"]),  # exact: 0.1 is not rounded away
        ({"min_price": 0.5, "max_price": 2}, ["mid", "plain"]),
        ({"min_output_price": 4}, ["mid", "pricey"]),
        ({"max_output_price": 2}, ["cheap", "plain"]),
        ({"min_age_days": 30}, ["mid", "pricey", "multi"]),
        ({"max_age_days": 10}, ["cheap", "plain"]),
        ({"min_age_days": 10, "max_age_days": 100}, ["mid", "plain", "multi"]),
        ({"providers": "Beta"}, ["mid"]),  # a display name
        ({"providers": "gamma"}, ["pricey", "multi"]),  # a slug
        ({"providers": "alpha, delta"}, ["cheap", "plain", "multi"]),
        ({"providers": "nobody"}, []),
        ({"zdr": "true"}, ["cheap", "multi"]),  # an alpha endpoint; beta/gamma/delta are not
        ({"zdr": "true", "output_modalities": "all"}, ["cheap", "painter", "multi"]),
        ({"arch": "Llama"}, ["cheap"]),  # a family: Llama3's tokenizer
        ({"arch": "qwen"}, ["mid"]),
        ({"arch": "GPT"}, ["pricey"]),
        ({"arch": "Gemma"}, ["plain"]),  # tokenizer Other: the name says Gemma
        ({"arch": "Gemini", "output_modalities": "all"}, ["painter"]),
        ({"arch": "Claude"}, []),
        ({"min_intelligence_index": 50}, ["mid", "pricey"]),
        ({"max_intelligence_index": 40}, ["cheap"]),
        ({"min_intelligence_index": 30, "max_intelligence_index": 55}, ["cheap", "mid"]),
        ({"min_coding_index": 30}, ["mid"]),  # pricey has no coding score
        ({"max_coding_index": 100}, ["cheap", "mid"]),
        ({"max_agentic_index": 50}, ["mid"]),  # cheap has no agentic score
        ({"min_agentic_index": 0}, ["mid", "pricey"]),
        ({"use_rss": "false", "use_rss_chat_links": "true"}, TEXT),
        ({"min_price": "null", "offset": "null"}, TEXT),  # the spec's nullable numbers
    ],
    ids=lambda v: "&".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None,
)
def test_filters(probe: Server, params: dict[str, Any], expected: list[str]) -> None:
    assert probe_ids(probe, **params) == expected


def test_model_authors(probe: Server) -> None:
    assert probe_ids(probe, model_authors="PROBE") == TEXT
    openai = models(probe, model_authors="openai")["data"]
    assert openai and all(m["id"].startswith("openai/") for m in openai)
    both = {m["id"].split("/")[0] for m in models(probe, model_authors="openai,probe")["data"]}
    assert both == {"openai", "probe"}
    assert models(probe, model_authors="elsewhere")["data"][0]["id"] == "elsewhere/unpriced"


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("newest", ["cheap", "plain", "mid", "multi", "pricey"]),
        ("pricing-low-to-high", ["cheap", "plain", "mid", "multi", "pricey"]),  # averages
        ("pricing-high-to-low", ["pricey", "multi", "mid", "plain", "cheap"]),
        ("context-high-to-low", ["pricey", "mid", "multi", "cheap", "plain"]),
        ("intelligence-high-to-low", ["pricey", "mid", "cheap", "plain", "multi"]),
        ("coding-high-to-low", ["mid", "cheap", "pricey", "plain", "multi"]),
        ("agentic-high-to-low", ["pricey", "mid", "cheap", "plain", "multi"]),
        ("design-arena-elo-high-to-low", ["pricey", "cheap", "mid", "plain", "multi"]),
        # no usage rollups yet: the default order
        ("most-popular", TEXT),
        ("top-weekly", TEXT),
    ],
)
def test_sorts(probe: Server, sort: str, expected: list[str]) -> None:
    assert probe_ids(probe, sort=sort) == expected


def test_sort_then_filter_then_page(probe: Server) -> None:
    query = {"model_authors": "probe", "sort": "pricing-low-to-high", "limit": 2}
    first = models(probe, **query)
    assert [m["id"] for m in first["data"]] == ["probe/cheap", "probe/plain"]
    assert first["total_count"] == 5
    link = first["links"]["next"]
    assert link.startswith("/api/v1/models?offset=2&limit=2&")
    assert "model_authors=probe" in link and "sort=pricing-low-to-high" in link
    second = HTTP.get(probe.url(link)).json()
    assert [m["id"] for m in second["data"]] == ["probe/mid", "probe/multi"]
    third = HTTP.get(probe.url(second["links"]["next"])).json()
    assert [m["id"] for m in third["data"]] == ["probe/pricey"] and third["links"]["next"] is None


def _stream(server: Server, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    r = server.post("/chat/completions", body)
    assert r.status_code == 200 and "[DONE]" in r.text


def test_live_figure_sorts(probe: Server, sims: dict[str, Simulator]) -> None:
    """Throughput and latency from this server's own traffic; the best endpoint of each
    model counts, and models without figures come last in catalog order."""
    sims["alpha"].configure(latency_ms=0, tokens_per_second=400)
    sims["gamma"].configure(latency_ms=150, tokens_per_second=100)
    sims["beta"].configure(latency_ms=300, tokens_per_second=40)
    for model in ("probe/cheap", "probe/pricey", "probe/mid"):  # alpha, gamma, beta
        _stream(probe, model)
    assert probe_ids(probe, sort="latency-low-to-high") == [
        "cheap",
        "pricey",
        "mid",
        "plain",
        "multi",
    ]
    assert probe_ids(probe, sort="throughput-high-to-low") == [
        "cheap",
        "pricey",
        "mid",
        "plain",
        "multi",
    ]
    e = HTTP.get(probe.base_url + "/models/probe/mid/endpoints").json()["data"]["endpoints"][0]
    assert e["latency_last_30m"]["p50"] >= 300 and e["throughput_last_30m"]["p50"] > 0


def test_endpoints_fill_required_fields(probe: Server) -> None:
    """PublicEndpoint requires an integer context_length and a prompt and completion price."""
    multi = HTTP.get(probe.base_url + "/models/probe/multi/endpoints").json()["data"]
    assert [(e["tag"], e["context_length"]) for e in multi["endpoints"]] == [
        ("alpha", 64000),
        ("gamma", 64000),  # none configured: the model's
    ]
    plain = HTTP.get(probe.base_url + "/models/probe/plain/endpoints").json()["data"]
    assert plain["endpoints"][0]["context_length"] == 0  # none anywhere: unknown
    r = HTTP.get(probe.base_url + "/models/elsewhere/unpriced/endpoints")
    assert not check(r.json(), "/models/{author}/{slug}/endpoints", "get", 200, "application/json")
    unpriced = r.json()["data"]["endpoints"][0]
    assert unpriced["pricing"] == {"prompt": "0", "completion": "0"}
    assert unpriced["context_length"] == 0


BAD = [
    ("context=yL", "context"),
    ("context=0", "context"),
    ("context=", "context"),
    ("context=1.5", "context"),
    ("max_price=-2.00001", "max_price"),
    ("min_price=abc", "min_price"),
    ("min_price=inf", "min_price"),
    ("max_output_price=-1", "max_output_price"),
    ("min_output_price=nan", "min_output_price"),
    ("offset=-1", "offset"),
    ("offset=true", "offset"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=many", "limit"),
    ("min_age_days=1.5", "min_age_days"),
    ("max_age_days=-3", "max_age_days"),
    ("min_intelligence_index=-1", "min_intelligence_index"),
    ("max_coding_index=x", "max_coding_index"),
    ("min_agentic_index=Infinity", "min_agentic_index"),
    ("sort=cheapest", "sort"),
    ("zdr=false", "zdr"),
    ("distillable=maybe", "distillable"),
    ("region=asia", "region"),
    ("category=poetry", "category"),
    ("min_tool_success_rate=2", "min_tool_success_rate"),
]
UNSUPPORTED = [
    ("category=programming", "category"),
    ("distillable=true", "distillable"),
    ("distillable=false", "distillable"),
    ("region=eu", "region"),
    ("use_rss=true", "use_rss"),
    ("min_tool_success_rate=0.9", "min_tool_success_rate"),
    ("max_tool_success_rate=1", "max_tool_success_rate"),
]


def _bad_request(server: Server, path: str, query: str) -> str:
    r = HTTP.get(f"{server.base_url}{path}?{query}")
    assert r.status_code == 400, (query, r.text)
    assert not check(r.json(), path, "get", 400, "application/json")
    error = r.json()["error"]
    assert error["code"] == 400 and error["metadata"]["error_type"] == "invalid_request"
    return str(error["message"])


@pytest.mark.parametrize("path", ["/models", "/models/count"])
@pytest.mark.parametrize(("query", "name"), BAD, ids=[q for q, _ in BAD])
def test_bad_values_are_400_naming_the_parameter(
    probe: Server, path: str, query: str, name: str
) -> None:
    assert f"'{name}'" in _bad_request(probe, path, query)


@pytest.mark.parametrize("path", ["/models", "/models/count"])
@pytest.mark.parametrize(("query", "name"), UNSUPPORTED, ids=[q for q, _ in UNSUPPORTED])
def test_filters_without_data_here_are_400(probe: Server, path: str, query: str, name: str) -> None:
    message = _bad_request(probe, path, query)
    assert f"'{name}' is not supported by this server" in message
