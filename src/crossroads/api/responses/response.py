"""The internal chat completion -> an OpenAI Responses `response` object.

Every field OpenRouter's `OpenResponsesResult` requires is present, echoing the request's
settings (`presence_penalty`, `parallel_tool_calls`, ...) or null when there is nothing to
say. When the request asks for `reasoning.summary`, the reasoning item's `summary` carries
the reasoning text (the model's own words: no separate summariser runs here).
"""

from __future__ import annotations

import time
from typing import Any

from crossroads.api.usage import count, reasoning_tokens
from crossroads.errors import GatewayError

# OpenRouter's error types -> the codes a Responses `error` may carry
_ERROR_CODES = {
    "rate_limit_exceeded": "rate_limit_exceeded",
    "invalid_request": "invalid_prompt",
    "invalid_prompt": "invalid_prompt",
    "context_length_exceeded": "invalid_prompt",
    "invalid_image": "invalid_image",
    "image_too_large": "image_too_large",
    "image_too_small": "image_too_small",
}


def responses_usage(chat_usage: dict[str, Any], reasoning_text: str = "") -> dict[str, Any]:
    """The Responses usage; `reasoning_text` is the reasoning returned, for an estimate of
    the reasoning tokens when the provider did not count them (see `reasoning_tokens`)."""
    prompt = chat_usage.get("prompt_tokens_details")
    prompt = prompt if isinstance(prompt, dict) else {}
    input_tokens = count(chat_usage.get("prompt_tokens"))
    output_tokens = count(chat_usage.get("completion_tokens"))
    input_details: dict[str, Any] = {"cached_tokens": count(prompt.get("cached_tokens"))}
    if "cache_write_tokens" in prompt:
        input_details["cache_write_tokens"] = count(prompt.get("cache_write_tokens"))
    out: dict[str, Any] = {
        "input_tokens": input_tokens,
        "input_tokens_details": input_details,
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens(chat_usage, reasoning_text)},
        "total_tokens": input_tokens + output_tokens,
    }
    if chat_usage.get("cost") is not None:
        out["cost"] = chat_usage["cost"]
    if isinstance(chat_usage.get("is_byok"), bool):
        out["is_byok"] = chat_usage["is_byok"]
    costs = chat_usage.get("cost_details")
    if isinstance(costs, dict) and None not in (
        costs.get("upstream_inference_prompt_cost"),
        costs.get("upstream_inference_completions_cost"),
    ):
        out["cost_details"] = {
            "upstream_inference_cost": costs.get("upstream_inference_cost"),
            "upstream_inference_input_cost": costs["upstream_inference_prompt_cost"],
            "upstream_inference_output_cost": costs["upstream_inference_completions_cost"],
        }
    return out


def _tools(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's (function) tools as the response echoes them: `parameters` always set."""
    tools = []
    for tool in request.get("tools") or []:
        echo = {
            "type": "function",
            "name": tool.get("name"),
            "parameters": tool.get("parameters"),
            "strict": tool.get("strict"),
        }
        if tool.get("description") is not None:
            echo["description"] = tool["description"]
        tools.append(echo)
    return tools


def wants_summary(request: dict[str, Any]) -> bool:
    return (request.get("reasoning") or {}).get("summary") is not None


def skeleton(
    response_id: str, created: int, model: str | None, request: dict[str, Any]
) -> dict[str, Any]:
    """The fields every Responses object carries, echoing the request's settings."""
    parallel = request.get("parallel_tool_calls")
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "completed_at": None,
        "model": model,
        "status": "in_progress",
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "metadata": request.get("metadata") or {},
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "presence_penalty": request.get("presence_penalty"),
        "frequency_penalty": request.get("frequency_penalty"),
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": _tools(request),
        "store": False,
        "background": False,
        "previous_response_id": None,
        "text": request.get("text") or {"format": {"type": "text"}},
        "reasoning": request.get("reasoning"),
    }  # `usage` (an object, not nullable) comes with the end
    for key in ("top_logprobs", "safety_identifier", "prompt_cache_key", "user"):
        if request.get(key) is not None:
            response[key] = request[key]
    return response


def finish(response: dict[str, Any], finish_reason: str | None) -> None:
    if finish_reason == "length":
        response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    elif finish_reason == "content_filter":
        response.update(status="incomplete", incomplete_details={"reason": "content_filter"})
    else:
        response.update(status="completed", completed_at=int(time.time()))


def failed(response: dict[str, Any], error: GatewayError) -> None:
    response.update(
        status="failed",
        error={
            "code": _ERROR_CODES.get(error.error_type, "server_error"),
            "message": error.message,
        },
        error_type=error.error_type,
    )


def reasoning_item(
    item_id: str, text: str, details: list[dict[str, Any]], *, summarize: bool
) -> dict[str, Any]:
    """A reasoning item: the text as `reasoning_text` content; `summary` has the provider's
    summaries, or, when the request asked for one (`summarize`), the reasoning text."""
    summaries = [
        d["summary"]
        for d in details
        if d.get("type") == "reasoning.summary" and isinstance(d.get("summary"), str)
    ]
    if summarize and text:
        summaries = [text]
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": s} for s in summaries if s],
        "content": [{"type": "reasoning_text", "text": text}] if text else [],
        "status": "completed",
    }
    signed = [d for d in details if d.get("type") == "reasoning.text" and d.get("signature")]
    if signed:  # e.g. Anthropic's: the client sends it back to continue the turn
        item["signature"] = str(signed[-1]["signature"])
        if isinstance(signed[-1].get("format"), str):
            item["format"] = signed[-1]["format"]
    encrypted = [d.get("data") for d in details if d.get("type") == "reasoning.encrypted"]
    if encrypted and isinstance(encrypted[0], str):
        item["encrypted_content"] = encrypted[0]
    return item


def message_item(item_id: str, text: str, refusal: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text or not refusal:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": content,
    }


def call_item(item_id: str, call: dict[str, Any], arguments: str | None = None) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": str(call.get("id") or ""),
        "name": str(fn.get("name") or ""),
        "arguments": (fn.get("arguments") or "") if arguments is None else arguments,
        "status": "completed",
    }


def render_response(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    response = skeleton(completion["id"], completion["created"], completion["model"], request)
    choice = completion["choices"][0] if completion["choices"] else {"message": {}}
    message = choice.get("message") or {}
    reasoning: str = message["reasoning"] if isinstance(message.get("reasoning"), str) else ""
    output: list[dict[str, Any]] = []
    if reasoning or message.get("reasoning_details"):
        output.append(
            reasoning_item(
                f"rs_{completion['id']}",
                reasoning,
                message.get("reasoning_details") or [],
                summarize=wants_summary(request),
            )
        )
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    if message.get("content") or refusal:
        output.append(
            message_item(f"msg_{completion['id']}", message.get("content") or "", refusal)
        )
    output += [
        call_item(f"fc_{completion['id']}_{i}", c)
        for i, c in enumerate(message.get("tool_calls") or [])
    ]
    response.update(
        output=output,
        usage=responses_usage(completion.get("usage") or {}, reasoning),
        provider=completion.get("provider"),
    )
    finish(response, choice.get("finish_reason"))
    return response


def error_body(error: GatewayError) -> dict[str, Any]:
    return error.envelope()
