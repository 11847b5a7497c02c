"""The simulator's Google Gemini wire format: /v1beta/models/{model}:generateContent and
:streamGenerateContent."""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.simulator.brain import Ask, Reply

_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


def _text(content: dict[str, Any] | None) -> str:
    return " ".join(p.get("text", "") for p in (content or {}).get("parts") or [] if "text" in p)


def ask(body: dict[str, Any]) -> Ask:
    contents = body.get("contents") or []
    users = [c for c in contents if c.get("role", "user") == "user" and _text(c)]
    config = body.get("generationConfig") or {}
    declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = calling.get("mode", "AUTO")
    choice = {"AUTO": "auto", "NONE": "none", "ANY": "required"}.get(mode, "auto")
    if mode == "ANY" and calling.get("allowedFunctionNames"):
        choice = calling["allowedFunctionNames"][0]
    thinking = config.get("thinkingConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    return Ask(
        last_user_text=_text(users[-1]) if users else "",
        prompt_words=sum(len(_text(c).split()) for c in contents)
        + len(_text(body.get("systemInstruction")).split()),
        messages=len(contents) + (1 if body.get("systemInstruction") else 0),
        tools=[
            (d["name"], d.get("parameters") or d.get("parametersJsonSchema") or {})
            for d in declarations
        ],
        tool_choice=choice,
        max_tokens=config.get("maxOutputTokens"),
        reasoning=bool(thinking.get("includeThoughts")) and thinking.get("thinkingBudget") != 0,
        json_schema=schema if config.get("responseMimeType") == "application/json" else None,
    )


FIRST_OUTPUT = 1  # every chunk carries output


def tail(body: dict[str, Any]) -> int:
    """How many pieces at the end of a stream carry its end: the chunk with finishReason."""
    return 1


def _usage(reply: Reply) -> dict[str, Any]:
    thoughts = len((reply.thinking or "").split())
    return {
        "promptTokenCount": reply.prompt_tokens,
        "candidatesTokenCount": reply.completion_tokens - thoughts,
        "thoughtsTokenCount": thoughts,
        "cachedContentTokenCount": reply.cached_tokens,
        "totalTokenCount": reply.prompt_tokens + reply.completion_tokens,
        **reply.usage_override,
    }


def _finish(reply: Reply) -> Any:
    return _FINISH[reply.finish] if reply.finish_override is None else reply.finish_override


def deepen(payload: dict[str, Any], deep: Any) -> None:
    payload["candidates"][0]["citationMetadata"] = deep


def deep_event(deep: Any) -> bytes:
    candidate = {"content": {"role": "model", "parts": [{"text": ""}]}, "citationMetadata": deep}
    return b"data: " + orjson.dumps({"candidates": [candidate]}) + b"\r\n\r\n"


def _parts(reply: Reply) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if reply.thinking:
        parts.append({"text": reply.thinking, "thought": True, "thoughtSignature": reply.signature})
    if reply.calls:
        parts += [{"functionCall": {"name": n, "args": orjson.loads(a)}} for _, n, a in reply.calls]
    else:
        parts.append({"text": reply.text})
    return parts


def render(reply: Reply, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": _parts(reply)},
                "finishReason": _finish(reply),
                "index": 0,
            }
        ],
        "usageMetadata": _usage(reply),
        "modelVersion": "simulated",
        "responseId": request_id,
    }


def events(reply: Reply, body: dict[str, Any], request_id: str) -> list[bytes]:
    def event(parts: list[dict[str, Any]], last: bool = False) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        chunk: dict[str, Any] = {"candidates": [candidate], "responseId": request_id}
        if last:
            candidate["finishReason"] = _finish(reply)
            chunk["usageMetadata"] = _usage(reply)
        return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"

    parts = _parts(reply)
    if reply.calls:
        return [event(parts, last=True)]
    text_parts = [{"text": (" " if i else "") + t} for i, t in enumerate(reply.tokens)]
    leading = [event([parts[0]])] if reply.thinking else []
    return leading + [event([p]) for p in text_parts[:-1]] + [event(text_parts[-1:], last=True)]


def error(status: int, message: str) -> dict[str, Any]:
    state = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}.get(
        status, "INTERNAL"
    )
    return {"error": {"code": status, "message": message, "status": state}}
