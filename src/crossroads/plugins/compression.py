"""The `context-compression` plugin (OpenRouter's "middle-out"): a prompt too long for an
endpoint's context loses messages from its middle until it fits.

Pure. The conversation is cut into units: one message, or an assistant message that calls
tools together with the tool results that answer it (a call is never sent without its
result, nor a result without its call). Kept always: the leading system (and developer)
messages, the first user message, and the last unit. The units between are removed nearest
the middle first (the oldest and the newest context are what a conversation leans on)
until the estimate fits the budget. When even the kept units do not fit, the prompt cannot
be compressed enough: `compress` returns None and the endpoint is not used.

Sizes are the caller's estimate (the router's, `routing.tokens`, errs on the large side:
no tokenizer of the serving model is known before a provider answers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SMALL_CONTEXT = 8192  # at or below it, compression is on unless a request turns it off
_HEAD_ROLES = ("system", "developer")
Unit = list[dict[str, Any]]  # one message, or a tool call with its results


@dataclass(frozen=True, slots=True)
class Compressed:
    messages: list[dict[str, Any]]
    removed: int  # messages taken out

    @property
    def note(self) -> str:
        return f"context-compression: {self.removed} messages removed from the middle"


def _units(messages: Sequence[dict[str, Any]]) -> list[Unit]:
    units: list[Unit] = []
    for message in messages:
        if message.get("role") == "tool" and units and _calls_tools(units[-1]):
            units[-1].append(message)
        else:
            units.append([message])
    return units


def _calls_tools(unit: Unit) -> bool:
    return unit[0].get("role") == "assistant" and bool(unit[0].get("tool_calls"))


Estimate = Callable[[dict[str, Any]], int]  # a chat body's prompt tokens


def _split(messages: Sequence[dict[str, Any]]) -> tuple[list[Unit], list[Unit], list[Unit]]:
    """(head, middle units, tail unit): what is always kept around what may go."""
    units = _units(messages)
    head = 0
    while head < len(units) and units[head][0].get("role") in _HEAD_ROLES:
        head += 1
    if head < len(units) and units[head][0].get("role") == "user":
        head += 1  # the first user message
    if len(units) - head < 2:
        return units, [], []
    return units[:head], units[head:-1], units[-1:]


def _sizes(body: dict[str, Any], units: list[Unit], estimate: Estimate) -> tuple[int, list[int]]:
    """The prompt's size without messages (its tools), and each unit's: their sum is never
    below the whole prompt's estimate (each part is rounded up)."""
    return estimate({**body, "messages": []}), [estimate({"messages": u}) for u in units]


def smallest(body: dict[str, Any], estimate: Estimate) -> int:
    """The estimate of `body`'s prompt with every message that may go taken out."""
    head, _, tail = _split(body.get("messages") or [])
    base, sizes = _sizes(body, head + tail, estimate)
    return base + sum(sizes)


def compress(body: dict[str, Any], budget: int, estimate: Estimate) -> Compressed | None:
    """`body`'s messages cut to fit `budget` tokens; None when they cannot be."""
    messages = body.get("messages") or []
    if estimate(body) <= budget:
        return Compressed(list(messages), 0)
    head, middle, tail = _split(messages)
    base, sizes = _sizes(body, head + middle + tail, estimate)
    total = base + sum(sizes)
    middle_sizes = sizes[len(head) : len(head) + len(middle)]
    removed: set[int] = set()
    # nearest the middle first: from the centre outwards
    for index in sorted(range(len(middle)), key=lambda i: (abs(i - (len(middle) - 1) / 2), i)):
        if total <= budget:
            break
        removed.add(index)
        total -= middle_sizes[index]
    if total > budget:
        return None
    kept = head + [u for i, u in enumerate(middle) if i not in removed] + tail
    flat = [m for unit in kept for m in unit]
    return Compressed(flat, len(messages) - len(flat))
