"""Gemini generateContent responses and stream chunks -> OpenAI-shaped completions, chunks.

Pure functions.
"""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.providers.base import Completion, normalise_finish_reason
from crossroads.providers.gemini.request import FORMAT
from crossroads.providers.untrusted import error_text, items, obj, read_json, text, total

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
    if not isinstance(native, str):
        raise TypeError("finishReason is not a string")
    if native in _FILTERED:
        return "content_filter"
    if native == "MALFORMED_FUNCTION_CALL":
        return "error"
    if native == "STOP" and has_calls:
        return "tool_calls"
    return normalise_finish_reason(native)


def chat_usage_from_gemini(meta: Any) -> dict[str, Any]:
    """Gemini `usageMetadata` as OpenAI/OpenRouter chat usage.

    Tool-use prompt tokens count as prompt, thoughts as completion (and reasoning) tokens.
    """
    meta = obj(meta, "usageMetadata")
    what = "usageMetadata"
    total(meta, what, "totalTokenCount")  # not used, but a count all the same
    thoughts = total(meta, what, "thoughtsTokenCount")
    prompt = total(meta, what, "promptTokenCount", "toolUsePromptTokenCount")
    completion = total(meta, what, "candidatesTokenCount") + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": total(meta, what, "cachedContentTokenCount")},
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
        for part in items(parts, "parts"):
            signature = text(part.get("thoughtSignature"), "thoughtSignature")
            if part.get("thought"):
                thought = text(part.get("text"), "text") or ""
                out["reasoning"] += thought
                detail = {
                    "type": "reasoning.text",
                    "text": thought,
                    "format": FORMAT,
                    "index": self.details,
                }
                if signature:
                    detail["signature"] = signature
                out["reasoning_details"].append(detail)
                self.details += 1
                continue
            if "functionCall" in part:
                call = obj(part["functionCall"], "functionCall")
                call_id = text(call.get("id"), "functionCall.id") or f"call_{self.calls}"
                out["tool_calls"].append(
                    {
                        "index": self.calls,
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": text(call.get("name"), "functionCall.name"),
                            "arguments": orjson.dumps(
                                obj(call.get("args"), "functionCall.args")
                            ).decode(),
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
                out["content"] += text(part["text"], "text") or ""
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


def _candidate(payload: Any) -> dict[str, Any]:
    payload = obj(payload, "response")
    candidates = items(payload.get("candidates"), "candidates")
    if candidates:
        first: dict[str, Any] = candidates[0]
        return first
    blocked = obj(payload.get("promptFeedback"), "promptFeedback").get("blockReason")
    return {"content": {"parts": []}, "finishReason": "SAFETY" if blocked else None}


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    return items(obj(candidate.get("content"), "content").get("parts"), "parts")


def from_gemini_response(payload: Any) -> Completion:
    if not isinstance(payload, dict) or (
        "candidates" not in payload and "promptFeedback" not in payload
    ):
        raise ValueError("response has no candidates")
    candidate = _candidate(payload)
    read = _Parts().read(_parts(candidate))
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
    native = text(candidate.get("finishReason"), "finishReason")
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(native, bool(calls)),
        "native_finish_reason": native,
        "logprobs": None,
    }
    return Completion(
        upstream_id=text(payload.get("responseId"), "responseId"),
        choices=[choice],
        usage=chat_usage_from_gemini(payload.get("usageMetadata")),
        system_fingerprint=text(payload.get("modelVersion"), "modelVersion"),
    )


class GeminiStreamDecoder:
    """Gemini stream chunks as OpenAI chunks; the stream has ended once a candidate (or a
    blocked prompt) carries a finish reason."""

    def __init__(self) -> None:
        self.parts = _Parts()
        self.started = False
        self.ended = False

    def feed(self, data: str) -> list[dict[str, Any]]:
        if data.strip() == "[DONE]":  # not Gemini's, but harmless
            return []
        payload = read_json(data)
        if not isinstance(payload, dict):
            raise ValueError("stream chunk is not a JSON object")
        if payload.get("error"):
            raise ValueError(error_text(payload["error"]))
        candidate = _candidate(payload)
        read = self.parts.read(_parts(candidate))
        delta: dict[str, Any] = {} if self.started else {"role": "assistant"}
        self.started = True
        for key in ("content", "reasoning", "reasoning_details", "tool_calls"):
            if read[key]:
                delta[key] = read[key]
        native = text(candidate.get("finishReason"), "finishReason")
        chunk: dict[str, Any] = {
            "upstream_id": text(payload.get("responseId"), "responseId"),
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
        if native:
            self.ended = True
        return [chunk]
