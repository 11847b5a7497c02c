"""Anthropic Messages responses and stream events -> OpenAI-shaped completions and chunks. Pure."""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.providers.base import Completion, normalise_finish_reason

FORMAT = "anthropic-claude-v1"


def chat_usage_from_anthropic(raw: dict[str, Any]) -> dict[str, Any]:
    """Anthropic `usage` as OpenAI/OpenRouter chat usage.

    Anthropic counts cache reads and writes apart from `input_tokens`; OpenRouter's
    `prompt_tokens` includes them.
    """
    read = int(raw.get("cache_read_input_tokens") or 0)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    prompt = int(raw.get("input_tokens") or 0) + read + written
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": int(raw.get("output_tokens") or 0),
    }
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    out["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": written}
    return out


def _detail(block: dict[str, Any], index: int) -> dict[str, Any] | None:
    if block.get("type") == "thinking":
        return {
            "type": "reasoning.text",
            "text": block.get("thinking", ""),
            "signature": block.get("signature"),
            "format": FORMAT,
            "index": index,
        }
    if block.get("type") == "redacted_thinking":
        return {
            "type": "reasoning.encrypted",
            "data": block.get("data", ""),
            "format": FORMAT,
            "index": index,
        }
    return None


def from_anthropic_response(payload: Any) -> Completion:
    if not isinstance(payload, dict) or payload.get("type") != "message":
        raise ValueError("response is not an Anthropic message")
    text: list[str] = []
    thinking: list[str] = []
    details: list[dict[str, Any] | None] = []
    calls: list[dict[str, Any]] = []
    for block in payload.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind in ("thinking", "redacted_thinking"):
            details.append(_detail(block, len(details)))
            if kind == "thinking":
                thinking.append(block.get("thinking", ""))
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
    native = payload.get("stop_reason")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
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
        upstream_id=payload.get("id"),
        choices=[choice],
        usage=chat_usage_from_anthropic(payload.get("usage") or {}),
    )


class AnthropicStreamDecoder:
    """Anthropic's event sequence as OpenAI chunks; tool-use blocks become numbered tool calls."""

    def __init__(self) -> None:
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
        event = orjson.loads(data)
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.upstream_id = message.get("id")
            self.usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index", 0), event.get("delta") or {})
        if kind == "message_delta":
            self.usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
            native = (event.get("delta") or {}).get("stop_reason")
            chunk = self._chunk(
                {}, finish_reason=normalise_finish_reason(native), native_finish_reason=native
            )
            chunk["usage"] = chat_usage_from_anthropic(self.usage)
            return [chunk]
        if kind == "error":
            raise ValueError((event.get("error") or {}).get("message") or "provider stream error")
        return []  # ping, content_block_stop, message_stop

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") == "tool_use":
            position = self.tool_index[index] = len(self.tool_index)
            call = {
                "index": position,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "redacted_thinking":
            detail = _detail(block, self.details)
            self.details += 1
            return [self._chunk({"reasoning_details": [detail]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if kind == "input_json_delta":
            call = {
                "index": self.tool_index.get(index, 0),
                "function": {"arguments": delta.get("partial_json", "")},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "thinking_delta":
            text = delta.get("thinking", "")
            detail = {
                "type": "reasoning.text",
                "text": text,
                "format": FORMAT,
                "index": self.details,
            }
            return [self._chunk({"reasoning": text, "reasoning_details": [detail]})]
        if kind == "signature_delta":
            detail = {
                "type": "reasoning.text",
                "signature": delta.get("signature"),
                "format": FORMAT,
                "index": self.details,
            }
            self.details += 1  # a signature closes its thinking block
            return [self._chunk({"reasoning_details": [detail]})]
        return []
