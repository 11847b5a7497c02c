"""The one request path of every inference route, whatever its dialect.

A dialect translates its request into OpenRouter's chat request (the internal model),
the router serves it, and the dialect renders the result or encodes the stream. No
dialect translates into another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import (
    JSON,
    fresh_key,
    gateway_of,
    read_json,
    unless_disconnected,
)
from crossroads.api.sse import ChatEncoder, Encoder, SSEStream
from crossroads.errors import GatewayError
from crossroads.ids import RandomIds
from crossroads.routing.context import RequestContext
from crossroads.schema.chat import ChatRequest, parse_chat_request, parse_translated_request
from crossroads.storage.tables import CONTROL_CHARACTERS, column_length, generations


def attribution(value: str | None, *, limit: int) -> str | None:
    """A client-supplied attribution header as stored: UTF-8 where the bytes are (headers
    arrive decoded as Latin-1), without control characters, at most `limit` characters."""
    if value is None:
        return None
    try:
        value = value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass  # not UTF-8: keep the Latin-1 reading
    value = CONTROL_CHARACTERS.sub("", value).strip()[:limit]
    return value or None


def new_generation_id(ids: RandomIds) -> str:
    return f"gen-{int(time.time())}-{ids.hex(10)}"


# what the generations table stores of each attribution header, read once
_TITLE_LENGTH = column_length(generations.c.app_title)
_REFERER_LENGTH = column_length(generations.c.http_referer)
_AGENT_LENGTH = column_length(generations.c.user_agent)


def request_context(request: Request, api_key_hash: str | None) -> RequestContext:
    """Who asks: the attribution headers, bounded to what the generations table stores."""
    headers = request.headers
    title = attribution(headers.get("x-openrouter-title"), limit=_TITLE_LENGTH) or attribution(
        headers.get("x-title"), limit=_TITLE_LENGTH
    )
    return RequestContext(
        generation_id=new_generation_id(gateway_of(request).ids),
        api_key_hash=api_key_hash,
        http_referer=attribution(headers.get("http-referer"), limit=_REFERER_LENGTH),
        app_title=title,
        user_agent=attribution(headers.get("user-agent"), limit=_AGENT_LENGTH),
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
    # (internal chat path pattern, client path) pairs: a translated request's validation
    # error names the client's field; None for dialects whose fields are the chat fields
    client_paths: Sequence[tuple[str, str]] | None = None


CHAT = Dialect(
    to_chat=lambda body: body,
    render=lambda completion, _: completion,
    encoder=lambda ctx, _: ChatEncoder(),
    error_body=GatewayError.envelope,
)


def _parser(dialect: Dialect) -> Callable[[dict[str, Any]], ChatRequest]:
    if dialect.client_paths is None:
        return parse_chat_request
    paths = dialect.client_paths
    return lambda body: parse_translated_request(body, paths)


async def serve_inference(request: Request, dialect: Dialect) -> Response | SSEStream:
    """Serve one inference request; a `GatewayError` is rendered by the app's one handler,
    in this dialect's envelope."""
    request.state.error_body = dialect.error_body
    gateway = request.app.state.gateway
    key = await fresh_key(request, x_api_key=dialect.x_api_key)
    raw = await read_json(request, gateway.settings.max_body_bytes)
    ctx = request_context(request, key.hash)
    service = gateway.inference
    job = await service.prepare(dialect.to_chat(raw), key=key, ctx=ctx, parse=_parser(dialect))
    request.state.ctx = ctx  # read by api/observe.py: upstream time, route, generation id
    headers = {"X-Generation-Id": ctx.generation_id}
    if job.request.stream:
        stream = service.stream(job)
        return SSEStream(
            stream.chunks,
            headers=headers,
            keepalive=gateway.settings.stream_keepalive_seconds,
            encoder=dialect.encoder(ctx, raw),
            error_body=dialect.error_body,
            on_close=stream.settle,  # a stream that never began still settles
        )
    try:  # a client that goes away cancels the upstream call and is not charged
        completion = await unless_disconnected(request, service.complete(job))
    except GatewayError as error:  # routed and failed: the record of the attempts has this id
        error.headers.update(headers)
        raise
    return JSON(dialect.render(completion, raw), headers=headers)
