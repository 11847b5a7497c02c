"""A simulated LLM provider, a real HTTP server for tests, demos and benchmarks.

One process answers three wire protocols: OpenAI-compatible `/v1/chat/completions`,
Anthropic `/v1/messages` and Gemini `/v1beta/models/{model}:generateContent` (and
`:streamGenerateContent`), streaming and not. The reply is deterministic (see
`brain.py`). It can be made slow, flaky or broken: latency before the first token, a
token rate, a failure rate with a chosen status, a connection that dies mid-stream.
`/_sim` lets a test change that behaviour at run time and read back what it received.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from types import ModuleType
from typing import Any

import orjson
from aiohttp import web

from crossroads.simulator import anthropic, gemini, openai
from crossroads.simulator.brain import answer


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


class Simulator:
    def __init__(self, behaviour: Behaviour, seed: int | None = None) -> None:
        self.behaviour = behaviour
        self.counters = Counters()
        self.received: deque[dict[str, Any]] = deque(maxlen=200)
        self.rng = random.Random(seed)

    def handler(
        self, protocol: ModuleType, *, streaming: bool | None = None
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.serve(request, protocol, streaming)

        return handle

    async def serve(
        self, request: web.Request, protocol: ModuleType, streaming: bool | None
    ) -> web.StreamResponse:
        b = self.behaviour
        self.counters.requests += 1
        request_id = f"sim-{self.counters.requests}"
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response(protocol.error(400, "invalid JSON"), status=400)
        self.received.append({"body": body, "headers": dict(request.headers), "path": request.path})
        stream = bool(body.get("stream")) if streaming is None else streaming
        if b.latency_ms and not stream:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.fail_rate and self.rng.random() < b.fail_rate:
            self.counters.failed += 1
            headers = {"Retry-After": "1"} if b.status == 429 else None
            return web.Response(
                body=orjson.dumps(protocol.error(b.status, f"{b.name} simulated failure")),
                status=b.status,
                content_type="application/json",
                headers=headers,
            )
        reply = answer(protocol.ask(body), b.name, b.max_reply_tokens)
        if stream:
            return await self._stream(request, protocol.events(reply, body, request_id))
        self.counters.completed += 1
        return web.Response(
            body=orjson.dumps(protocol.render(reply, body, request_id)),
            content_type="application/json",
        )

    async def _stream(self, request: web.Request, pieces: list[bytes]) -> web.StreamResponse:
        b = self.behaviour
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            if b.latency_ms:
                await asyncio.sleep(b.latency_ms / 1000)
            for i, piece in enumerate(pieces):
                if b.die_after_chunks is not None and i >= b.die_after_chunks + 1:
                    if request.transport is not None:
                        request.transport.abort()
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
        return web.json_response(
            {"object": "list", "data": [{"id": "mock-model", "object": "model"}]}
        )

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
        return web.json_response(
            {
                "behaviour": asdict(self.behaviour),
                "counters": asdict(self.counters),
                "received": list(self.received),
            }
        )


def create_simulator_app(behaviour: Behaviour, seed: int | None = None) -> web.Application:
    sim = Simulator(behaviour, seed)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", sim.handler(openai))
    app.router.add_post("/v1/messages", sim.handler(anthropic))
    app.router.add_post(
        "/v1beta/models/{model}:generateContent", sim.handler(gemini, streaming=False)
    )
    app.router.add_post(
        "/v1beta/models/{model}:streamGenerateContent", sim.handler(gemini, streaming=True)
    )
    app.router.add_get("/v1/models", sim.models)
    app.router.add_route("*", "/_sim", sim.control)
    app.router.add_post("/_sim/reset", sim.control)
    app["simulator"] = sim
    return app
