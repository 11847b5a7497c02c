"""The router's OpenAI-shaped chunks -> the Responses API's typed streaming events.

response.created and .in_progress; for each output item .output_item.added, its
deltas (reasoning_text, output_text, function_call_arguments) and their .done events,
.output_item.done; finally response.completed (or .incomplete, or .failed).
"""

from __future__ import annotations

from typing import Any

from crossroads.api.responses.response import (
    call_item,
    finish,
    message_item,
    reasoning_item,
    responses_usage,
    skeleton,
)
from crossroads.api.sse import named_event
from crossroads.errors import GatewayError
from crossroads.routing.context import RequestContext


class ResponsesEncoder:
    def __init__(self, ctx: RequestContext, request: dict[str, Any]) -> None:
        self.response = skeleton(ctx.generation_id, ctx.created, request.get("model"), request)
        self.sequence = 0
        self.started = False
        self.open: dict[str, Any] = {}  # key -> {"index", "item", "text"}: items still streaming
        self.finish_reason: str | None = None
        self.done = False

    def _event(self, kind: str, **payload: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **payload}
        self.sequence += 1
        return named_event(kind, event)

    def _item(self, key: str, item: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        slot = self.open.get(key)
        if slot is not None:
            return b"", slot
        slot = self.open[key] = {"index": len(self.response["output"]), "item": item, "text": ""}
        self.response["output"].append(item)
        out = self._event(
            "response.output_item.added",
            output_index=slot["index"],
            item={**item, "status": "in_progress"},
        )
        if item["type"] == "message":
            out += self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=slot["index"],
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        return out, slot

    def event(self, chunk: dict[str, Any]) -> bytes:
        out = b""
        if not self.started:
            self.started = True
            self.response["model"] = chunk.get("model") or self.response["model"]
            out += self._event("response.created", response=dict(self.response))
            out += self._event("response.in_progress", response=dict(self.response))
        rid = self.response["id"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("reasoning"):
                added, slot = self._item("reasoning", reasoning_item(f"rs_{rid}", "", []))
                slot["text"] += delta["reasoning"]
                out += added + self._event(
                    "response.reasoning_text.delta",
                    item_id=slot["item"]["id"],
                    output_index=slot["index"],
                    content_index=0,
                    delta=delta["reasoning"],
                )
            if delta.get("reasoning_details"):
                _, slot = self._item("reasoning", reasoning_item(f"rs_{rid}", "", []))
                slot.setdefault("details", []).extend(delta["reasoning_details"])
            if delta.get("content"):
                added, slot = self._item("message", message_item(f"msg_{rid}", ""))
                slot["text"] += delta["content"]
                out += added + self._event(
                    "response.output_text.delta",
                    item_id=slot["item"]["id"],
                    output_index=slot["index"],
                    content_index=0,
                    delta=delta["content"],
                    logprobs=[],
                )
            for call in delta.get("tool_calls") or []:
                key = f"call-{call.get('index', 0)}"
                fn = call.get("function") or {}
                added, slot = self._item(key, call_item(f"fc_{rid}_{call.get('index', 0)}", call))
                slot["text"] += fn.get("arguments") or ""
                if fn.get("arguments"):
                    added += self._event(
                        "response.function_call_arguments.delta",
                        item_id=slot["item"]["id"],
                        output_index=slot["index"],
                        delta=fn["arguments"],
                    )
                out += added
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if chunk.get("usage"):
            out += self._complete(chunk["usage"])
        return out

    def _close_items(self) -> bytes:
        out = b""
        for slot in sorted(self.open.values(), key=lambda s: s["index"]):
            item, index, text = slot["item"], slot["index"], slot["text"]
            if item["type"] == "message":
                item["content"][0]["text"] = text
                out += self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
                out += self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=item["content"][0],
                )
            elif item["type"] == "function_call":
                item["arguments"] = text
                out += self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=text,
                )
            else:
                final = reasoning_item(item["id"], text, slot.get("details") or [])
                item.update(final)
                if text:
                    out += self._event(
                        "response.reasoning_text.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        text=text,
                    )
            self.response["output"][index] = item
            out += self._event("response.output_item.done", output_index=index, item=item)
        self.open.clear()
        return out

    def _complete(self, chat_usage: dict[str, Any]) -> bytes:
        self.done = True
        out = self._close_items()
        self.response["usage"] = responses_usage(chat_usage)
        finish(self.response, self.finish_reason)
        kind = (
            "response.completed"
            if self.response["status"] == "completed"
            else "response.incomplete"
        )
        return out + self._event(kind, response=self.response)

    def close(self) -> bytes:
        return (b"" if self.done else self._complete({})) + b"data: [DONE]\n\n"

    def failure(self, error: GatewayError) -> bytes:
        self.done = True
        self.response.update(
            status="failed", error={"code": error.error_type, "message": error.message}
        )
        return self._event("response.failed", response=self.response)
