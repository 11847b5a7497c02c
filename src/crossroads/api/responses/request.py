"""OpenAI Responses request (stateless) -> OpenRouter chat request (the internal model)."""

from __future__ import annotations

from typing import Any

from crossroads.errors import GatewayError

_EXTRAS = (
    "models",
    "provider",
    "plugins",
    "session_id",
    "trace",
    "prompt_cache_key",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "top_k",
    "top_logprobs",
    "service_tier",
    "stream",
)


def _part(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image" and part.get("image_url"):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data") or part.get("file_url")
        return (
            {"type": "file", "file": {"filename": part.get("filename"), "file_data": data}}
            if data
            else None
        )
    return None


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    return [p for p in (_part(x) for x in content or []) if p is not None]


def _assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message to extend: the last one, unless a newer turn came after it."""
    if messages and messages[-1]["role"] == "assistant":
        return messages[-1]
    messages.append({"role": "assistant", "content": None})
    return messages[-1]


def _items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role == "assistant":
                content = item.get("content")
                text = (
                    content
                    if isinstance(content, str)
                    else "".join(
                        p.get("text", "")
                        for p in content or []
                        if p.get("type") in ("output_text", "text")
                    )
                )
                target = _assistant(messages)
                target["content"] = (target.get("content") or "") + text
            elif role in ("user", "system", "developer"):
                messages.append({"role": role, "content": _content(item.get("content"))})
            else:
                raise GatewayError(400, f"Unknown message role {role!r} in input")
        elif kind == "function_call":
            _assistant(messages).setdefault("tool_calls", []).append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {
                        "name": item.get("name"),
                        "arguments": item.get("arguments") or "{}",
                    },
                }
            )
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else _content(output),
                }
            )
        elif kind == "reasoning":
            details = [
                {
                    "type": "reasoning.summary",
                    "summary": s.get("text", ""),
                    "format": "openai-responses-v1",
                }
                for s in item.get("summary") or []
            ]
            if item.get("encrypted_content"):
                details.append(
                    {
                        "type": "reasoning.encrypted",
                        "data": item["encrypted_content"],
                        "format": "openai-responses-v1",
                    }
                )
            _assistant(messages).setdefault("reasoning_details", []).extend(details)
        else:
            raise GatewayError(400, f"Input items of type {kind!r} are not supported")
    return messages


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def responses_to_chat(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise GatewayError(400, "Request body must be a JSON object")
    if raw.get("store") is True:
        raise GatewayError(400, "'store' must be false: this Responses API is stateless")
    if raw.get("previous_response_id"):
        raise GatewayError(
            400, "'previous_response_id' is not supported: send the whole conversation in 'input'"
        )
    source = raw.get("input")
    if source is None or (not isinstance(source, str) and not isinstance(source, list)):
        raise GatewayError(400, "'input' is required: a string or a list of items")
    messages = [{"role": "user", "content": source}] if isinstance(source, str) else _items(source)
    if raw.get("instructions"):
        messages.insert(0, {"role": "system", "content": raw["instructions"]})
    chat: dict[str, Any] = {"model": raw.get("model"), "messages": messages}
    chat.update({k: raw[k] for k in _EXTRAS if raw.get(k) is not None})
    if raw.get("max_output_tokens") is not None:
        chat["max_tokens"] = raw["max_output_tokens"]
    if raw.get("safety_identifier") or raw.get("user"):
        chat["user"] = raw.get("safety_identifier") or raw.get("user")
    if raw.get("reasoning"):
        chat["reasoning"] = {
            k: v
            for k, v in raw["reasoning"].items()
            if k in ("effort", "max_tokens", "exclude", "enabled", "summary")
        }
    fmt = (raw.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": fmt.get("name") or "output",
                "schema": fmt.get("schema"),
                "strict": fmt.get("strict"),
            },
        }
    elif fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    tools = [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description"),
                "parameters": t.get("parameters"),
                "strict": t.get("strict"),
            },
        }
        for t in raw.get("tools") or []
        if t.get("type") == "function" and t.get("name")
    ]
    if tools:
        chat["tools"] = tools
    if raw.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(raw["tool_choice"])
    return chat
