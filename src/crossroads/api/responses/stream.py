"""The router's OpenAI-shaped chunks -> the Responses API's typed streaming events.

response.created and .in_progress; for each output item .output_item.added, its
deltas (reasoning_text and reasoning_summary_text, output_text, function_call_arguments)
and their .done events, .output_item.done; finally response.completed (or .incomplete,
or .failed). A reasoning item streams its summary (reasoning_summary_part.added, then
reasoning_summary_text.delta ...) when the request asks for `reasoning.summary`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from crossroads.api.responses.response import (
    call_item,
    failed,
    finish,
    message_item,
    reasoning_item,
    responses_usage,
    skeleton,
    wants_summary,
)
from crossroads.api.sse import named_event
from crossroads.errors import GatewayError
from crossroads.routing.context import RequestContext


def _empty_reasoning(item_id: str) -> dict[str, Any]:
    return reasoning_item(item_id, "", [], summarize=False)


class _Slot:
    """An output item still streaming."""

    def __init__(self, index: int, item: dict[str, Any]) -> None:
        self.index = index
        self.item = item
        self.text = ""  # the text, arguments or reasoning streamed so far
        self.details: list[dict[str, Any]] = []  # a reasoning item's reasoning_details
        self.summary_open = False  # a reasoning item's summary part 0 was announced


class ResponsesEncoder:
    def __init__(self, ctx: RequestContext, request: dict[str, Any]) -> None:
        self.response = skeleton(ctx.generation_id, ctx.created, request.get("model"), request)
        self.summarize = wants_summary(request)
        self.sequence = 0
        self.started = False
        self.open: dict[str, _Slot] = {}  # key -> an item still streaming
        self.reasoning = ""  # all reasoning text, for the reasoning-token estimate
        self.finish_reason: str | None = None
        self.done = False

    def _event(self, kind: str, **payload: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **payload}
        self.sequence += 1
        return named_event(kind, event)

    def _where(self, slot: _Slot) -> dict[str, Any]:
        return {"item_id": slot.item["id"], "output_index": slot.index}

    def _item(
        self, key: str, item_id: str, make: Callable[[str], dict[str, Any]]
    ) -> tuple[bytes, _Slot]:
        """The open item under `key`, or a new one made by `make(item_id)`. A new item
        first closes an open reasoning or message item: their text is over."""
        slot = self.open.get(key)
        if slot is not None:
            return b"", slot
        out = b""
        for other in sorted(self.open.values(), key=lambda s: s.index):
            if other.item["type"] in ("reasoning", "message"):
                out += self._close(other)
        if any(i.get("id") == item_id for i in self.response["output"]):
            item_id += f"_{len(self.response['output'])}"  # e.g. reasoning after a tool call
        item = make(item_id)
        slot = self.open[key] = _Slot(len(self.response["output"]), item)
        self.response["output"].append(item)
        added = {**item, "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
        out += self._event("response.output_item.added", output_index=slot.index, item=added)
        if item["type"] == "message":
            out += self._event(
                "response.content_part.added",
                **self._where(slot),
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            )
        return out, slot

    def _summary_part(self, slot: _Slot, index: int, kind: str, text: str) -> bytes:
        return self._event(
            f"response.reasoning_summary_part.{kind}",
            **self._where(slot),
            summary_index=index,
            part={"type": "summary_text", "text": text},
        )

    def _reasoning(self, text: str) -> bytes:
        out, slot = self._item("rs", f"rs_{self.response['id']}", _empty_reasoning)
        slot.text += text
        self.reasoning += text
        out += self._event(
            "response.reasoning_text.delta", **self._where(slot), content_index=0, delta=text
        )
        if self.summarize:
            if not slot.summary_open:
                slot.summary_open = True
                out += self._summary_part(slot, 0, "added", "")
            out += self._event(
                "response.reasoning_summary_text.delta",
                **self._where(slot),
                summary_index=0,
                delta=text,
            )
        return out

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
            if delta.get("reasoning") and isinstance(delta["reasoning"], str):
                out += self._reasoning(delta["reasoning"])
            if delta.get("reasoning_details"):
                added, slot = self._item("rs", f"rs_{rid}", _empty_reasoning)
                slot.details.extend(d for d in delta["reasoning_details"] if isinstance(d, dict))
                out += added
            if delta.get("content"):
                added, slot = self._item("msg", f"msg_{rid}", partial(message_item, text=""))
                slot.text += delta["content"]
                out += added + self._event(
                    "response.output_text.delta",
                    **self._where(slot),
                    content_index=0,
                    delta=delta["content"],
                    logprobs=[],
                )
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                index = call.get("index", 0)
                make = partial(call_item, call=call, arguments="")
                added, slot = self._item(f"fc_{index}", f"fc_{rid}_{index}", make)
                slot.text += fn.get("arguments") or ""
                if fn.get("arguments"):
                    added += self._event(
                        "response.function_call_arguments.delta",
                        **self._where(slot),
                        delta=fn["arguments"],
                    )
                out += added
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if chunk.get("usage"):
            out += self._complete(chunk["usage"])
        return out

    def _close_message(self, slot: _Slot) -> bytes:
        part = slot.item["content"][0]
        part["text"] = slot.text
        where = {**self._where(slot), "content_index": 0}
        return self._event(
            "response.output_text.done", **where, text=slot.text, logprobs=[]
        ) + self._event("response.content_part.done", **where, part=part)

    def _close_reasoning(self, slot: _Slot) -> bytes:
        final = reasoning_item(slot.item["id"], slot.text, slot.details, summarize=self.summarize)
        slot.item.update(final)
        out = b""
        if slot.text:
            out += self._event(
                "response.reasoning_text.done", **self._where(slot), content_index=0, text=slot.text
            )
        for i, part in enumerate(final["summary"]):
            if not (i == 0 and slot.summary_open):  # a summary the deltas did not carry
                out += self._summary_part(slot, i, "added", "")
                out += self._event(
                    "response.reasoning_summary_text.delta",
                    **self._where(slot),
                    summary_index=i,
                    delta=part["text"],
                )
            out += self._event(
                "response.reasoning_summary_text.done",
                **self._where(slot),
                summary_index=i,
                text=part["text"],
            )
            out += self._summary_part(slot, i, "done", part["text"])
        return out

    def _close(self, slot: _Slot) -> bytes:
        item = slot.item
        if item["type"] == "message":
            out = self._close_message(slot)
        elif item["type"] == "function_call":
            item["arguments"] = slot.text
            out = self._event(
                "response.function_call_arguments.done",
                **self._where(slot),
                name=item["name"],
                arguments=slot.text,
            )
        else:
            out = self._close_reasoning(slot)
        self.open = {k: s for k, s in self.open.items() if s is not slot}
        return out + self._event("response.output_item.done", output_index=slot.index, item=item)

    def _close_items(self) -> bytes:
        return b"".join(
            self._close(slot) for slot in sorted(self.open.values(), key=lambda s: s.index)
        )

    def _complete(self, chat_usage: dict[str, Any]) -> bytes:
        self.done = True
        out = self._close_items()
        self.response["usage"] = responses_usage(chat_usage, self.reasoning)
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
        for slot in self.open.values():  # what was streamed stays, marked unfinished
            item = slot.item
            if item["type"] == "message":
                item["content"][0]["text"] = slot.text
            elif item["type"] == "function_call":
                item["arguments"] = slot.text
            else:
                item.update(
                    reasoning_item(item["id"], slot.text, slot.details, summarize=self.summarize)
                )
            item["status"] = "incomplete"
        failed(self.response, error)
        return self._event("response.failed", response=self.response)
