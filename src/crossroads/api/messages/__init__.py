"""POST /messages: the Anthropic Messages API over every model, for the `anthropic` SDK and its tools."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.inference import Dialect, serve_inference
from crossroads.api.messages.request import messages_to_chat
from crossroads.api.messages.response import error_body, render_message
from crossroads.api.messages.stream import MessagesEncoder

MESSAGES = Dialect(to_chat=messages_to_chat, render=render_message, encoder=MessagesEncoder,
                   error_body=error_body, x_api_key=True)


async def messages(request: Request) -> Response:
    return await serve_inference(request, MESSAGES)
