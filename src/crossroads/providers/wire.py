"""Wire helpers shared by the provider adapters and the API renderers. Pure functions.

Each helper is the one place a piece of wire translation is done, so every protocol
behaves the same way: how an end-user id is hidden, how a `data:` URL is split, how
turns of one role are merged and how a JSON string becomes the object a field needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

RAW_ARGUMENTS_KEY = "_raw"
"""The key under which `parse_tool_arguments` keeps arguments that are not a JSON object."""


def hash_user_id(user: object) -> str:
    """The end-user id as it travels upstream: 32 hex digits of sha256 of `str(user)`.

    Providers get a stable pseudonym for abuse tracking, never the raw id.
    """
    return hashlib.sha256(str(user).encode()).hexdigest()[:32]


def split_data_url(url: str, default_type: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 `data:` URL, or None for any other URL.

    A URL without a media type (`data:;base64,...`) gets `default_type`. Parameters
    before `;base64,` stay part of the media type, as the URL wrote them.
    """
    if not url.startswith("data:") or ";base64," not in url:
        return None
    media_type, data = url[5:].split(";base64,", 1)
    return media_type or default_type, data


def append_turn(
    turns: list[dict[str, Any]], role: str, items: list[dict[str, Any]], *, items_key: str
) -> None:
    """Add `items` as a turn of `role`, merged into the last turn when that has the same role.

    For protocols that require alternating roles (Anthropic `content`, Gemini `parts`):
    `items_key` names the turn's list. Empty `items` add no turn.
    """
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][items_key].extend(items)
    else:
        turns.append({"role": role, items_key: items})


def json_object(value: object, *, wrap_key: str) -> dict[str, Any]:
    """`value` (usually a JSON string) as the JSON object a wire field requires.

    - None or "" -> {}
    - a mapping, or a string holding a JSON object -> that object (as a dict)
    - a string holding any other JSON value -> {wrap_key: the decoded value}
    - a string that is not JSON, or any other value -> {wrap_key: value unchanged}
    """
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {wrap_key: value}
        return decoded if isinstance(decoded, dict) else {wrap_key: decoded}
    return {wrap_key: value}


def parse_tool_arguments(arguments: object) -> dict[str, Any]:
    """A tool call's `arguments` (a JSON string in OpenAI's shape) as an object.

    Protocols that carry arguments as an object (Anthropic `input`, Gemini `args`)
    need one. A JSON object is used as is; missing or empty arguments are {}; anything
    else (malformed JSON, a JSON array or scalar) is kept, not dropped, under
    `RAW_ARGUMENTS_KEY`: `{"_raw": ...}`. See `json_object` for the exact rules.
    """
    return json_object(arguments, wrap_key=RAW_ARGUMENTS_KEY)


__all__ = [
    "RAW_ARGUMENTS_KEY",
    "append_turn",
    "hash_user_id",
    "json_object",
    "parse_tool_arguments",
    "split_data_url",
]
