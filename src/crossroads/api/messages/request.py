"""Anthropic Messages request -> OpenRouter chat request (the internal model)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from msgspec import Meta, Struct

from crossroads.errors import GatewayError
from crossroads.schema.chat import validated

# OpenRouter's extras on /messages, passed through untouched
_EXTRAS = ("models", "provider", "plugins", "route", "session_id", "trace", "user", "cache_control")


class _Message(Struct):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _Fallback(Struct, forbid_unknown_fields=True):
    model: str


class MessagesRequest(Struct):
    model: str
    max_tokens: Annotated[int, Meta(ge=1)]
    messages: Annotated[list[_Message], Meta(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    fallbacks: Annotated[list[_Fallback], Meta(max_length=3)] | None = None
    stream: bool = False


def _url(source: dict[str, Any]) -> str:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    return source.get("url") or ""


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    part: dict[str, Any] | None = None
    if kind == "text":
        part = {"type": "text", "text": block.get("text", "")}
    elif kind == "image":
        part = {"type": "image_url", "image_url": {"url": _url(block.get("source") or {})}}
    elif kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            part = {"type": "text", "text": source.get("data", "")}
        else:
            part = {
                "type": "file",
                "file": {
                    "filename": block.get("title") or "document.pdf",
                    "file_data": _url(source),
                },
            }
    if part is not None and block.get("cache_control"):
        part["cache_control"] = block["cache_control"]
    return part


def _parts(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [p for p in (_part(b) for b in content) if p is not None]


def _user_turn(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user turn: its tool results become tool messages, the rest one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    rest = [b for b in content if b.get("type") != "tool_result"]
    for block in content:
        if block.get("type") == "tool_result":
            result = block.get("content")
            text = (
                result
                if isinstance(result, str)
                else [p for p in (_part(b) for b in result or []) if p]
            )
            if block.get("is_error") and isinstance(text, str):
                text = f"Error: {text}"
            out.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text or ""}
            )
    if rest:
        out.append({"role": "user", "content": _parts(rest)})
    return out


def _assistant_turn(content: str | list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    text, calls, details = [], [], []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind == "thinking":
            details.append(
                {
                    "type": "reasoning.text",
                    "text": block.get("thinking", ""),
                    "signature": block.get("signature"),
                    "format": "anthropic-claude-v1",
                }
            )
        elif kind == "redacted_thinking":
            details.append(
                {
                    "type": "reasoning.encrypted",
                    "data": block.get("data", ""),
                    "format": "anthropic-claude-v1",
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    if details:
        message["reasoning_details"] = details
    return message


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool | None]:
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    return {"any": "required", "none": "none"}.get(str(kind), "auto"), parallel


def messages_to_chat(raw: Any) -> dict[str, Any]:
    request = validated(raw, MessagesRequest)
    if request.fallbacks and raw.get("models"):
        raise GatewayError(400, "Use either 'fallbacks' or 'models', not both")
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": _parts(request.system)})
    for m in raw["messages"]:
        if m["role"] == "user":
            messages += _user_turn(m["content"])
        else:
            messages.append(_assistant_turn(m["content"]))
    chat: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": request.stream,
    }
    chat.update({k: raw[k] for k in _EXTRAS if raw.get(k) is not None})
    if request.fallbacks:
        chat["models"] = [f.model for f in request.fallbacks]
    for key in ("temperature", "top_p", "top_k"):
        if raw.get(key) is not None:
            chat[key] = raw[key]
    if raw.get("stop_sequences"):
        chat["stop"] = raw["stop_sequences"]
    if (raw.get("metadata") or {}).get("user_id"):
        chat.setdefault("user", raw["metadata"]["user_id"])
    thinking = raw.get("thinking") or {}
    if thinking.get("type") == "enabled":
        chat["reasoning"] = {"max_tokens": thinking.get("budget_tokens")}
    elif thinking.get("type") == "disabled":
        chat["reasoning"] = {"enabled": False}
    output_format = raw.get("output_format") or {}
    if output_format.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output_format.get("schema")},
        }
    if raw.get("tools"):
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description"),
                    "parameters": t.get("input_schema"),
                },
            }
            for t in raw["tools"]
            if "name" in t
        ]
    if raw.get("tool_choice"):
        chat["tool_choice"], parallel = _tool_choice(raw["tool_choice"])
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel
    return chat
