"""Prompt size before any tokenizer runs: a deliberate over-estimate for routing.

The router must know whether a prompt fits an endpoint's context before it picks one,
and tokenizers differ per model. About four characters make a token in English text;
images and files count a fixed amount. Providers report exact counts afterwards.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
MEDIA_TOKENS = 1000


def _content_chars(content: Any) -> tuple[int, int]:
    if isinstance(content, str):
        return len(content), 0
    chars = media = 0
    for part in content or []:
        if isinstance(part, dict) and part.get("type") == "text":
            chars += len(part.get("text") or "")
        else:
            media += 1
    return chars, media


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    chars = media = 0
    messages = body.get("messages") or []
    for message in messages:
        c, m = _content_chars(message.get("content"))
        chars, media = chars + c, media + m
        for call in message.get("tool_calls") or []:
            chars += len(str(call.get("function", {}).get("arguments", "")))
    for tool in body.get("tools") or []:
        chars += len(str(tool))
    return -(-chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(messages) + MEDIA_TOKENS * media


def estimate_text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN) if text else 0
