"""POST /completions: legacy text completions, served as a one-message chat by the same router."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.inference import Dialect, serve_inference
from crossroads.api.sse import ChatEncoder, SSEStream, data_event
from crossroads.errors import GatewayError
from crossroads.routing.context import RequestContext

_UNSUPPORTED = {"suffix": None, "echo": False, "best_of": 1, "n": 1}


def completions_to_chat(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise GatewayError(400, "Request body must be a JSON object")
    prompt = raw.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise GatewayError(
            400, "'prompt' must be a string (token arrays and several prompts are not supported)"
        )
    for key, neutral in _UNSUPPORTED.items():
        if raw.get(key) not in (None, neutral):
            raise GatewayError(400, f"'{key}' is not supported by this completions endpoint")
    chat = {k: v for k, v in raw.items() if k not in ("prompt", *_UNSUPPORTED)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def _choice(choice: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "text": text,
        "index": choice.get("index", 0),
        "logprobs": None,
        "finish_reason": choice.get("finish_reason"),
        "native_finish_reason": choice.get("native_finish_reason"),
    }


def render_completion(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    choices = [
        _choice(c, (c.get("message") or {}).get("content") or "") for c in completion["choices"]
    ]
    return {**completion, "object": "text_completion", "choices": choices}


class CompletionsEncoder(ChatEncoder):
    def event(self, chunk: dict[str, Any]) -> bytes:
        self.last = chunk
        choices = [
            _choice(c, (c.get("delta") or {}).get("content") or "")
            for c in chunk.get("choices") or []
        ]
        return data_event({**chunk, "object": "text_completion", "choices": choices})


def _encoder(ctx: RequestContext, request: dict[str, Any]) -> CompletionsEncoder:
    return CompletionsEncoder()


COMPLETIONS = Dialect(
    to_chat=completions_to_chat,
    render=render_completion,
    encoder=_encoder,
    error_body=GatewayError.envelope,
)


async def completions(request: Request) -> Response | SSEStream:
    return await serve_inference(request, COMPLETIONS)
