"""The one request path of every inference route, whatever its dialect.

A dialect translates its request into OpenRouter's chat request (the internal model),
the router serves it, and the dialect renders the result or encodes the stream. No
dialect translates into another.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, authenticate, read_json
from crossroads.api.sse import ChatEncoder, Encoder, SSEStream
from crossroads.errors import GatewayError
from crossroads.routing.context import RequestContext
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


@dataclass(frozen=True)
class Dialect:
    """How one inbound API speaks: request in, response out, stream events, errors."""

    to_chat: Callable[[Any], dict[str, Any]]
    render: Callable[
        [dict[str, Any], dict[str, Any]], dict[str, Any]
    ]  # (completion, original request)
    encoder: Callable[[RequestContext, dict[str, Any]], Encoder]
    error_body: Callable[[GatewayError], dict[str, Any]]
    x_api_key: bool = False  # also accept Anthropic's `x-api-key` header


CHAT = Dialect(
    to_chat=lambda body: body,
    render=lambda completion, _: completion,
    encoder=lambda ctx, _: ChatEncoder(),
    error_body=GatewayError.envelope,
)


async def serve_inference(request: Request, dialect: Dialect) -> Response | SSEStream:
    """Serve one inference request; a `GatewayError` is rendered by the app's one handler,
    in this dialect's envelope."""
    request.state.error_body = dialect.error_body
    gateway = request.app.state.gateway
    key = authenticate(request, x_api_key=dialect.x_api_key)
    raw = await read_json(request, gateway.settings.max_body_bytes)
    body = dialect.to_chat(raw)
    chat = parse_chat_request(body)
    ctx = request_context(request, key.hash)
    headers = {"X-Generation-Id": ctx.generation_id}
    if chat.stream:
        stream = gateway.executor.stream(chat, body, ctx)
        return SSEStream(
            stream.chunks(),
            headers=headers,
            keepalive=gateway.settings.stream_keepalive_seconds,
            encoder=dialect.encoder(ctx, raw),
            error_body=dialect.error_body,
        )
    try:
        completion = await gateway.executor.complete(chat, body, ctx)
    except GatewayError as error:  # routed and failed: the record of the attempts has this id
        error.headers.update(headers)
        raise
    return JSON(dialect.render(completion, raw), headers=headers)
