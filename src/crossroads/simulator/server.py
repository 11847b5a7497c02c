"""A simulated LLM provider, a real HTTP server for tests, demos and benchmarks.

One process answers three wire protocols: OpenAI-compatible `/v1/chat/completions`,
Anthropic `/v1/messages` and Gemini `/v1beta/models/{model}:generateContent` (and
`:streamGenerateContent`), streaming and not. The reply is deterministic (see
`brain.py`). It can be made slow, flaky or broken: latency before the headers or the
first byte, a token rate, a failure rate with a chosen status (and `Retry-After`, and an
error that echoes the caller's credentials), a connection that dies mid-stream, wrong
types or absurd counts in the usage, and the faults of `faults.py` (bad JSON, bad bytes,
oversized or deep bodies, streams that stall, never end or end early).
`/_sim` lets a test change that behaviour at run time and read back what it received.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from types import ModuleType
from typing import Any

import orjson
from aiohttp import web

from crossroads.simulator import anthropic, gemini, openai
from crossroads.simulator.brain import answer
from crossroads.simulator.faults import FAULTS, broken_body, stream_plan

_CREDENTIAL_HEADERS = ("Authorization", "x-api-key", "x-goog-api-key", "Api-Key")


@dataclass
class Behaviour:
    name: str = "simulator"
    latency_ms: float = 0.0
    tokens_per_second: float = 0.0  # 0: as fast as possible
    fail_rate: float = 0.0
    status: int = 500
    die_after_chunks: int | None = None
    max_reply_tokens: int = 16
    reply: str | None = None  # the answer's text, verbatim, in place of the usual one
    flag_words: list[str] = field(default_factory=lambda: ["forbidden"])  # for /moderations
    search_padding: int = 0  # characters added to each search result's content
    retry_after: str | None = None  # Retry-After of failures (429s send "1" when unset)
    echo_credentials: bool = False  # failures repeat the credentials the request carried
    headers_delay_ms: float = 0.0  # before the status line and headers
    first_byte_delay_ms: float = 0.0  # after the headers, before the body's first byte
    fault: str | None = None  # one of faults.FAULTS
    fault_after_output: bool = False  # streams: the fault comes after the first output
    depth: int = 300  # nesting of the "deep" fault
    usage: dict[str, Any] | None = None  # merged into the usage the protocol reports
    finish_reason: Any = None  # sent in place of the real finish reason (any JSON value)
    give_up_seconds: float = 120.0  # a stalled or endless answer ends then, client or not


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
        if b.headers_delay_ms:
            await asyncio.sleep(b.headers_delay_ms / 1000)
        if b.latency_ms and not stream:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.fail_rate and self.rng.random() < b.fail_rate:
            return self._failure(request, protocol)
        reply = answer(protocol.ask(body), b.name, b.max_reply_tokens, text=b.reply)
        reply.usage_override = dict(b.usage or {})
        reply.finish_override = b.finish_reason
        if stream:
            pieces, then = stream_plan(
                protocol.events(reply, body, request_id),
                b.fault,
                protocol,
                body,
                at=protocol.FIRST_OUTPUT if b.fault_after_output else 0,
                depth=b.depth,
            )
            filler = protocol.events(reply, body, request_id)[protocol.FIRST_OUTPUT - 1]
            return await self._stream(request, pieces, then, filler)
        payload = protocol.render(reply, body, request_id)
        if b.fault is None and not b.first_byte_delay_ms:
            self.counters.completed += 1
            return web.Response(body=orjson.dumps(payload), content_type="application/json")
        if b.fault is not None and b.fault not in FAULTS:
            return web.json_response({"error": f"unknown fault {b.fault}"}, status=400)
        return await self._send(request, broken_body(b.fault or "", payload, protocol, b.depth))

    def _failure(self, request: web.Request, protocol: ModuleType) -> web.Response:
        b = self.behaviour
        self.counters.failed += 1
        message = f"{b.name} simulated failure"
        error = protocol.error(b.status, message)
        if b.echo_credentials:
            sent = {k: request.headers[k] for k in _CREDENTIAL_HEADERS if k in request.headers}
            shown = "; ".join(f"{k}: {v}" for k, v in sent.items())
            error = protocol.error(b.status, f"{message}: invalid credentials ({shown})")
            error["request"] = {
                "headers": sent,
                "url": f"{request.path}?key={sent.get('x-goog-api-key', '')}",
            }
        retry_after = b.retry_after or ("1" if b.status == 429 else None)
        return web.Response(
            body=orjson.dumps(error),
            status=b.status,
            content_type="application/json",
            headers={"Retry-After": retry_after} if retry_after else None,
        )

    async def _send(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """A non-streamed answer, sent the way the behaviour says: late, stalled, endless, short."""
        b = self.behaviour
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if b.fault != "endless":
            response.content_length = len(body)
        await response.prepare(request)
        try:
            if b.first_byte_delay_ms:
                await asyncio.sleep(b.first_byte_delay_ms / 1000)
            if b.fault in ("stall", "cut"):
                await response.write(body[: len(body) // 2])
                if b.fault == "cut":  # a clean close, short of the declared length
                    if request.transport is not None:
                        request.transport.close()
                    return response
                await self._hold(request)
            elif b.fault == "endless":
                await response.write(body[:-1])
                await self._forever(response, b" " * 4096)
            else:
                await response.write(body)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.counters.streams_cancelled += 1
            raise
        self.counters.completed += 1
        return response

    async def _forever(
        self, response: web.StreamResponse, piece: bytes, *, every: float = 0.005
    ) -> None:
        """Send `piece` again and again until the client leaves (or the safety limit)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.behaviour.give_up_seconds
        while loop.time() < deadline:
            await response.write(piece)
            await asyncio.sleep(every)

    async def _hold(self, request: web.Request) -> None:
        """Keep the connection open, silent, until the client leaves (or the safety limit)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.behaviour.give_up_seconds
        while loop.time() < deadline:
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client left")
            await asyncio.sleep(0.05)

    async def _stream(
        self, request: web.Request, pieces: list[bytes], then: str | None, filler: bytes
    ) -> web.StreamResponse:
        b = self.behaviour
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            if b.latency_ms or b.first_byte_delay_ms:
                await asyncio.sleep((b.latency_ms + b.first_byte_delay_ms) / 1000)
            for i, piece in enumerate(pieces):
                if b.die_after_chunks is not None and i >= b.die_after_chunks + 1:
                    await asyncio.sleep(0.05)  # what was sent reaches the client before the reset
                    if request.transport is not None:
                        request.transport.abort()
                    self.counters.failed += 1
                    return response
                if b.tokens_per_second and i:
                    await asyncio.sleep(1 / b.tokens_per_second)
                await response.write(piece)
            if then == "stall":
                await self._forever(response, b": still here\n\n", every=0.1)
            elif then == "endless":
                await self._forever(response, filler)
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

    async def moderations(self, request: web.Request) -> web.Response:
        """OpenAI's moderation endpoint: a text is flagged ("harassment") when it holds one
        of `flag_words`; failures and latency as for completions."""
        b = self.behaviour
        self.counters.requests += 1
        body = orjson.loads(await request.read())
        self.received.append({"body": body, "headers": dict(request.headers), "path": request.path})
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.fail_rate and self.rng.random() < b.fail_rate:
            return web.json_response({"error": {"message": "simulated failure"}}, status=b.status)
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        results = []
        for text in texts:
            hit = any(word in str(text).lower() for word in b.flag_words)
            results.append(
                {
                    "flagged": hit,
                    "categories": {"harassment": hit, "violence": False},
                    "category_scores": {"harassment": 0.97 if hit else 0.01, "violence": 0.0},
                }
            )
        model = body.get("model") or "omni-moderation-latest"
        return web.json_response({"id": "modr-sim", "model": model, "results": results})

    async def search(self, request: web.Request) -> web.Response:
        """Web search engines' APIs, with made-up deterministic results for the query:
        SearXNG (`GET /search?q=&format=json`), Tavily (`POST /search`, `{query,
        max_results}`) and Brave (`GET /res/v1/web/search?q=&count=`)."""
        b = self.behaviour
        self.counters.requests += 1
        body = orjson.loads(await request.read()) if request.method == "POST" else {}
        query = str(body.get("query") or request.query.get("q") or "")
        self.received.append(
            {
                "body": body,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "path": request.path,
            }
        )
        if b.fail_rate and self.rng.random() < b.fail_rate:
            return web.json_response({"error": "simulated failure"}, status=b.status)
        count = int(body.get("max_results") or request.query.get("count") or 10)
        slug = "-".join(query.lower().split())[:40] or "empty"
        rows = [
            {
                "url": f"https://example.com/{slug}/{n}",
                "title": f"Result {n} for {query}",
                "content": f"About {query}: fact number {n}." + "." * b.search_padding,
            }
            for n in range(1, count + 1)
        ]
        if request.path.startswith("/res/"):  # Brave's shape
            rows = [
                {"url": r["url"], "title": r["title"], "description": r["content"]} for r in rows
            ]
            return web.json_response({"web": {"results": rows}})
        return web.json_response({"query": query, "results": rows})

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
    app.router.add_post("/v1/moderations", sim.moderations)
    app.router.add_get("/search", sim.search)
    app.router.add_post("/search", sim.search)
    app.router.add_get("/res/v1/web/search", sim.search)
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
