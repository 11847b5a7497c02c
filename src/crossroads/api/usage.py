"""Token counts the dialects read from the router's (OpenAI-shaped) usage."""

from __future__ import annotations

from typing import Any

from crossroads.routing.tokens import estimate_text_tokens


def count(value: Any) -> int:
    """A token count, or 0 when it is missing or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def reasoning_tokens(chat_usage: dict[str, Any], reasoning_text: str) -> int:
    """The reasoning tokens of a completion.

    The provider's count when it reported one (`completion_tokens_details.reasoning_tokens`).
    When it reported none (or 0) but reasoning text came back, an ESTIMATE from that text
    (about four characters a token), never more than the output tokens: many providers
    (OpenAI-compatible servers, Anthropic) do not count reasoning apart. 0 without reasoning.
    """
    details = chat_usage.get("completion_tokens_details")
    reported = count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    if reported or not reasoning_text:
        return reported
    estimate = estimate_text_tokens(reasoning_text)
    output = count(chat_usage.get("completion_tokens"))
    return min(estimate, output) if output else estimate
