"""Every served operation's responses, streamed events included, against the schemas of
OpenRouter's OpenAPI spec (../shared/reference/openrouter-openapi.yaml), through the three
upstream wire protocols; and the OpenAPI document this server serves.

Each test sends real requests to the shared server (simulated providers behind it) and
lists every field of the answer that does not fit the spec, with the schema path.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

import openapi_schema
from harness import HTTP, MANAGEMENT_KEY, Server, Simulator
from openapi_schema import SERVED_OPERATIONS, check, sse_events

# model -> (simulator, wire protocol) of the shared server
UPSTREAMS = {
    "acme/open": ("alpha", "openai"),
    "acme/sonnet": ("gamma", "anthropic"),
    "acme/flash": ("beta", "gemini"),
}
MODELS = list(UPSTREAMS)
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
HELLO = [{"role": "user", "content": "hello there"}]

# (dialect path, variant) -> request body without model and stream
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("/chat/completions", "text"): {"messages": HELLO, "max_tokens": 50},
    ("/chat/completions", "tools"): {
        "messages": [{"role": "user", "content": "weather in Lima?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": PARAMETERS}}],
    },
    ("/chat/completions", "reasoning"): {"messages": HELLO, "reasoning": {"effort": "low"}},
    ("/chat/completions", "length"): {"messages": HELLO, "max_tokens": 1},
    ("/chat/completions", "json"): {
        "messages": HELLO,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
    },
    ("/messages", "text"): {"messages": HELLO, "max_tokens": 50, "system": "Be brief."},
    ("/messages", "tools"): {
        "messages": [{"role": "user", "content": "weather in Lima?"}],
        "max_tokens": 200,
        "tools": [{"name": "weather", "input_schema": PARAMETERS}],
    },
    ("/messages", "reasoning"): {
        "messages": HELLO,
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    },
    ("/messages", "length"): {"messages": HELLO, "max_tokens": 1},
    ("/responses", "text"): {"input": "hello there", "instructions": "Be brief."},
    ("/responses", "tools"): {
        "input": "weather in Lima?",
        "tools": [{"type": "function", "name": "weather", "parameters": PARAMETERS}],
    },
    ("/responses", "reasoning"): {"input": "hello there", "reasoning": {"effort": "low"}},
    ("/responses", "length"): {"input": "hello there", "max_output_tokens": 1},
    ("/responses", "json"): {
        "input": "hello there",
        "text": {"format": {"type": "json_schema", "name": "a", "schema": SCHEMA}},
    },
}


def _report(operation: str, r: httpx.Response, problems: list[str]) -> str:
    lines = "\n  ".join(problems)
    return f"{operation} -> {r.status_code} does not fit the spec:\n  {lines}"


def stream_problems(path: str, r: httpx.Response) -> list[str]:
    if not r.headers.get("content-type", "").startswith("text/event-stream"):
        return [f"content-type {r.headers.get('content-type')!r}, not text/event-stream"]
    return openapi_schema.stream_failures(path, r.text)


def problems_of(path: str, method: str, r: httpx.Response) -> list[str]:
    """How the response `r` of `method path` departs from the spec (empty: it conforms)."""
    if r.status_code == 200 and r.headers.get("content-type", "").startswith("text/event-stream"):
        return stream_problems(path, r)
    if not r.headers.get("content-type", "").startswith("application/json"):
        return [f"content-type {r.headers.get('content-type')!r}, not application/json"]
    return check(r.json(), path, method, r.status_code, "application/json")


def assert_conforms(path: str, method: str, r: httpx.Response, *, status: int) -> Any:
    operation = f"{method.upper()} {path}"
    assert r.status_code == status, f"{operation}: {r.status_code} {r.text[:500]}"
    problems = problems_of(path, method, r)
    assert not problems, _report(operation, r, problems)
    return r.json() if "json" in r.headers.get("content-type", "") else r.text


# --- inference: every dialect, through every upstream wire protocol ---------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("model", MODELS, ids=[UPSTREAMS[m][1] for m in MODELS])
@pytest.mark.parametrize("case", list(REQUESTS), ids=[f"{p[1:]}-{v}" for p, v in REQUESTS])
def test_inference(server: Server, case: tuple[str, str], model: str, stream: bool) -> None:
    path, _ = case
    body = {"model": model, **REQUESTS[case], "stream": stream}
    if stream and path == "/chat/completions":
        body["stream_options"] = {"include_usage": True}
    r = server.post(path, body)
    assert r.headers.get("x-generation-id", "").startswith("gen-")
    assert_conforms(path, "post", r, status=200)


@pytest.mark.parametrize("model", MODELS, ids=[UPSTREAMS[m][1] for m in MODELS])
def test_legacy_completions(server: Server, model: str) -> None:
    """POST /completions left the current spec; its usage is the chat usage, its errors
    OpenRouter's envelope."""
    body = {"model": model, "prompt": "Once upon a time", "max_tokens": 50}
    done = server.post("/completions", body)
    assert done.status_code == 200 and done.json()["choices"][0]["text"]
    problems = [
        str(f)
        for f in openapi_schema.failures(done.json()["usage"], "#/components/schemas/ChatUsage")
    ]
    streamed = server.post("/completions", {**body, "stream": True})
    events = [orjson.loads(d) for _, d in sse_events(streamed.text) if d != "[DONE]"]
    assert events and all(e["object"] == "text_completion" for e in events if "error" not in e)
    bad = server.post("/completions", {"model": model, "prompt": ["a", "b"]})
    problems += check(bad.json(), "/chat/completions", "post", bad.status_code, "application/json")
    assert bad.status_code == 400 and not problems, problems


LONG = "one two three four five six seven eight"


def _stream_dies(sims: dict[str, Simulator], model: str) -> None:
    """After a few pieces of text: an Anthropic stream spends two events before its text."""
    sims[UPSTREAMS[model][0]].configure(die_after_chunks=4)


@pytest.mark.parametrize("model", MODELS, ids=[UPSTREAMS[m][1] for m in MODELS])
@pytest.mark.parametrize("path", ["/chat/completions", "/messages", "/responses"])
def test_stream_failure_events(
    server: Server, sims: dict[str, Simulator], path: str, model: str
) -> None:
    """A provider that dies mid-stream: the error event the stream ends with fits too."""
    _stream_dies(sims, model)
    body = {**REQUESTS[(path, "text")], "model": model, "stream": True}
    if path == "/responses":
        body["input"] = LONG
    else:
        body["messages"] = [{"role": "user", "content": LONG}]
    r = server.post(path, body)
    assert_conforms(path, "post", r, status=200)
    last = orjson.loads([d for _, d in sse_events(r.text) if d != "[DONE]"][-1])
    assert "error" in last or last.get("type") in ("error", "response.failed"), last


# --- inference errors ----------------------------------------------------------------------

BAD_BODIES = {
    "/chat/completions": {"model": "acme/open", "messages": "not a list"},
    "/messages": {"model": "acme/open", "max_tokens": 10, "messages": "not a list"},
    "/responses": {"model": "acme/open", "input": 42},
}
INFERENCE = list(BAD_BODIES)


@pytest.mark.parametrize("path", INFERENCE)
def test_inference_400(server: Server, path: str) -> None:
    assert_conforms(path, "post", server.post(path, BAD_BODIES[path]), status=400)
    r = HTTP.post(server.base_url + path, content=b"{not json", headers=server.headers())
    assert_conforms(path, "post", r, status=400)


@pytest.mark.parametrize("path", INFERENCE)
def test_inference_401(server: Server, path: str) -> None:
    body = {**REQUESTS[(path, "text")], "model": "acme/open"}
    assert_conforms(path, "post", HTTP.post(server.base_url + path, json=body), status=401)
    assert_conforms(path, "post", server.post(path, body, key="sk-cr-wrong"), status=401)


@pytest.mark.parametrize("path", INFERENCE)
def test_inference_403_for_a_management_key(server: Server, path: str) -> None:
    body = {**REQUESTS[(path, "text")], "model": "acme/open"}
    assert_conforms(path, "post", server.post(path, body, key=MANAGEMENT_KEY), status=403)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("path", INFERENCE)
def test_inference_404_unknown_model(server: Server, path: str, stream: bool) -> None:
    body = {**REQUESTS[(path, "text")], "model": "acme/no-such-model", "stream": stream}
    assert_conforms(path, "post", server.post(path, body), status=404)


@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("path", INFERENCE)
def test_inference_upstream_errors(
    server: Server, sims: dict[str, Simulator], path: str, status: int
) -> None:
    """The only provider fails: the client gets an error of the same class, in the body the
    spec gives for the status it gets."""
    sims["delta"].configure(fail_rate=1.0, status=status)
    body = {**REQUESTS[(path, "text")], "model": "acme/backup"}
    r = server.post(path, body)
    assert r.status_code == 429 if status == 429 else r.status_code >= 500
    assert_conforms(path, "post", r, status=r.status_code)


# --- catalog -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["", "?limit=2&offset=1", "?output_modalities=all", "?supported_parameters=tools"]
)
def test_models(server: Server, query: str) -> None:
    data = assert_conforms("/models", "get", server.get("/models" + query), status=200)
    assert data["data"]


def test_models_400(server: Server) -> None:
    assert_conforms("/models", "get", server.get("/models?limit=many"), status=400)


def test_models_count(server: Server) -> None:
    data = assert_conforms("/models/count", "get", server.get("/models/count"), status=200)
    assert data["data"]["count"] > 0


@pytest.mark.parametrize("model", ["acme/trio", "acme/flash", "acme/locked", "acme/trio:nitro"])
def test_model_and_its_endpoints(server: Server, model: str) -> None:
    one = server.get(f"/model/{model}")
    assert_conforms("/model/{author}/{slug}", "get", one, status=200)
    endpoints = server.get(f"/models/{model}/endpoints")
    data = assert_conforms("/models/{author}/{slug}/endpoints", "get", endpoints, status=200)
    assert data["data"]["endpoints"]


def test_unknown_model_404(server: Server) -> None:
    assert_conforms("/model/{author}/{slug}", "get", server.get("/model/acme/nope"), status=404)
    r = server.get("/models/acme/nope/endpoints")
    assert_conforms("/models/{author}/{slug}/endpoints", "get", r, status=404)


def test_providers(server: Server) -> None:
    data = assert_conforms("/providers", "get", server.get("/providers"), status=200)
    assert data["data"]


# --- generations and keys ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=[UPSTREAMS[m][1] for m in MODELS])
def test_generation(server: Server, model: str) -> None:
    done = server.chat(model)
    generation_id = done.headers["x-generation-id"]
    r = server.get(f"/generation?id={generation_id}")
    assert_conforms("/generation", "get", r, status=200)


def test_generation_errors(server: Server) -> None:
    assert_conforms("/generation", "get", server.get("/generation?id=gen-nope"), status=404)
    r = HTTP.get(server.base_url + "/generation?id=gen-nope")
    assert_conforms("/generation", "get", r, status=401)


@pytest.mark.parametrize("key", ["api", "management"])
def test_current_key(server: Server, key: str) -> None:
    token = server.api_key if key == "api" else MANAGEMENT_KEY
    assert_conforms("/key", "get", server.get("/key", key=token), status=200)
    # /auth/key is an alias: the same operation
    assert_conforms("/key", "get", server.get("/auth/key", key=token), status=200)
    assert_conforms("/key", "get", HTTP.get(server.base_url + "/key"), status=401)


def _mgmt(server: Server, method: str, path: str, body: Any = None) -> httpx.Response:
    return HTTP.request(
        method,
        server.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {MANAGEMENT_KEY}"},
    )


def test_keys_crud(server: Server) -> None:
    body = {"name": "conformance", "limit": 5, "limit_reset": "monthly"}
    created = assert_conforms("/keys", "post", _mgmt(server, "POST", "/keys", body), status=201)
    key_hash = created["data"]["hash"]
    expiring = {"name": "expiring", "expires_at": "2099-01-01T00:00:00Z"}
    assert_conforms("/keys", "post", _mgmt(server, "POST", "/keys", expiring), status=201)
    listed = assert_conforms("/keys", "get", _mgmt(server, "GET", "/keys"), status=200)
    assert key_hash in [k["hash"] for k in listed["data"]]
    r = _mgmt(server, "GET", "/keys?include_disabled=true&offset=0")
    assert_conforms("/keys", "get", r, status=200)
    one = "/keys/{hash}"
    assert_conforms(one, "get", _mgmt(server, "GET", f"/keys/{key_hash}"), status=200)
    patch = {"name": "renamed", "disabled": True, "limit": None}
    r = _mgmt(server, "PATCH", f"/keys/{key_hash}", patch)
    assert assert_conforms(one, "patch", r, status=200)["data"]["disabled"] is True
    assert_conforms(one, "delete", _mgmt(server, "DELETE", f"/keys/{key_hash}"), status=200)
    assert_conforms(one, "get", _mgmt(server, "GET", f"/keys/{key_hash}"), status=404)


def test_keys_errors(server: Server) -> None:
    assert_conforms("/keys", "post", _mgmt(server, "POST", "/keys", {"limit": 5}), status=400)
    r = HTTP.post(server.base_url + "/keys", json={"name": "x"})
    assert_conforms("/keys", "post", r, status=401)
    assert_conforms("/keys", "get", HTTP.get(server.base_url + "/keys"), status=401)
    one = "/keys/{hash}"
    assert_conforms(one, "get", _mgmt(server, "GET", "/keys/" + "0" * 64), status=404)
    r = _mgmt(server, "PATCH", "/keys/" + "0" * 64, {"name": "x"})
    assert_conforms(one, "patch", r, status=404)
    assert_conforms(one, "delete", _mgmt(server, "DELETE", "/keys/" + "0" * 64), status=404)
    created = server.create_key("bad-patch")["data"]["hash"]
    r = _mgmt(server, "PATCH", f"/keys/{created}", {"limit": -1})
    assert_conforms(one, "patch", r, status=400)


def test_credits_and_activity(server: Server) -> None:
    credits = assert_conforms("/credits", "get", _mgmt(server, "GET", "/credits"), status=200)
    assert credits["data"]["total_credits"] >= 0
    assert_conforms("/credits", "get", server.get("/credits"), status=403)  # an inference key
    assert_conforms("/credits", "get", HTTP.get(server.base_url + "/credits"), status=401)
    server.chat("acme/widget-1", "activity")
    deadline = time.monotonic() + 5  # the record is written by the background recorder
    rows: list[dict[str, Any]] = []
    while not any(row["model"] == "acme/widget-1" for row in rows):
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
        r = _mgmt(server, "GET", "/activity")
        rows = assert_conforms("/activity", "get", r, status=200)["data"]
    r = _mgmt(server, "GET", "/activity?group_by=workspace")
    grouped = assert_conforms("/activity", "get", r, status=200)["data"]
    assert grouped and all("workspace_id" in row for row in grouped)
    r = _mgmt(server, "GET", "/activity?date=1999-01-01")
    assert_conforms("/activity", "get", r, status=400)
    assert_conforms("/activity", "get", server.get("/activity"), status=403)


# --- the served OpenAPI document -----------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("prefix", ["/api/v1", "/v1"])
def test_served_openapi_document(server: Server, prefix: str) -> None:
    r = HTTP.get(server.url(prefix + "/openapi.json"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    reference = openapi_schema.spec()
    assert doc["openapi"] == reference["openapi"] and doc["info"] == reference["info"]
    assert doc["info"]["license"]["name"] == "MIT"
    assert doc["servers"][0]["url"] == server.url(prefix)
    served = {p: {m for m in item if m != "parameters"} for p, item in doc["paths"].items()}
    assert served == SERVED_OPERATIONS
    for path, item in doc["paths"].items():  # operations are the spec's, untouched
        for method, operation in item.items():
            assert operation == reference["paths"][path][method]
    schemas = doc["components"]["schemas"]
    dangling = {ref for ref in _refs(doc) if ref.split("/")[-1] not in schemas}
    assert not dangling
    assert len(schemas) < len(reference["components"]["schemas"])  # only what is referenced
    assert "ChatStreamChunk" in schemas and "MessagesStreamEvents" in schemas
    schemes = doc["components"]["securitySchemes"]
    named = {name for requirement in doc["security"] for name in requirement}
    assert named == set(schemes) and schemes["apiKey"]["scheme"] == "bearer"


def test_packaged_spec_is_the_reference() -> None:
    packaged = openapi_schema.PACKAGED.read_bytes()
    assert packaged.startswith(b"components:") and b"name: 'MIT'" in packaged
    if openapi_schema.REFERENCE.exists():
        assert packaged == openapi_schema.REFERENCE.read_bytes()
