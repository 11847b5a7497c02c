"""POST /messages: the Anthropic Messages API over every model, for the `anthropic` SDK."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.inference import Dialect, serve_inference
from crossroads.api.messages.request import CLIENT_PATHS, messages_to_chat
from crossroads.api.messages.response import error_body, render_message
from crossroads.api.messages.stream import MessagesEncoder
from crossroads.api.sse import SSEStream

MESSAGES = Dialect(
    to_chat=messages_to_chat,
    render=render_message,
    encoder=MessagesEncoder,
    error_body=error_body,
    x_api_key=True,
    client_paths=CLIENT_PATHS,
)


async def messages(request: Request) -> Response | SSEStream:
    return await serve_inference(request, MESSAGES)
