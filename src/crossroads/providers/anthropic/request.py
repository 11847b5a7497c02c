"""OpenRouter chat request -> Anthropic Messages request. Pure functions.

System and developer messages become `system` blocks, tool results become `tool_result`
blocks in user turns, consecutive turns of one role are merged (Anthropic requires
alternation), `reasoning` becomes `thinking.budget_tokens` by OpenRouter's effort
formula, and `reasoning_details` sent back on assistant turns become signed thinking
blocks again, so multi-turn tool use with thinking works.
"""

from __future__ import annotations

from typing import Any

from crossroads.providers.reasoning import (
    ANTHROPIC_MAX_BUDGET,
    ANTHROPIC_MIN_BUDGET,
    resolve_reasoning,
)
from crossroads.providers.wire import (
    append_turn,
    hash_user_id,
    parse_tool_arguments,
    split_data_url,
)
from crossroads.schema.catalog import Endpoint

DEFAULT_MAX_TOKENS = 4096
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"


def _source(url: str) -> dict[str, Any]:
    inline = split_data_url(url, "application/octet-stream")
    if inline:
        return {"type": "base64", "media_type": inline[0], "data": inline[1]}
    return {"type": "url", "url": url}


def _block(part: Any) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type")
    block: dict[str, Any] | None = None
    if kind == "text":
        block = {"type": "text", "text": part.get("text", "")}
    elif kind == "image_url":
        block = {"type": "image", "source": _source(part["image_url"]["url"])}
    elif kind == "file":
        file = part.get("file") or {}
        data = file.get("file_data") or ""
        source = _source(data) if data else {"type": "file", "file_id": file.get("file_id")}
        block = {"type": "document", "source": source}
        if file.get("filename"):
            block["title"] = file["filename"]
    if block is not None and part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [b for b in (_block(p) for p in content) if b is not None]


def _thinking_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Signed thinking blocks from `reasoning_details`, exactly as they were received."""
    blocks = []
    for detail in message.get("reasoning_details") or []:
        if detail.get("type") == "reasoning.text" and detail.get("signature"):
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": detail.get("text") or "",
                    "signature": detail["signature"],
                }
            )
        elif detail.get("type") == "reasoning.encrypted" and detail.get("data"):
            blocks.append({"type": "redacted_thinking", "data": detail["data"]})
    return blocks


def _tool_uses(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for call in calls or []:
        fn = call.get("function") or {}
        arguments = parse_tool_arguments(fn.get("arguments"))
        out.append(
            {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": arguments}
        )
    return out


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    append_turn(messages, role, blocks, items_key="content")


def _messages(
    chat_messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for m in chat_messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system += _blocks(m.get("content"))
        elif role == "user":
            _append(messages, "user", _blocks(m.get("content")))
        elif role == "assistant":
            blocks = (
                _thinking_blocks(m) + _blocks(m.get("content")) + _tool_uses(m.get("tool_calls"))
            )
            _append(messages, "assistant", blocks)
        elif role == "tool":
            content = m.get("content")
            result = content if isinstance(content, str) else _blocks(content)
            _append(
                messages,
                "user",
                [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": result}],
            )
    return system, messages


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        fn = tool.get("function")
        if tool.get("type") != "function" or not fn:
            continue
        entry = {
            "name": fn["name"],
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            entry["description"] = fn["description"]
        if tool.get("cache_control"):
            entry["cache_control"] = tool["cache_control"]
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        out: dict[str, Any] = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    elif choice == "auto" or (choice is None and parallel is False):
        out = {"type": "auto"}
    else:
        return None
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _mark_last_block_cacheable(
    messages: list[dict[str, Any]], cache_control: dict[str, Any]
) -> None:
    """Top-level `cache_control`: the breakpoint goes on the last block of the conversation."""
    if messages and messages[-1]["content"]:
        messages[-1]["content"][-1].setdefault("cache_control", cache_control)


def to_anthropic_body(
    body: dict[str, Any], endpoint: Endpoint, *, stream: bool
) -> tuple[dict[str, Any], list[str]]:
    """The Messages API body, and the `anthropic-beta` features it needs."""
    system, messages = _messages(body.get("messages") or [])
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    limit = limit or min(
        endpoint.max_completion_tokens or DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS * 4
    )
    out: dict[str, Any] = {
        "model": endpoint.upstream_model,
        "messages": messages,
        "max_tokens": limit,
    }
    betas: list[str] = []
    if system:
        out["system"] = system
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = min(body[key], 1.0) if key == "temperature" else body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice and (out.get("tools") or choice["type"] == "none"):
        out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": hash_user_id(body["user"])}
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        out["output_format"] = {"type": "json_schema", "schema": schema}
        betas.append(STRUCTURED_OUTPUTS_BETA)
    if isinstance(body.get("cache_control"), dict):
        _mark_last_block_cacheable(messages, body["cache_control"])
    spec = resolve_reasoning(body)
    if spec is not None and spec.enabled:
        budget = max(min(spec.budget(limit), ANTHROPIC_MAX_BUDGET), ANTHROPIC_MIN_BUDGET)
        if budget >= limit:  # max_tokens must stay above the budget
            out["max_tokens"] = limit = budget + limit
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        out.pop("temperature", None)  # thinking runs at Anthropic's fixed sampling
        out.pop("top_k", None)
    if stream:
        out["stream"] = True
    return out, betas
