"""Hard filters and parameter handling, through the server (OpenRouter's `provider` preferences)."""

from __future__ import annotations

from harness import Server


def served_by(
    server: Server, provider: dict, model: str = "acme/trio", content: str = "hello", **body
) -> str:
    """Which provider served, through the official openai SDK."""
    return server.sdk_chat(model, content, provider=provider, **body).model_extra["provider"]


def error(r) -> dict:
    body = r.json()
    assert (
        set(body) >= {"error"}
        and isinstance(body["error"]["code"], int)
        and body["error"]["message"]
    )
    assert body["error"]["code"] == r.status_code
    return body["error"]


def test_only_and_ignore_by_slug_tag_or_name(server: Server) -> None:
    assert served_by(server, {"only": ["gamma"]}) == "Gamma"
    assert served_by(server, {"only": ["Gamma"]}) == "Gamma"
    assert served_by(server, {"ignore": ["alpha", "beta"]}) == "Gamma"
    r = server.chat("acme/trio", provider={"only": ["nobody"]})
    assert r.status_code == 404
    assert error(r)["metadata"]["availability"]["excluded_by"] == ["allowed_providers"]


def test_quantizations(server: Server) -> None:
    assert served_by(server, {"quantizations": ["fp4"]}) == "Gamma"  # fp4 includes mxfp4
    assert served_by(server, {"quantizations": ["bf16"]}) == "Beta"
    r = server.chat("acme/trio", provider={"quantizations": ["int4"]})
    assert r.status_code == 404 and error(r)["metadata"]["availability"]["constraint"] == {
        "field": "quantization"
    }
    assert "quantization" in error(r)["message"]


def test_max_price_per_million_tokens(server: Server) -> None:
    assert (
        served_by(server, {"max_price": {"prompt": 1.5, "completion": "1.5"}, "order": ["gamma"]})
        == "Alpha"
    )
    assert served_by(server, {"max_price": {"prompt": 2.5}, "order": ["gamma", "beta"]}) == "Beta"
    r = server.chat("acme/trio", provider={"max_price": {"prompt": 0.5}})
    assert r.status_code == 404
    availability = error(r)["metadata"]["availability"]
    assert (
        availability["code"] == "constraint_filtered"
        and availability["constraint"]["field"] == "max_price"
    )
    assert server.chat("acme/trio", provider={"max_price": {"prompt": "cheap"}}).status_code == 400


def test_data_collection_and_zdr(server: Server) -> None:
    assert served_by(server, {"data_collection": "deny", "order": ["beta", "gamma"]}) == "Alpha"
    assert served_by(server, {"zdr": True, "order": ["gamma"]}) == "Alpha"
    r = server.chat(
        "acme/backup", provider={"zdr": True}
    )  # delta declares no policy: it cannot promise ZDR
    assert (
        r.status_code == 404
        and "data_policy:zdr" in error(r)["metadata"]["availability"]["excluded_by"]
    )


def test_context_length_and_max_tokens(server: Server) -> None:
    long_prompt = "word " * 4000  # about 5,000 tokens: more than alpha's 4,096 context
    assert served_by(server, {"order": ["alpha"]}, content=long_prompt) in ("Beta", "Gamma")
    r = server.chat("acme/trio", long_prompt, provider={"only": ["alpha"]})
    assert r.status_code == 400 and error(r)["metadata"]["error_type"] == "context_length_exceeded"
    # alpha writes at most 1,024 tokens, beta 8,192
    assert served_by(server, {"order": ["alpha", "beta"]}, max_tokens=2000) == "Beta"
    r = server.chat("acme/trio", max_tokens=100_000)
    assert r.status_code == 400 and "max_tokens" in error(r)["message"]


def test_unsupported_parameters_are_dropped_unless_required(server: Server, sims) -> None:
    assert served_by(server, {"order": ["beta"]}, temperature=0.3, max_tokens=7, top_k=3) == "Beta"
    sent = sims["beta"].last_body()
    assert "temperature" not in sent and "top_k" not in sent and sent["max_tokens"] == 7
    assert "provider" not in sent and sent["model"] == "beta-model"
    r = server.chat(
        "acme/trio", temperature=0.3, provider={"only": ["beta"], "require_parameters": True}
    )
    assert (
        r.status_code == 404
        and error(r)["metadata"]["availability"]["constraint"]["field"] == "require_parameters"
    )
    assert served_by(server, {"order": ["beta"], "require_parameters": True}, temperature=0.3) in (
        "Alpha",
        "Gamma",
    )


def test_max_completion_tokens_is_renamed_for_endpoints_that_want_max_tokens(
    server: Server, sims
) -> None:
    assert served_by(server, {"order": ["gamma"]}, max_completion_tokens=5) == "Gamma"
    sent = sims["gamma"].last_body()
    assert sent["max_tokens"] == 5 and "max_completion_tokens" not in sent


def test_tools_and_response_format_prefer_endpoints_that_support_them(server: Server) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert served_by(server, {"order": ["gamma", "beta"]}) == "Gamma"
    assert (
        served_by(server, {"order": ["gamma", "beta"]}, tools=tools) == "Beta"
    )  # gamma has no tools
    json_mode = {"type": "json_object"}
    assert served_by(server, {"order": ["gamma", "beta"]}, response_format=json_mode) == "Beta"
    # a soft preference never empties the list: only gamma left, the parameter is dropped
    assert served_by(server, {"only": ["gamma"]}, response_format=json_mode) == "Gamma"


def test_provider_quirks_are_applied(server: Server, sims) -> None:
    assert served_by(server, {}, "acme/backup", seed=7, max_completion_tokens=5) == "Delta"
    received = sims["delta"].state()["received"][-1]
    assert (
        received["headers"]["X-Team"] == "crossroads"
        and received["headers"]["Api-Key"] == "Token delta-secret"
    )
    assert "seed" not in received["body"] and received["body"]["max_tokens"] == 5


def test_provider_without_credentials_is_listed_but_not_routed(server: Server, sims) -> None:
    before = sims["delta"].state()["counters"]["requests"]
    r = server.chat("acme/locked")
    assert r.status_code == 404
    assert "missing credentials: set LOCKED_TEST_API_KEY" in error(r)["message"]
    assert sims["delta"].state()["counters"]["requests"] == before


def test_end_user_id_is_hashed_upstream(server: Server, sims) -> None:
    assert served_by(server, {"order": ["alpha"]}, user="alice@example.com") == "Alpha"
    sent = sims["alpha"].last_body()
    assert sent["user"] != "alice@example.com" and len(sent["user"]) == 32
