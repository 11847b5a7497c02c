"""Helpers for adapter tests: load fixtures, run SSE fixtures through a decoder, merge chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from crossroads.providers.sse import SSEDecoder
from crossroads.schema.catalog import Endpoint

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(path: str) -> Any:
    return orjson.loads((FIXTURES / path).read_bytes())


def decode_stream(path: str, decoder: Any) -> list[dict[str, Any]]:
    sse = SSEDecoder()
    chunks: list[dict[str, Any]] = []
    for line in (FIXTURES / path).read_bytes().splitlines(keepends=True):
        data = sse.feed(line)
        if data is not None and data != "[DONE]":
            chunks += decoder.feed(data)
    return chunks


def merged(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold OpenAI-shaped chunks into one message, the way SDK stream helpers do."""
    out: dict[str, Any] = {
        "content": "",
        "reasoning": "",
        "tool_calls": {},
        "reasoning_details": [],
        "finish_reason": None,
        "native_finish_reason": None,
        "usage": None,
    }
    for chunk in chunks:
        out["usage"] = chunk.get("usage") or out["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            out["content"] += delta.get("content") or ""
            out["reasoning"] += delta.get("reasoning") or ""
            out["reasoning_details"] += delta.get("reasoning_details") or []
            for call in delta.get("tool_calls") or []:
                slot = out["tool_calls"].setdefault(
                    call["index"], {"id": None, "name": None, "arguments": ""}
                )
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["name"] = fn.get("name") or slot["name"]
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                out["finish_reason"], out["native_finish_reason"] = (
                    choice["finish_reason"],
                    choice["native_finish_reason"],
                )
    return out


def endpoint(upstream: str = "upstream-model", **extra: Any) -> Endpoint:
    e = Endpoint(provider="p", tag="p", upstream_model=upstream, **extra)
    e.model_id = "acme/model"
    return e
