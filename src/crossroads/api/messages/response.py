"""The internal chat completion -> an Anthropic Messages response; errors in its envelope."""

from __future__ import annotations

from typing import Any

from crossroads.errors import GatewayError
from crossroads.providers.wire import parse_tool_arguments

_ERROR_TYPES = {
    "authentication": "authentication_error",
    "permission_denied": "permission_error",
    "payment_required": "billing_error",
    "not_found": "not_found_error",
    "rate_limit_exceeded": "rate_limit_error",
    "provider_overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "invalid_request": "invalid_request_error",
    "context_length_exceeded": "invalid_request_error",
    "payload_too_large": "request_too_large",
}


def stop_reason(finish: str | None, native: str | None) -> str | None:
    if finish is None:
        return None
    if finish == "stop":
        return "stop_sequence" if native == "stop_sequence" else "end_turn"
    return {"length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}.get(
        finish, "end_turn"
    )


def anthropic_usage(chat_usage: dict[str, Any]) -> dict[str, Any]:
    details = chat_usage.get("prompt_tokens_details") or {}
    read, written = (
        int(details.get("cached_tokens") or 0),
        int(details.get("cache_write_tokens") or 0),
    )
    return {
        "input_tokens": int(chat_usage.get("prompt_tokens") or 0) - read - written,
        "output_tokens": int(chat_usage.get("completion_tokens") or 0),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def thinking_blocks(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    blocks = []
    for d in details:
        if d.get("type") == "reasoning.text":
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": d.get("text") or "",
                    "signature": d.get("signature") or "",
                }
            )
        elif d.get("type") == "reasoning.encrypted":
            blocks.append({"type": "redacted_thinking", "data": d.get("data") or ""})
    return blocks


def render_message(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    choice = completion["choices"][0] if completion["choices"] else {"message": {}}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = thinking_blocks(message.get("reasoning_details") or [])
    if not content and message.get("reasoning"):
        content.append({"type": "thinking", "thinking": message["reasoning"], "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        arguments = parse_tool_arguments(fn.get("arguments"))
        content.append(
            {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": arguments}
        )
    return {
        "id": completion["id"],
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), choice.get("native_finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage") or {}),
        "provider": completion.get("provider"),
    }


def error_body(error: GatewayError) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(error.error_type, "api_error")
    return {
        "type": "error",
        "error": {
            "type": kind,
            "message": error.message,
            "error_type": error.error_type,
            "metadata": error.metadata,
        },
        "request_id": None,
    }
