"""The internal chat completion -> an Anthropic Messages response; errors in its envelope.

Every field OpenRouter's `MessagesResult` requires is present, nullable ones as null when
there is nothing to say (`container`, `stop_details`, `citations`, the usage details).
"""

from __future__ import annotations

from typing import Any

from crossroads.api.usage import count, reasoning_tokens
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
    "invalid_prompt": "invalid_request_error",
    "context_length_exceeded": "invalid_request_error",
    "payload_too_large": "invalid_request_error",  # the spec's enum has no request_too_large
    "unprocessable": "invalid_request_error",
}


def stop_reason(finish: str | None, native: str | None) -> str | None:
    if finish is None:
        return None
    if finish == "stop":
        return "stop_sequence" if native == "stop_sequence" else "end_turn"
    return {"length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}.get(
        finish, "end_turn"
    )


def stop_details(reason: str | None) -> dict[str, Any] | None:
    if reason != "refusal":
        return None
    return {"type": "refusal", "category": None, "explanation": None}


def anthropic_usage(chat_usage: dict[str, Any], thinking: str = "") -> dict[str, Any]:
    """Anthropic's usage from the chat usage; `thinking` is the reasoning text returned, for
    an estimate of the thinking tokens when the provider did not count them."""
    details = chat_usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    read, written = count(details.get("cached_tokens")), count(details.get("cache_write_tokens"))
    thinking_tokens = reasoning_tokens(chat_usage, thinking)
    usage: dict[str, Any] = {
        "input_tokens": max(count(chat_usage.get("prompt_tokens")) - read - written, 0),
        "output_tokens": count(chat_usage.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": None,
        "output_tokens_details": {"thinking_tokens": thinking_tokens} if thinking_tokens else None,
        "server_tool_use": None,
        "service_tier": None,
        "inference_geo": None,
    }
    for key in ("cost", "is_byok", "cost_details"):  # OpenRouter's additions
        if chat_usage.get(key) is not None:
            usage[key] = chat_usage[key]
    return usage


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


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "citations": None}


def tool_use_block(call_id: Any, name: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": str(call_id or ""),
        "name": str(name or ""),
        "input": arguments,
        "caller": {"type": "direct"},  # a tool_use block the model asked for itself
    }


def render_message(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    choice = completion["choices"][0] if completion["choices"] else {"message": {}}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = thinking_blocks(message.get("reasoning_details") or [])
    if not content and message.get("reasoning"):
        content.append({"type": "thinking", "thinking": message["reasoning"], "signature": ""})
    thinking = "".join(b["thinking"] for b in content if b["type"] == "thinking")
    if message.get("content"):
        content.append(text_block(message["content"]))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        arguments = parse_tool_arguments(fn.get("arguments"))
        content.append(tool_use_block(call.get("id"), fn.get("name"), arguments))
    reason = stop_reason(choice.get("finish_reason"), choice.get("native_finish_reason"))
    return {
        "id": completion["id"],
        "type": "message",
        "role": "assistant",
        "container": None,
        "model": completion["model"],
        "content": content,
        "stop_reason": reason,
        "stop_details": stop_details(reason),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage") or {}, thinking),
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
        "request_id": error.headers.get("X-Generation-Id"),
    }
