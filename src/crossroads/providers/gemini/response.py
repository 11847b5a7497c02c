"""Gemini generateContent responses and stream chunks -> OpenAI-shaped completions, chunks.

Pure functions.
"""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.providers.base import Completion, normalise_finish_reason
from crossroads.providers.gemini.request import FORMAT

_FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "LANGUAGE",
}


def finish_reason(native: str | None, has_calls: bool) -> str | None:
    if native is None:
        return None
    if native in _FILTERED:
        return "content_filter"
    if native == "MALFORMED_FUNCTION_CALL":
        return "error"
    if native == "STOP" and has_calls:
        return "tool_calls"
    return normalise_finish_reason(native)


def chat_usage_from_gemini(meta: dict[str, Any]) -> dict[str, Any]:
    """Gemini `usageMetadata` as OpenAI/OpenRouter chat usage.

    Tool-use prompt tokens count as prompt, thoughts as completion (and reasoning) tokens.
    """
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(meta.get("cachedContentTokenCount") or 0)},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


class _Parts:
    """Reads candidate parts into content, reasoning, details and tool calls.

    Tool calls are numbered across the chunks of a stream.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.details = 0

    def read(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "content": "",
            "reasoning": "",
            "reasoning_details": [],
            "tool_calls": [],
        }
        for part in parts:
            signature = part.get("thoughtSignature")
            if part.get("thought"):
                out["reasoning"] += part.get("text", "")
                detail = {
                    "type": "reasoning.text",
                    "text": part.get("text", ""),
                    "format": FORMAT,
                    "index": self.details,
                }
                if signature:
                    detail["signature"] = signature
                out["reasoning_details"].append(detail)
                self.details += 1
                continue
            if "functionCall" in part:
                call = part["functionCall"]
                call_id = call.get("id") or f"call_{self.calls}"
                out["tool_calls"].append(
                    {
                        "index": self.calls,
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": call.get("name"),
                            "arguments": orjson.dumps(call.get("args") or {}).decode(),
                        },
                    }
                )
                self.calls += 1
                if signature:
                    out["reasoning_details"].append(
                        {
                            "type": "reasoning.encrypted",
                            "data": signature,
                            "id": call_id,
                            "format": FORMAT,
                            "index": self.details,
                        }
                    )
                    self.details += 1
            elif "text" in part:
                out["content"] += part["text"]
                if signature:
                    out["reasoning_details"].append(
                        {
                            "type": "reasoning.encrypted",
                            "data": signature,
                            "format": FORMAT,
                            "index": self.details,
                        }
                    )
                    self.details += 1
        return out


def _candidate(payload: dict[str, Any]) -> dict[str, Any]:
    candidates = payload.get("candidates") or []
    if candidates:
        first: dict[str, Any] = candidates[0]
        return first
    blocked = (payload.get("promptFeedback") or {}).get("blockReason")
    return {"content": {"parts": []}, "finishReason": "SAFETY" if blocked else None}


def from_gemini_response(payload: Any) -> Completion:
    if not isinstance(payload, dict) or (
        "candidates" not in payload and "promptFeedback" not in payload
    ):
        raise ValueError("response has no candidates")
    candidate = _candidate(payload)
    read = _Parts().read((candidate.get("content") or {}).get("parts") or [])
    calls = [{k: v for k, v in c.items() if k != "index"} for c in read["tool_calls"]]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": read["content"] if read["content"] or not calls else None,
        "refusal": None,
        "reasoning": read["reasoning"] or None,
    }
    if read["reasoning_details"]:
        message["reasoning_details"] = read["reasoning_details"]
    if calls:
        message["tool_calls"] = calls
    native = candidate.get("finishReason")
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(native, bool(calls)),
        "native_finish_reason": native,
        "logprobs": None,
    }
    return Completion(
        upstream_id=payload.get("responseId"),
        choices=[choice],
        usage=chat_usage_from_gemini(payload.get("usageMetadata") or {}),
        system_fingerprint=payload.get("modelVersion"),
    )


class GeminiStreamDecoder:
    def __init__(self) -> None:
        self.parts = _Parts()
        self.started = False

    def feed(self, data: str) -> list[dict[str, Any]]:
        payload = orjson.loads(data)
        if isinstance(payload, dict) and payload.get("error"):
            raise ValueError((payload["error"] or {}).get("message") or "provider stream error")
        candidate = _candidate(payload)
        read = self.parts.read((candidate.get("content") or {}).get("parts") or [])
        delta: dict[str, Any] = {} if self.started else {"role": "assistant"}
        self.started = True
        for key in ("content", "reasoning", "reasoning_details", "tool_calls"):
            if read[key]:
                delta[key] = read[key]
        native = candidate.get("finishReason")
        chunk: dict[str, Any] = {
            "upstream_id": payload.get("responseId"),
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": finish_reason(native, self.parts.calls > 0),
                    "native_finish_reason": native,
                }
            ],
        }
        if payload.get("usageMetadata") and native:
            chunk["usage"] = chat_usage_from_gemini(payload["usageMetadata"])
        return [chunk]
