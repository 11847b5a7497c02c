"""The router's OpenAI-shaped chunks -> Anthropic's streaming event sequence.

message_start, then for each content block content_block_start / _delta / _stop
(thinking with its signature, text, tool_use with input_json deltas), then
message_delta with the stop reason and usage, and message_stop.
"""

from __future__ import annotations

from typing import Any

from crossroads.api.messages.response import (
    anthropic_usage,
    error_body,
    stop_details,
    stop_reason,
    text_block,
    tool_use_block,
)
from crossroads.api.sse import named_event
from crossroads.errors import GatewayError
from crossroads.routing.context import RequestContext


class MessagesEncoder:
    def __init__(self, ctx: RequestContext, request: dict[str, Any]) -> None:
        self.ctx = ctx
        self.model = request.get("model")
        self.started = False
        self.block: tuple[str, Any] | None = None  # (kind, key) of the open content block
        self.index = -1
        self.stop: str | None = None
        self.thinking = ""  # the reasoning text streamed, for the thinking-token estimate
        self.done = False

    def _open(self, kind: str, key: Any, block: dict[str, Any]) -> bytes:
        if self.block == (kind, key):
            return b""
        out = self._close_block()
        self.index += 1
        self.block = (kind, key)
        return out + named_event(
            "content_block_start",
            {"type": "content_block_start", "index": self.index, "content_block": block},
        )

    def _close_block(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        return named_event(
            "content_block_stop", {"type": "content_block_stop", "index": self.index}
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return named_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self.index, "delta": delta},
        )

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        self.model = chunk.get("model") or self.model
        message: dict[str, Any] = {
            "id": self.ctx.generation_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "container": None,
            "content": [],
            "stop_reason": None,
            "stop_details": None,
            "stop_sequence": None,
            "usage": anthropic_usage({}),  # the counts come with message_delta
        }
        return named_event("message_start", {"type": "message_start", "message": message})

    def event(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self._start(chunk)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            for detail in delta.get("reasoning_details") or []:
                if detail.get("type") == "reasoning.encrypted":
                    out += self._open(
                        "redacted",
                        detail.get("index"),
                        {"type": "redacted_thinking", "data": detail.get("data", "")},
                    )
                elif detail.get("type") == "reasoning.text":
                    out += self._open(
                        "thinking", 0, {"type": "thinking", "thinking": "", "signature": ""}
                    )
                    if detail.get("text"):
                        self.thinking += detail["text"]
                        out += self._delta({"type": "thinking_delta", "thinking": detail["text"]})
                    if detail.get("signature"):
                        out += self._delta(
                            {"type": "signature_delta", "signature": detail["signature"]}
                        )
            if delta.get("reasoning") and not delta.get("reasoning_details"):
                out += self._open(
                    "thinking", 0, {"type": "thinking", "thinking": "", "signature": ""}
                )
                self.thinking += delta["reasoning"]
                out += self._delta({"type": "thinking_delta", "thinking": delta["reasoning"]})
            if delta.get("content"):
                out += self._open("text", 0, text_block(""))
                out += self._delta({"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                out += self._open(
                    "tool",
                    call.get("index", 0),
                    tool_use_block(call.get("id"), fn.get("name"), {}),
                )
                if fn.get("arguments"):
                    out += self._delta(
                        {"type": "input_json_delta", "partial_json": fn["arguments"]}
                    )
            if choice.get("finish_reason"):
                self.stop = stop_reason(choice["finish_reason"], choice.get("native_finish_reason"))
        if chunk.get("usage"):
            out += self._finish(chunk["usage"])
        return out

    def _finish(self, chat_usage: dict[str, Any]) -> bytes:
        self.done = True
        stop = self.stop or "end_turn"
        return (
            self._close_block()
            + named_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop,
                        "stop_sequence": None,
                        "stop_details": stop_details(stop),
                        "container": None,
                    },
                    "usage": anthropic_usage(chat_usage, self.thinking),
                },
            )
            + named_event("message_stop", {"type": "message_stop"})
        )

    def close(self) -> bytes:
        return b"" if self.done else self._finish({})

    def failure(self, error: GatewayError) -> bytes:
        return named_event("error", error_body(error))
