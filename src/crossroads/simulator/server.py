"""A simulated OpenAI-compatible provider, a real HTTP server for tests, demos and benchmarks.

It answers `/v1/chat/completions` (streaming and not) with a deterministic reply that
echoes the last user message, reports usage like a provider does, and can be made slow,
flaky or broken: latency before the first token, a token rate, a failure rate with a
chosen status, a connection that dies mid-stream. `/_sim/*` lets a test change that
behaviour at run time and read back what the provider received.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Behaviour:
    name: str = "simulator"
    latency_ms: float = 0.0
    tokens_per_second: float = 0.0  # 0: as fast as possible
    fail_rate: float = 0.0
    status: int = 500
    die_after_chunks: int | None = None
    max_reply_tokens: int = 16


@dataclass
class Counters:
    requests: int = 0
    completed: int = 0
    failed: int = 0
    streams_cancelled: int = 0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def _words(body: dict[str, Any]) -> list[str]:
    return [w for m in body.get("messages") or [] for w in _text(m.get("content")).split()]


def _sample(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _sample(v) for k, v in props.items() if k in (schema.get("required") or props)}
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(kind, None)


def _tool_calls(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        tools = [t for t in tools if t["function"]["name"] == choice.get("function", {}).get("name")] or tools[:1]
    elif body.get("parallel_tool_calls") is False:
        tools = tools[:1]
    return [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": t["function"]["name"],
                         "arguments": orjson.dumps(_sample(t["function"].get("parameters") or {})).decode()},
        }
        for i, t in enumerate(tools)
    ]


class Simulator:
    def __init__(self, behaviour: Behaviour, seed: int | None = None) -> None:
        self.behaviour = behaviour
        self.counters = Counters()
        self.received: deque[dict[str, Any]] = deque(maxlen=200)
        self.rng = random.Random(seed)

    def reply(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """The reply's tokens and the finish reason, from the last user message."""
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        echo = _text(users[-1].get("content")).split() if users else []
        tokens = [f"{self.behaviour.name}", "says:", *echo][: self.behaviour.max_reply_tokens]
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if limit and limit < len(tokens):
            return tokens[:limit], "length"
        return tokens, "stop"

    def usage(self, body: dict[str, Any], completion: int) -> dict[str, Any]:
        prompt = len(_words(body)) + 3 * len(body.get("messages") or [])
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def chat(self, request: web.Request) -> web.StreamResponse:
        b = self.behaviour
        self.counters.requests += 1
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": {"message": "invalid JSON", "code": 400}}, status=400)
        self.received.append({"body": body, "headers": dict(request.headers)})
        stream = bool(body.get("stream"))
        if b.latency_ms and not stream:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.fail_rate and self.rng.random() < b.fail_rate:
            self.counters.failed += 1
            headers = {"Retry-After": "1"} if b.status == 429 else None
            err = {"error": {"message": f"{b.name} simulated failure", "type": "server_error", "code": b.status}}
            return web.Response(body=orjson.dumps(err), status=b.status, content_type="application/json",
                                headers=headers)
        if stream:
            return await self._stream(request, body)
        tokens, finish = self.reply(body)
        calls = _tool_calls(body)
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else " ".join(tokens)}
        if calls:
            message["tool_calls"], finish = calls, "tool_calls"
        self.counters.completed += 1
        return web.Response(body=orjson.dumps({
            "id": f"chatcmpl-{self.counters.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": self.usage(body, len(tokens)),
        }), content_type="application/json")

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        b = self.behaviour
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        tokens, finish = self.reply(body)
        calls = _tool_calls(body)
        base = {"id": f"chatcmpl-{self.counters.requests}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model")}

        def event(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        pieces = [event({"role": "assistant", "content": ""})]
        if calls:
            pieces += [event({"tool_calls": [{"index": i, **c}]}) for i, c in enumerate(calls)]
            finish = "tool_calls"
        else:
            pieces += [event({"content": (" " if i else "") + t}) for i, t in enumerate(tokens)]
        pieces.append(event({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            pieces.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": self.usage(body, len(tokens))})
                          + b"\n\n")
        pieces.append(b"data: [DONE]\n\n")
        try:
            if b.latency_ms:
                await asyncio.sleep(b.latency_ms / 1000)
            for i, piece in enumerate(pieces):
                if b.die_after_chunks is not None and i >= b.die_after_chunks + 1:
                    request.transport.abort()  # type: ignore[union-attr]
                    self.counters.failed += 1
                    return response
                if b.tokens_per_second and i:
                    await asyncio.sleep(1 / b.tokens_per_second)
                await response.write(piece)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.counters.streams_cancelled += 1
            raise
        self.counters.completed += 1
        return response

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "mock-model", "object": "model"}]})

    async def control(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            changes = await request.json()
            names = {f.name for f in fields(Behaviour)}
            if request.path.endswith("/reset"):
                name = self.behaviour.name
                self.behaviour, self.counters = Behaviour(name=name), Counters()
                self.received.clear()
            for key, value in changes.items():
                if key not in names:
                    return web.json_response({"error": f"unknown setting {key}"}, status=400)
                setattr(self.behaviour, key, value)
        return web.json_response({"behaviour": asdict(self.behaviour), "counters": asdict(self.counters),
                                  "received": list(self.received)})


def create_simulator_app(behaviour: Behaviour, seed: int | None = None) -> web.Application:
    sim = Simulator(behaviour, seed)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", sim.chat)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_route("*", "/_sim", sim.control)
    app.router.add_post("/_sim/reset", sim.control)
    app["simulator"] = sim
    return app
