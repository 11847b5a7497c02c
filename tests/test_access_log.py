"""`crossroads serve --access-log`: one JSON line per request on standard error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from harness import HTTP, Server, Simulator, endpoint, provider


@pytest.fixture(scope="module")
def logged(
    sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = {
        "server": {"stream_keepalive_seconds": 0.2},
        "providers": [provider("alpha", sims["alpha"])],
        "models": [{"id": "logged/one", "endpoints": [endpoint("alpha", 1, 2)]}],
    }
    srv = Server(tmp_path_factory.mktemp("access-log"), config, "--access-log")
    yield srv
    srv.stop()


def access_line(server: Server, **match: object) -> dict:
    """The one access-log line whose fields have the values of `match` (waited for: a line
    is written once its response has ended)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        found = [x for x in lines if all(x.get(k) == v for k, v in match.items())]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, (match, lines)
            return found[0]
        time.sleep(0.05)


def test_a_served_request(logged: Server) -> None:
    r = logged.chat("logged/one", "one two three")
    assert r.status_code == 200
    usage = r.json()["usage"]
    line = access_line(logged, id=r.headers["x-generation-id"])
    key = HTTP.get(logged.url("/api/v1/key"), headers=logged.headers()).json()["data"]
    assert line["key"] == key["label"] and line["key"].startswith("sk-cr-v1-")
    assert line["key_name"] == "tests"
    assert line["model"] == "logged/one" and line["provider"] == "alpha"
    assert line["status"] == 200 and line["error"] is None
    assert line["tokens"] == {
        "prompt": usage["prompt_tokens"],
        "completion": usage["completion_tokens"],
    }
    assert line["cost"] == pytest.approx(usage["cost"]) and line["cost"] > 0
    assert line["path"] == "/api/v1/chat/completions" and line["method"] == "POST"
    assert 0 <= line["overhead_ms"] <= line["duration_ms"] < 5000


def test_a_stream(logged: Server) -> None:
    body = {"model": "logged/one", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream(
        "POST", logged.base_url + "/chat/completions", json=body, headers=logged.headers()
    ) as r:
        events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
    line = access_line(logged, id=r.headers["x-generation-id"])
    assert line["status"] == 200 and line["provider"] == "alpha"
    assert line["tokens"]["completion"] == events[-1]["usage"]["completion_tokens"]


def test_a_failed_request(logged: Server, sims: dict[str, Simulator]) -> None:
    sims["alpha"].configure(fail_rate=1.0, status=503)
    r = logged.chat("logged/one")
    assert r.status_code == 503
    line = access_line(logged, id=r.headers["x-generation-id"])
    assert line["status"] == 503 and line["error"] == 503
    assert line["model"] == "logged/one" and line["provider"] is None
    assert line["cost"] == 0 and line["key_name"] == "tests"


def test_requests_outside_inference(logged: Server) -> None:
    assert logged.get("/no/such/path").status_code == 404
    line = access_line(logged, path="/api/v1/no/such/path")
    assert line["status"] == 404 and line["method"] == "GET"
    assert line["id"] is None and line["model"] is None and line["tokens"]["prompt"] is None
    assert HTTP.get(logged.url("/metrics")).status_code == 200
    assert access_line(logged, path="/metrics")["status"] == 200
