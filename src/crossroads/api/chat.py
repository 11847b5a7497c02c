"""POST /chat/completions: OpenRouter's own dialect, the internal model itself."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.inference import CHAT, serve_inference
from crossroads.api.sse import SSEStream


async def chat_completions(request: Request) -> Response | SSEStream:
    return await serve_inference(request, CHAT)
