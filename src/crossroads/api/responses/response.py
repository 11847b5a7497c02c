"""The internal chat completion -> an OpenAI Responses `response` object."""

from __future__ import annotations

from typing import Any

from crossroads.errors import GatewayError


def responses_usage(chat_usage: dict[str, Any]) -> dict[str, Any]:
    prompt = chat_usage.get("prompt_tokens_details") or {}
    completion = chat_usage.get("completion_tokens_details") or {}
    input_tokens = int(chat_usage.get("prompt_tokens") or 0)
    output_tokens = int(chat_usage.get("completion_tokens") or 0)
    out: dict[str, Any] = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": int(prompt.get("cached_tokens") or 0)},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": int(completion.get("reasoning_tokens") or 0)},
        "total_tokens": input_tokens + output_tokens,
    }
    if chat_usage.get("cost") is not None:
        out["cost"] = chat_usage["cost"]
    return out


def skeleton(
    response_id: str, created: int, model: str | None, request: dict[str, Any]
) -> dict[str, Any]:
    """The fields every Responses object carries, echoing the request's settings."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "model": model,
        "status": "in_progress",
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "store": False,
        "text": request.get("text") or {"format": {"type": "text"}},
        "reasoning": request.get("reasoning"),
        "usage": None,
    }


def finish(response: dict[str, Any], finish_reason: str | None) -> None:
    if finish_reason == "length":
        response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    elif finish_reason == "content_filter":
        response.update(status="incomplete", incomplete_details={"reason": "content_filter"})
    else:
        response["status"] = "completed"


def reasoning_item(item_id: str, text: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}] if text else [],
    }
    summaries = [
        d.get("summary")
        for d in details
        if d.get("type") == "reasoning.summary" and d.get("summary")
    ]
    item["summary"] = [{"type": "summary_text", "text": s} for s in summaries]
    encrypted = [d.get("data") for d in details if d.get("type") == "reasoning.encrypted"]
    if encrypted:
        item["encrypted_content"] = encrypted[0]
    return item


def message_item(item_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def call_item(item_id: str, call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.get("id"),
        "name": fn.get("name"),
        "arguments": fn.get("arguments") or "",
        "status": "completed",
    }


def render_response(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    response = skeleton(completion["id"], completion["created"], completion["model"], request)
    choice = completion["choices"][0] if completion["choices"] else {"message": {}}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("reasoning") or message.get("reasoning_details"):
        output.append(
            reasoning_item(
                f"rs_{completion['id']}",
                message.get("reasoning") or "",
                message.get("reasoning_details") or [],
            )
        )
    if message.get("content"):
        output.append(message_item(f"msg_{completion['id']}", message["content"]))
    output += [
        call_item(f"fc_{completion['id']}_{i}", c)
        for i, c in enumerate(message.get("tool_calls") or [])
    ]
    response.update(
        output=output,
        usage=responses_usage(completion.get("usage") or {}),
        provider=completion.get("provider"),
    )
    finish(response, choice.get("finish_reason"))
    return response


def error_body(error: GatewayError) -> dict[str, Any]:
    return error.envelope()
