"""Anthropic Messages responses and stream events -> OpenAI-shaped completions and chunks. Pure."""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.providers.base import Completion, normalise_finish_reason
from crossroads.providers.untrusted import count, error_text, items, obj, read_json, text, total

FORMAT = "anthropic-claude-v1"


def chat_usage_from_anthropic(raw: Any) -> dict[str, Any]:
    """Anthropic `usage` as OpenAI/OpenRouter chat usage.

    Anthropic counts cache reads and writes apart from `input_tokens`; OpenRouter's
    `prompt_tokens` includes them.
    """
    raw = obj(raw, "usage")
    read = total(raw, "usage", "cache_read_input_tokens")
    written = total(raw, "usage", "cache_creation_input_tokens")
    prompt = total(raw, "usage", "input_tokens") + read + written
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": total(raw, "usage", "output_tokens"),
    }
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    out["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": written}
    return out


def _detail(block: dict[str, Any], index: int) -> dict[str, Any] | None:
    if block.get("type") == "thinking":
        return {
            "type": "reasoning.text",
            "text": text(block.get("thinking"), "thinking") or "",
            "signature": text(block.get("signature"), "signature"),
            "format": FORMAT,
            "index": index,
        }
    if block.get("type") == "redacted_thinking":
        return {
            "type": "reasoning.encrypted",
            "data": text(block.get("data"), "redacted_thinking.data") or "",
            "format": FORMAT,
            "index": index,
        }
    return None


def _call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": text(block.get("id"), "tool_use.id"),
        "type": "function",
        "function": {
            "name": text(block.get("name"), "tool_use.name"),
            "arguments": orjson.dumps(obj(block.get("input"), "tool_use.input")).decode(),
        },
    }


def from_anthropic_response(payload: Any) -> Completion:
    if not isinstance(payload, dict) or payload.get("type") != "message":
        raise ValueError("response is not an Anthropic message")
    parts: list[str] = []
    thinking: list[str] = []
    details: list[dict[str, Any] | None] = []
    calls: list[dict[str, Any]] = []
    for block in items(payload.get("content"), "content"):
        kind = text(block.get("type"), "content block type")
        if kind == "text":
            parts.append(text(block.get("text"), "text") or "")
        elif kind in ("thinking", "redacted_thinking"):
            details.append(_detail(block, len(details)))
            if kind == "thinking":
                thinking.append(text(block.get("thinking"), "thinking") or "")
        elif kind == "tool_use":
            calls.append(_call(block))
    native = text(payload.get("stop_reason"), "stop_reason")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(parts) if parts or not calls else None,
        "refusal": None,
        "reasoning": "".join(thinking) or None,
    }
    if details:
        message["reasoning_details"] = details
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": normalise_finish_reason(native),
        "native_finish_reason": native,
        "logprobs": None,
    }
    return Completion(
        upstream_id=text(payload.get("id"), "id"),
        choices=[choice],
        usage=chat_usage_from_anthropic(payload.get("usage")),
    )


class AnthropicStreamDecoder:
    """Anthropic's event sequence as OpenAI chunks; tool-use blocks become numbered tool calls.

    The stream has ended once `message_stop` arrived."""

    def __init__(self) -> None:
        self.ended = False
        self.upstream_id: str | None = None
        self.usage: dict[str, Any] = {}
        self.tool_index: dict[int, int] = {}  # content block index -> tool call index
        self.details = 0

    def _chunk(self, delta: dict[str, Any], **choice: Any) -> dict[str, Any]:
        return {
            "upstream_id": self.upstream_id,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": None,
                    "native_finish_reason": None,
                    **choice,
                }
            ],
        }

    def feed(self, data: str) -> list[dict[str, Any]]:
        if data.strip() == "[DONE]":  # not Anthropic's, but harmless
            return []
        event = read_json(data)
        if not isinstance(event, dict):
            raise ValueError("stream event is not a JSON object")
        kind = text(event.get("type"), "event type")
        if kind == "message_start":
            message = obj(event.get("message"), "message")
            self.upstream_id = text(message.get("id"), "message.id")
            self.usage.update(obj(message.get("usage"), "message.usage"))
            chat_usage_from_anthropic(self.usage)  # checked as it arrives
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(
                self._index(event), obj(event.get("content_block"), "content_block")
            )
        if kind == "content_block_delta":
            return self._block_delta(self._index(event), obj(event.get("delta"), "delta"))
        if kind == "message_delta":
            usage = obj(event.get("usage"), "message_delta.usage")
            self.usage.update({k: v for k, v in usage.items() if v is not None})
            native = text(obj(event.get("delta"), "delta").get("stop_reason"), "stop_reason")
            chunk = self._chunk(
                {}, finish_reason=normalise_finish_reason(native), native_finish_reason=native
            )
            chunk["usage"] = chat_usage_from_anthropic(self.usage)
            return [chunk]
        if kind == "message_stop":
            self.ended = True
        if kind == "error":
            raise ValueError(error_text(event.get("error")))
        return []  # ping, content_block_stop, message_stop

    @staticmethod
    def _index(event: dict[str, Any]) -> int:
        return count(event.get("index"), "content block index") or 0

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = text(block.get("type"), "content_block.type")
        if kind == "tool_use":
            position = self.tool_index[index] = len(self.tool_index)
            call = {
                "index": position,
                "id": text(block.get("id"), "tool_use.id"),
                "type": "function",
                "function": {"name": text(block.get("name"), "tool_use.name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "redacted_thinking":
            detail = _detail(block, self.details)
            self.details += 1
            return [self._chunk({"reasoning_details": [detail]})]
        if kind == "text" and text(block.get("text"), "text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = text(delta.get("type"), "delta.type")
        if kind == "text_delta":
            return [self._chunk({"content": text(delta.get("text"), "text") or ""})]
        if kind == "input_json_delta":
            call = {
                "index": self.tool_index.get(index, 0),
                "function": {"arguments": text(delta.get("partial_json"), "partial_json") or ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "thinking_delta":
            thought = text(delta.get("thinking"), "thinking") or ""
            detail = {
                "type": "reasoning.text",
                "text": thought,
                "format": FORMAT,
                "index": self.details,
            }
            return [self._chunk({"reasoning": thought, "reasoning_details": [detail]})]
        if kind == "signature_delta":
            detail = {
                "type": "reasoning.text",
                "signature": text(delta.get("signature"), "signature"),
                "format": FORMAT,
                "index": self.details,
            }
            self.details += 1  # a signature closes its thinking block
            return [self._chunk({"reasoning_details": [detail]})]
        return []
