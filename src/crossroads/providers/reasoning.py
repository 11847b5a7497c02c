"""OpenRouter's `reasoning` request, resolved once, and its mapping to each provider's control.

`reasoning: {effort | max_tokens, exclude, enabled}` plus the legacy `include_reasoning`
and `reasoning_effort` become one `ReasoningSpec`. Providers that take a token budget get
`max_tokens x ratio(effort)`; providers that take an effort get the effort whose ratio
is nearest to `budget / max_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EFFORT_RATIOS = {
    "max": 0.95,
    "xhigh": 0.95,
    "high": 0.80,
    "medium": 0.50,
    "low": 0.20,
    "minimal": 0.10,
}
ANTHROPIC_MIN_BUDGET = 1024
ANTHROPIC_MAX_BUDGET = 128_000


@dataclass(frozen=True, slots=True)
class ReasoningSpec:
    enabled: bool
    effort: str | None = None
    max_tokens: int | None = None
    exclude: bool = False

    def budget(self, completion_limit: int) -> int:
        """Thinking tokens for a budget-style provider, given the completion limit."""
        if self.max_tokens:
            return self.max_tokens
        return int(completion_limit * EFFORT_RATIOS.get(self.effort or "medium", 0.5))

    def effort_for(self, completion_limit: int | None) -> str:
        """An effort for effort-style providers; a budget maps to the nearest ratio."""
        if self.effort and self.effort != "none":
            return self.effort
        if self.max_tokens and completion_limit:
            ratio = self.max_tokens / completion_limit
            return min(
                ("high", "medium", "low", "minimal"), key=lambda e: abs(EFFORT_RATIOS[e] - ratio)
            )
        return "medium"


def resolve_reasoning(body: dict[str, Any]) -> ReasoningSpec | None:
    """The request's reasoning wishes, or None when it expresses none."""
    config = body.get("reasoning")
    effort = body.get("reasoning_effort")
    include = body.get("include_reasoning")
    if not isinstance(config, dict):
        config = {}
    if not config and effort is None and include is None:
        return None
    effort = config.get("effort") or effort
    max_tokens = config.get("max_tokens")
    exclude = bool(config.get("exclude")) or include is False
    enabled = config.get("enabled")
    if enabled is None:
        enabled = effort != "none" and (
            bool(effort) or bool(max_tokens) or bool(config) or include is not None
        )
    if effort == "none":
        enabled = False
    return ReasoningSpec(
        enabled=bool(enabled),
        effort=effort if effort != "none" else None,
        max_tokens=max_tokens,
        exclude=exclude,
    )


def strip_reasoning(message: dict[str, Any]) -> None:
    """`reasoning.exclude`: the model reasons, the client does not see it."""
    message.pop("reasoning", None)
    message.pop("reasoning_details", None)
