"""The edges of a request, through a real server: attribution headers, a client that hangs up,
fan-out limits, reasoning routing.

Besides the shared simulators, this module's server routes `edge/slow` to `HangingUpstream`,
a socket server in this process that answers late and notes when its caller hangs up.
"""

from __future__ import annotations

import hashlib
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from harness import HTTP, Server, Simulator, endpoint, provider

REPLY = {
    "id": "up-1",
    "object": "chat.completion",
    "created": 0,
    "model": "slow-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "a late answer"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
}


class HangingUpstream:
    """An OpenAI-compatible provider on a real socket that answers after `delay` seconds,
    unless its caller closes the connection first (then `hung_up` is set)."""

    def __init__(self) -> None:
        self.delay = 30.0
        self.hung_up = threading.Event()
        self.answered = threading.Event()
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, delay: float) -> None:
        self.delay, self.requests = delay, 0
        self.hung_up.clear()
        self.answered.clear()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
            while length and len(body) < int(length.group(1)):
                body += conn.recv(65536)
            self.requests += 1
            conn.settimeout(self.delay)
            try:
                if conn.recv(1) == b"":  # the caller closed the connection
                    self.hung_up.set()
                    return
            except TimeoutError:
                pass
            reply = orjson.dumps(REPLY)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(reply)}\r\n\r\n".encode()
                + reply
            )
            self.answered.set()

    def close(self) -> None:
        self.sock.close()


def edge_config(sims: dict[str, Simulator], upstream: HangingUpstream) -> dict[str, Any]:
    fans = [f"fan{i}" for i in range(4)]
    return {
        "providers": [
            {"slug": "slow", "name": "Slow", "api": "openai", "base_url": upstream.url()},
            *(provider(slug, sims["delta"]) for slug in fans),
            provider("thinker", sims["alpha"]),
            provider("plain", sims["alpha"]),
        ],
        "models": [
            {"id": "edge/slow", "name": "Edge: Slow", "endpoints": [endpoint("slow", 1, 1)]},
            *(
                {
                    "id": f"edge/quad-{n}",
                    "name": f"Edge: Quad {n}",
                    "endpoints": [endpoint(slug, 1 + i, 1 + i) for i, slug in enumerate(fans)],
                }
                for n in "abc"
            ),
            {
                "id": "edge/thinker",
                "name": "Edge: Thinker",
                "endpoints": [
                    endpoint(
                        "thinker",
                        5,
                        5,
                        supported_parameters=["max_tokens", "reasoning", "include_reasoning"],
                    ),
                    endpoint("plain", 1, 1, supported_parameters=["max_tokens", "temperature"]),
                ],
            },
        ],
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[HangingUpstream]:
    hanging = HangingUpstream()
    yield hanging
    hanging.close()


@pytest.fixture(scope="module")
def edge(
    sims: dict[str, Simulator], upstream: HangingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = edge_config(sims, upstream)
    srv = Server(tmp_path_factory.mktemp("edge"), config, env={"CROSSROADS_CIRCUIT_FAILURES": "0"})
    yield srv
    srv.stop()


def usage_of(server: Server, key: str) -> float:
    r = HTTP.get(server.base_url + "/key", headers={"Authorization": f"Bearer {key}"})
    usage: float = r.json()["data"]["usage"]
    return usage


def stored_generation_ids(server: Server, key: str, timeout: float = 15.0) -> list[str]:
    """The ids of `key`'s generation records, read from the server's SQLite database once the
    recorder (batches every 250 ms) has written one."""
    database = server.tmp / "data" / "crossroads.db"
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT id FROM generations WHERE api_key_hash = ?", (key_hash,)
            ).fetchall()
        if rows:
            return [r[0] for r in rows]
        time.sleep(0.1)
    return []


def send_and_hang_up(server: Server, key: str, body: dict[str, Any], after: float) -> bytes:
    """Send a request on a raw socket, close it after `after` seconds; what arrived by then."""
    payload = orjson.dumps(body)
    head = (
        "POST /api/v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(head.encode() + payload)
        client.settimeout(after)
        try:
            return client.recv(65536)
        except TimeoutError:
            return b""


# --- a client that hangs up before its answer -----------------------------------------------


def test_a_non_streamed_client_that_hangs_up_cancels_upstream_and_pays_nothing(
    edge: Server, upstream: HangingUpstream
) -> None:
    upstream.reset(delay=30)
    key = edge.create_key("hangs up")["key"]
    body = {"model": "edge/slow", "messages": [{"role": "user", "content": "take your time"}]}
    assert send_and_hang_up(edge, key, body, after=0.3) == b""  # nothing was answered yet
    assert upstream.hung_up.wait(10), "the upstream connection was not closed"
    assert not upstream.answered.is_set() and upstream.requests == 1
    (generation_id,) = stored_generation_ids(edge, key)
    record = HTTP.get(
        edge.base_url + f"/generation?id={generation_id}",
        headers={"Authorization": f"Bearer {key}"},
    ).json()["data"]
    assert record["cancelled"] is True and record["total_cost"] == 0
    assert record["provider_name"] == "Slow" and record["streamed"] is False
    assert usage_of(edge, key) == 0


def test_a_patient_client_of_a_slow_provider_is_served_and_charged(
    edge: Server, upstream: HangingUpstream
) -> None:
    upstream.reset(delay=0.5)
    key = edge.create_key("waits")["key"]
    r = edge.post(
        "/chat/completions",
        {"model": "edge/slow", "messages": [{"role": "user", "content": "x"}]},
        key=key,
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "a late answer"
    assert upstream.answered.is_set() and not upstream.hung_up.is_set()
    record = edge.get(f"/generation?id={r.headers['x-generation-id']}", key=key).json()["data"]
    assert record["cancelled"] is False and record["total_cost"] > 0
    assert usage_of(edge, key) == record["total_cost"]


# --- fan-out ---------------------------------------------------------------------------------


def test_more_than_three_fallback_models_is_400_in_each_dialect(edge: Server) -> None:
    models = ["edge/quad-a", "edge/quad-b", "edge/quad-c", "edge/thinker"]
    messages = [{"role": "user", "content": "x"}]
    r = edge.post("/chat/completions", {"models": models, "messages": messages})
    assert r.status_code == 400 and "at most 3" in r.json()["error"]["message"]
    r = edge.post(
        "/messages",
        {"model": "edge/thinker", "models": models, "messages": messages, "max_tokens": 5},
    )
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert "at most 3" in r.json()["error"]["message"]
    r = edge.post("/responses", {"model": "edge/thinker", "models": models, "input": "x"})
    assert r.status_code == 400 and "at most 3" in r.json()["error"]["message"]
    assert edge.post("/chat/completions", {"models": models[:3], "messages": messages}).is_success


def test_repeated_models_are_tried_once(edge: Server, sims: dict[str, Simulator]) -> None:
    sims["delta"].reset(fail_rate=1, status=500)
    r = edge.post(
        "/chat/completions",
        {
            "model": "edge/quad-a",
            "models": ["edge/quad-a"] * 3,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert r.json()["error"]["message"].startswith("Provider returned error")
    assert sims["delta"].state()["counters"]["requests"] == 4  # its four endpoints, once each


def test_attempts_per_request_are_capped_at_ten(edge: Server, sims: dict[str, Simulator]) -> None:
    sims["delta"].reset(fail_rate=1, status=500)
    r = edge.post(
        "/chat/completions",
        {
            "model": "edge/quad-a",
            "models": ["edge/quad-b", "edge/quad-c"],  # 12 endpoints in all
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert r.json()["error"]["message"].startswith("Provider returned error")
    assert sims["delta"].state()["counters"]["requests"] == 10
    record = edge.generation(r.headers["x-generation-id"])
    assert len(record["attempts"]) == 10


# --- reasoning -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "served_by"),
    [
        ({}, "Plain"),
        ({"reasoning": {"effort": "high"}}, "Thinker"),
        ({"reasoning": {"max_tokens": 200}}, "Thinker"),
        ({"reasoning": {"effort": "low", "exclude": True}}, "Thinker"),  # reasons, unseen
        ({"reasoning_effort": "medium"}, "Thinker"),
        ({"include_reasoning": True}, "Thinker"),
        ({"reasoning": {"enabled": False}}, "Plain"),
        ({"reasoning_effort": "none"}, "Plain"),
    ],
)
def test_reasoning_prefers_endpoints_that_support_it(
    edge: Server, fields: dict[str, Any], served_by: str
) -> None:
    r = edge.post(
        "/chat/completions",
        {
            "model": "edge/thinker",
            "messages": [{"role": "user", "content": "think"}],
            "provider": {"sort": "price"},  # Plain is the cheaper
            **fields,
        },
    )
    assert r.status_code == 200 and r.json()["provider"] == served_by


def test_reasoning_through_the_messages_api_prefers_thinking_endpoints(edge: Server) -> None:
    body = {
        "model": "edge/thinker",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "think"}],
        "provider": {"sort": "price"},
    }
    r = edge.post("/messages", {**body, "thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert r.status_code == 200
    assert edge.generation(r.headers["x-generation-id"])["provider_name"] == "Thinker"
    r = edge.post("/messages", body)
    assert edge.generation(r.headers["x-generation-id"])["provider_name"] == "Plain"


# --- attribution headers ---------------------------------------------------------------------


def test_attribution_headers_are_bounded_and_cleaned(server: Server) -> None:
    # control characters other than tab cannot pass HTTP parsers; a lone 0x85 (NEL when read
    # as Latin-1) can
    title = b"My\tApp " + "Café".encode() + b"!" * 300_000
    r = server.post(
        "/chat/completions",
        {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]},
        headers={
            "X-Title": title,
            "HTTP-Referer": "https://example.com/" + "r" * 5000,
            "User-Agent": "agent\t/" + "u" * 5000,
        },
    )
    assert r.status_code == 200
    record = server.generation(r.headers["x-generation-id"])
    assert record["app_title"] == "MyApp Café" + "!" * 190
    assert record["http_referer"] == ("https://example.com/" + "r" * 5000)[:500]
    assert record["origin"] == record["http_referer"]
    assert record["user_agent"] == ("agent/" + "u" * 5000)[:500]
    r = server.post(
        "/chat/completions",
        {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]},
        headers={"X-OpenRouter-Title": b"\x85 \x85", "X-Title": b"older \x85header"},
    )
    assert server.generation(r.headers["x-generation-id"])["app_title"] == "older header"
    r = server.post(
        "/chat/completions",
        {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]},
        headers={"X-OpenRouter-Title": "new", "X-Title": "old", "User-Agent": b"\x85"},
    )
    record = server.generation(r.headers["x-generation-id"])
    assert record["app_title"] == "new" and record["user_agent"] is None
