"""Reading what a provider sends: untrusted input, checked before anything else uses it.

Pure helpers for the adapters. A value of the wrong type raises `TypeError`, a value out
of range or unparseable JSON raises `ValueError`: the adapter contract, which the router
turns into a provider error that falls back. Nothing here trusts a size, a depth or a type.
"""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.errors import redact

MAX_DEPTH = 64
"""How deeply a provider's JSON may nest. orjson encodes at most 255 levels; what we relay
wraps the provider's values in a few levels of our own, and no real reply comes close."""
MAX_COUNT = 2**53
"""Counts beyond this are read as this: still absurd (the router clamps them), but a
number every JSON reader and encoder handles."""
MAX_RAW_CHARS = 4000
"""How much of a provider's error body is kept (in the client's error and the record)."""


def check_depth(value: Any, limit: int = MAX_DEPTH) -> Any:
    """`value` itself; `ValueError` when its containers nest deeper than `limit`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise ValueError(f"reply nests deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)
    return value


def read_json(data: bytes | str) -> Any:
    """A provider's JSON, parsed (UTF-8 only, orjson's rules) and no deeper than `MAX_DEPTH`."""
    return check_depth(orjson.loads(data))


def obj(value: Any, what: str) -> dict[str, Any]:
    """A JSON object the protocol says is there (or absent: null reads as empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} is not an object")
    return value


def items(value: Any, what: str) -> list[dict[str, Any]]:
    """A JSON array of objects (null reads as empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{what} is not an array")
    for item in value:
        if not isinstance(item, dict):
            raise TypeError(f"{what} holds something other than objects")
    return value


def text(value: Any, what: str) -> str | None:
    """A string or null."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} is not a string")
    return value


def count(value: Any, what: str) -> int | None:
    """A token count: a non-negative integer, or null. A float must be a whole number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} is not a number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{what} is not a whole number")
    if value < 0:
        raise ValueError(f"{what} is negative")
    return min(int(value), MAX_COUNT)  # absurd, but a number: the router clamps it


def total(raw: dict[str, Any], what: str, *names: str) -> int:
    """The sum of the counts `names` of `raw` (absent counts are 0)."""
    return sum(count(raw.get(name), f"{what}.{name}") or 0 for name in names)


_DETAILS = {
    "prompt_tokens_details": ("cached_tokens", "cache_write_tokens", "audio_tokens"),
    "completion_tokens_details": (
        "reasoning_tokens",
        "audio_tokens",
        "image_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
    ),
}


def read_usage(raw: Any) -> dict[str, Any] | None:
    """An OpenAI-shaped `usage` object: only the counts we know, each checked; None when absent.

    Anything else a provider puts there (costs, flags, its own fields) is dropped: the
    router computes cost itself."""
    if raw is None:
        return None
    raw = obj(raw, "usage")
    usage: dict[str, Any] = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = count(raw.get(name), f"usage.{name}")
        if value is not None:
            usage[name] = value
    for group, names in _DETAILS.items():
        details = obj(raw.get(group), f"usage.{group}")
        kept = {n: count(details.get(n), f"usage.{group}.{n}") for n in names if n in details}
        if kept:
            usage[group] = {n: v for n, v in kept.items() if v is not None}
    return usage


def error_text(value: Any) -> str:
    """The message of an error a provider put in a reply (`{"message": ...}` or a string)."""
    if isinstance(value, dict):
        message = value.get("message") or value.get("type") or value.get("status")
        if isinstance(message, str) and message:
            return message
    if isinstance(value, str) and value:
        return value
    return "provider error"


def safe_raw(raw: Any, secrets: tuple[str | None, ...] = ()) -> Any:
    """A provider's error body as the client and the record may see it: credentials
    redacted, at most `MAX_RAW_CHARS` characters of JSON, nesting within `MAX_DEPTH`.
    What cannot be kept as JSON is kept as (redacted, truncated) text."""
    if raw is None:
        return None
    try:
        encoded = orjson.dumps(check_depth(raw)).decode()
    except (TypeError, ValueError):
        return "(unreadable error body)"
    cleaned = redact(encoded, secrets)
    if len(cleaned) <= MAX_RAW_CHARS:
        try:
            return orjson.loads(cleaned)
        except orjson.JSONDecodeError:
            pass  # a redaction replaced a bare value: keep the text
    if isinstance(raw, str):
        return redact(raw, secrets)[:MAX_RAW_CHARS]
    return cleaned[:MAX_RAW_CHARS]
