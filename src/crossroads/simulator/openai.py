"""The simulator's OpenAI-compatible wire format: /v1/chat/completions."""

from __future__ import annotations

import time
from typing import Any

import orjson

from crossroads.simulator.brain import Ask, Reply


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(
        p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"
    )


def ask(body: dict[str, Any]) -> Ask:
    messages = body.get("messages") or []
    users = [m for m in messages if m.get("role") == "user"]
    choice = body.get("tool_choice") or "auto"
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or "auto"
    fmt = body.get("response_format") or {}
    schema = None
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    elif fmt.get("type") == "json_object" and "schema" in fmt:
        schema = fmt["schema"]
    return Ask(
        last_user_text=_text(users[-1].get("content")) if users else "",
        prompt_words=sum(len(_text(m.get("content")).split()) for m in messages),
        messages=len(messages),
        tools=[
            (t["function"]["name"], t["function"].get("parameters") or {})
            for t in body.get("tools") or []
            if t.get("type") == "function"
        ],
        tool_choice=choice,
        parallel_tools=body.get("parallel_tool_calls") is not False,
        max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
        reasoning=bool(body.get("reasoning_effort") and body["reasoning_effort"] != "none"),
        json_schema=schema,
    )


FIRST_OUTPUT = 2  # stream pieces up to and including the first that carries output


def tail(body: dict[str, Any]) -> int:
    """How many pieces at the end of a stream carry its end: finish, usage, `[DONE]`."""
    return 3 if (body.get("stream_options") or {}).get("include_usage") else 2


def _usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        **reply.usage_override,
    }


def _finish(reply: Reply) -> Any:
    return reply.finish if reply.finish_override is None else reply.finish_override


def deepen(payload: dict[str, Any], deep: Any) -> None:
    """Nest `deep` where a provider's own field passes through to the client."""
    payload["choices"][0]["logprobs"] = deep


def deep_event(deep: Any) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": ""}, "logprobs": deep}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
        for i, n, a in reply.calls
    ]


def render(reply: Reply, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if reply.calls else reply.text}
    if reply.calls:
        message["tool_calls"] = _calls(reply)
    if reply.thinking:
        message["reasoning_content"] = reply.thinking
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {"index": 0, "message": message, "finish_reason": _finish(reply), "logprobs": None}
        ],
        "usage": _usage(reply),
    }


def events(reply: Reply, body: dict[str, Any], request_id: str) -> list[bytes]:
    base = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model"),
    }

    def event(delta: dict[str, Any], finish: Any = None) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    out = [event({"role": "assistant", "content": ""})]
    if reply.thinking:
        out.append(event({"reasoning_content": reply.thinking}))
    if reply.calls:
        out += [event({"tool_calls": [{"index": i, **c}]}) for i, c in enumerate(_calls(reply))]
    else:
        out += [event({"content": (" " if i else "") + t}) for i, t in enumerate(reply.tokens)]
    out.append(event({}, _finish(reply)))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append(
            b"data: " + orjson.dumps({**base, "choices": [], "usage": _usage(reply)}) + b"\n\n"
        )
    out.append(b"data: [DONE]\n\n")
    return out


def error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": status}}
