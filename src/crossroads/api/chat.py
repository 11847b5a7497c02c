"""POST /chat/completions: the request path. Parse, authenticate, route, answer."""

from __future__ import annotations

import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, authenticate, error_response, read_json
from crossroads.api.sse import SSEStream
from crossroads.errors import GatewayError
from crossroads.routing.executor import RequestContext
from crossroads.schema.chat import parse_chat_request


def new_generation_id() -> str:
    return f"gen-{int(time.time())}-{secrets.token_hex(10)}"


def request_context(request: Request, api_key_hash: str | None) -> RequestContext:
    headers = request.headers
    return RequestContext(
        generation_id=new_generation_id(),
        api_key_hash=api_key_hash,
        http_referer=headers.get("http-referer"),
        app_title=headers.get("x-openrouter-title") or headers.get("x-title"),
        user_agent=headers.get("user-agent"),
    )


async def chat_completions(request: Request) -> Response:
    gateway = request.app.state.gateway
    try:
        key = authenticate(request)
        body = await read_json(request, gateway.settings.max_body_bytes)
        chat = parse_chat_request(body)
        ctx = request_context(request, key.hash)
        headers = {"X-Generation-Id": ctx.generation_id}
        if chat.stream:
            stream = gateway.executor.stream(chat, body, ctx)
            return SSEStream(stream.chunks(), headers, gateway.settings.stream_keepalive_seconds)  # type: ignore[return-value]
        try:
            return JSON(await gateway.executor.complete(chat, body, ctx), headers=headers)
        except GatewayError as error:  # routed and failed: the record of the attempts has this id
            error.headers.update(headers)
            raise
    except GatewayError as error:
        return error_response(error)
