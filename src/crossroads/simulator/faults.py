"""How a simulated provider breaks: the faults a `Behaviour` can inject, per wire protocol.

A fault changes what goes on the wire after the reply was rendered: a broken body, a
broken stream event, a stream that stalls, never ends or is cut before its end. Faults
that need no server at all (a refused or never-accepted connection) live in the tests'
harness. See `FAULTS` for the names.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import orjson

FAULTS = {
    "malformed": "JSON that does not parse",
    "invalid_utf8": "bytes that are not UTF-8 inside the JSON",
    "oversized": "a body (or one stream event) larger than any sane limit",
    "deep": "JSON nested deeper than an encoder follows (see Behaviour.depth)",
    "stall": "the answer stops partway and the connection stays open (keep-alive comments)",
    "endless": "the answer never ends: text keeps coming",
    "cut": "the answer ends early: a stream closes cleanly without its end, a body is short",
}
DEEP_MARK = "__crossroads_deep__"
OVERSIZED_EVENT_BYTES = 2 * 1024 * 1024
OVERSIZED_BODY_BYTES = 17 * 1024 * 1024


def deep_json(depth: int) -> bytes:
    """`depth` nested arrays; built by hand, as no JSON encoder goes that deep."""
    return b"[" * depth + b"]" * depth


def _with_deep(encoded: bytes, depth: int) -> bytes:
    return encoded.replace(orjson.dumps(DEEP_MARK), deep_json(depth), 1)


def broken_body(fault: str, payload: dict[str, Any], protocol: ModuleType, depth: int) -> bytes:
    """A whole (non-streamed) answer with `fault`; "stall", "endless" and "cut" are about
    how it is sent (see `server.Simulator._send`), the body itself is whole."""
    if fault == "deep":
        protocol.deepen(payload, DEEP_MARK)
        return _with_deep(orjson.dumps(payload), depth)
    if fault == "oversized":
        payload["padding"] = "x" * OVERSIZED_BODY_BYTES
    encoded = orjson.dumps(payload)
    if fault == "malformed":
        return encoded[: len(encoded) // 2]
    if fault == "invalid_utf8":
        return encoded.replace(b"says:", b"says\xff\xfe:", 1)
    return encoded


def bad_event(fault: str, protocol: ModuleType, depth: int) -> bytes | None:
    """The one broken stream event `fault` inserts, or None for faults of the stream's shape."""
    if fault == "malformed":
        return b'data: {"choices": [{"delta": {"content": "unfinished\n\n'
    if fault == "invalid_utf8":
        return b'data: {"text": "\xff\xfe"}\n\n'
    if fault == "oversized":
        return b'data: {"padding": "' + b"x" * OVERSIZED_EVENT_BYTES + b'"}\n\n'
    if fault == "deep":
        return _with_deep(protocol.deep_event(DEEP_MARK), depth)
    return None


def stream_plan(
    pieces: list[bytes],
    fault: str | None,
    protocol: ModuleType,
    body: dict[str, Any],
    *,
    at: int,
    depth: int,
) -> tuple[list[bytes], str | None]:
    """The pieces to send and what happens after them: None (the stream ends), "stall"
    or "endless". `at` is how many pieces come before the fault."""
    if fault is None:
        return pieces, None
    event = bad_event(fault, protocol, depth)
    if event is not None:
        return [*pieces[:at], event, *pieces[at:]], None
    if fault == "cut":
        return pieces[: len(pieces) - protocol.tail(body)], None
    if fault in ("stall", "endless"):
        return pieces[:at], fault
    raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
