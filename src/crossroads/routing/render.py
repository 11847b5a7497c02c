"""OpenRouter's chat completion and chunk bodies, from what the router learned: pure functions."""

from __future__ import annotations

from typing import Any

from crossroads.providers.base import Completion
from crossroads.routing.context import RequestContext
from crossroads.schema.catalog import Endpoint, Provider


def envelope(
    ctx: RequestContext, provider: Provider, endpoint: Endpoint, obj: str
) -> dict[str, Any]:
    """The fields every completion and chunk of one request carries."""
    return {
        "id": ctx.generation_id,
        "provider": provider.name,
        "model": endpoint.model_id,
        "object": obj,
        "created": ctx.created,
    }


def completion_body(
    head: dict[str, Any], completion: Completion, usage: dict[str, Any]
) -> dict[str, Any]:
    """A non-streamed chat completion: `head` (see `envelope`), the choices and the usage."""
    body = dict(head, system_fingerprint=completion.system_fingerprint)
    body.update(choices=completion.choices, usage=usage)
    if completion.service_tier is not None:
        body["service_tier"] = completion.service_tier
    return body


def completion_text(message: dict[str, Any]) -> str:
    """The text a message's completion tokens were spent on, to estimate their count."""
    parts = [
        message.get("content") if isinstance(message.get("content"), str) else "",
        message.get("reasoning") or "",
    ]
    parts += [
        str((c.get("function") or {}).get("arguments") or "")
        for c in message.get("tool_calls") or []
    ]
    return "".join(p for p in parts if p)
