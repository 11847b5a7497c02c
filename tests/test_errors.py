"""Bad input gets OpenRouter's error envelope with the right status, over raw HTTP and the SDKs."""

from __future__ import annotations

import openai
import pytest

from harness import HTTP, MANAGEMENT_KEY, Server


def envelope(r) -> dict:
    body = r.json()
    assert body["error"]["code"] == r.status_code and isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["metadata"], dict) and body["error"]["metadata"]["error_type"]
    return body["error"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "acme/widget-1"}, "messages"),
        ({"model": "acme/widget-1", "messages": []}, "messages"),
        ({"model": "acme/widget-1", "messages": [{"role": "robot", "content": "x"}]}, "role"),
        (
            {
                "model": "acme/widget-1",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": 9,
            },
            "temperature",
        ),
        (
            {
                "model": "acme/widget-1",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": "ten",
            },
            "max_tokens",
        ),
        (
            {
                "model": "acme/widget-1",
                "messages": [{"role": "user", "content": "x"}],
                "provider": {"sort": "fast"},
            },
            "sort",
        ),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        (
            {
                "model": "acme/widget-1",
                "messages": [{"role": "user", "content": "x"}],
                "reasoning_effort": "low",
                "reasoning": {"effort": "high"},
            },
            "reasoning",
        ),
        ([1, 2, 3], "object"),
    ],
)
def test_malformed_requests_are_400(server: Server, body, needle: str) -> None:
    r = server.post("/chat/completions", body)
    assert r.status_code == 400, r.text
    assert needle in envelope(r)["message"]


def test_body_that_is_not_json(server: Server) -> None:
    r = HTTP.post(
        server.base_url + "/chat/completions", content=b"{not json", headers=server.headers()
    )
    assert r.status_code == 400 and "JSON" in envelope(r)["message"]


def test_body_too_large_is_413(server: Server) -> None:
    r = server.chat("acme/widget-1", "x" * 300_000)  # the shared server takes 200,000 bytes
    assert r.status_code == 413 and envelope(r)["metadata"]["error_type"] == "payload_too_large"


def test_authentication(server: Server) -> None:
    body = {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]}
    assert HTTP.post(server.base_url + "/chat/completions", json=body).status_code == 401
    r = server.post("/chat/completions", body, key="sk-cr-v1-" + "0" * 64)
    assert r.status_code == 401 and envelope(r)["metadata"]["error_type"] == "authentication"
    r = server.post("/chat/completions", body, key=MANAGEMENT_KEY)
    assert r.status_code == 403
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=server.base_url, api_key="wrong", max_retries=0
        ).chat.completions.create(**body)


def test_unknown_model_is_404(server: Server) -> None:
    r = server.chat("acme/nothing-here")
    assert r.status_code == 404 and "acme/nothing-here" in envelope(r)["message"]
    with pytest.raises(openai.NotFoundError):
        server.openai().chat.completions.create(
            model="acme/nothing-here", messages=[{"role": "user", "content": "x"}]
        )
    assert server.chat("acme/widget-1:nonsense").status_code == 404


def test_model_without_text_output_is_rejected(server: Server) -> None:
    r = server.chat("openai/text-embedding-3-small")
    assert r.status_code in (400, 404)
    envelope(r)


def test_unknown_route_and_method(server: Server) -> None:
    r = server.get("/nothing")
    assert r.status_code == 404 and envelope(r)
    r = HTTP.get(server.base_url + "/chat/completions")
    assert r.status_code == 405 and envelope(r)
