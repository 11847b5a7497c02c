"""The simulator's Anthropic Messages wire format: /v1/messages."""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.simulator.brain import Ask, Reply

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(
        b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"
    )


def _has_cache_marks(body: dict[str, Any]) -> bool:
    blocks = [
        b
        for m in body.get("messages") or []
        if isinstance(m.get("content"), list)
        for b in m["content"]
    ]
    system: list[Any] = body["system"] if isinstance(body.get("system"), list) else []
    return any(isinstance(b, dict) and b.get("cache_control") for b in blocks + system)


def ask(body: dict[str, Any]) -> Ask:
    messages = body.get("messages") or []
    users = [m for m in messages if m.get("role") == "user" and _text(m.get("content"))]
    choice = body.get("tool_choice") or {"type": "auto"}
    names = {"auto": "auto", "any": "required", "none": "none"}
    fmt = body.get("output_format") or {}
    return Ask(
        last_user_text=_text(users[-1].get("content")) if users else "",
        prompt_words=sum(len(_text(m.get("content")).split()) for m in messages)
        + len(_text(body.get("system")).split()),
        messages=len(messages) + (1 if body.get("system") else 0),
        tools=[(t["name"], t.get("input_schema") or {}) for t in body.get("tools") or []],
        tool_choice=names.get(str(choice.get("type")), str(choice.get("name") or "auto")),
        parallel_tools=not choice.get("disable_parallel_tool_use"),
        max_tokens=body.get("max_tokens"),
        reasoning=(body.get("thinking") or {}).get("type") == "enabled",
        cache_marks=_has_cache_marks(body),
        json_schema=fmt.get("schema") if fmt.get("type") == "json_schema" else None,
    )


FIRST_OUTPUT = 4  # message_start, ping, content_block_start, the first delta


def tail(body: dict[str, Any]) -> int:
    """How many pieces at the end of a stream carry its end."""
    return 3  # content_block_stop, message_delta, message_stop


def _usage(reply: Reply, *, output: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens - reply.cached_tokens,
        "output_tokens": reply.completion_tokens if output is None else output,
        "cache_read_input_tokens": reply.cached_tokens,
        "cache_creation_input_tokens": 0,
        **reply.usage_override,
    }


def _stop(reply: Reply) -> Any:
    return _STOP[reply.finish] if reply.finish_override is None else reply.finish_override


def deepen(payload: dict[str, Any], deep: Any) -> None:
    payload["content"][-1]["citations"] = deep


def deep_event(deep: Any) -> bytes:
    delta = {"type": "text_delta", "text": "", "citations": deep}
    return _event("content_block_delta", {"index": 0, "delta": delta})


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking:
        blocks.append(
            {"type": "thinking", "thinking": reply.thinking, "signature": reply.signature}
        )
    if reply.calls:
        blocks += [
            {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": orjson.loads(a)}
            for i, n, a in reply.calls
        ]
    else:
        blocks.append({"type": "text", "text": reply.text})
    return blocks


def render(reply: Reply, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": _blocks(reply),
        "stop_reason": _stop(reply),
        "stop_sequence": None,
        "usage": _usage(reply),
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def events(reply: Reply, body: dict[str, Any], request_id: str) -> list[bytes]:
    start = render(reply, body, request_id)
    start.update(content=[], stop_reason=None, usage=_usage(reply, output=1))
    out = [_event("message_start", {"message": start}), _event("ping", {})]
    for index, block in enumerate(_blocks(reply)):
        if block["type"] == "thinking":
            out.append(
                _event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "thinking", "thinking": ""}},
                )
            )
            out.append(
                _event(
                    "content_block_delta",
                    {
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                    },
                )
            )
            out.append(
                _event(
                    "content_block_delta",
                    {
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block["signature"]},
                    },
                )
            )
        elif block["type"] == "tool_use":
            out.append(
                _event(
                    "content_block_start", {"index": index, "content_block": {**block, "input": {}}}
                )
            )
            arguments = orjson.dumps(block["input"]).decode()
            for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                out.append(
                    _event(
                        "content_block_delta",
                        {
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
        else:
            out.append(
                _event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            for i, token in enumerate(reply.tokens):
                out.append(
                    _event(
                        "content_block_delta",
                        {
                            "index": index,
                            "delta": {"type": "text_delta", "text": (" " if i else "") + token},
                        },
                    )
                )
        out.append(_event("content_block_stop", {"index": index}))
    out.append(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": _stop(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.completion_tokens, **reply.usage_override},
            },
        )
    )
    out.append(_event("message_stop", {}))
    return out


def error(status: int, message: str) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(
        status, "api_error"
    )
    return {"type": "error", "error": {"type": kind, "message": message}}
