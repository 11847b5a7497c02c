"""POST /responses: the stateless OpenAI Responses API, for the openai SDK's `responses.create`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.inference import Dialect, serve_inference
from crossroads.api.responses.request import CLIENT_PATHS, responses_to_chat
from crossroads.api.responses.response import error_body, render_response
from crossroads.api.responses.stream import ResponsesEncoder
from crossroads.api.sse import SSEStream

RESPONSES = Dialect(
    to_chat=responses_to_chat,
    render=render_response,
    encoder=ResponsesEncoder,
    error_body=error_body,
    client_paths=CLIENT_PATHS,
)


async def responses(request: Request) -> Response | SSEStream:
    return await serve_inference(request, RESPONSES)
