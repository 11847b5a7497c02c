"""What a refused request is told: the limit that said no, in OpenRouter's words, with its
status (402 for money, 429 for a rate) and, for a rate, its headers."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from crossroads.accounting.money import to_usd
from crossroads.errors import GatewayError
from crossroads.limits.counters import Check, Result
from crossroads.limits.values import FreeTier, WorstCase


def _usd(pico: int) -> str:
    return f"${to_usd(pico):.6f}".rstrip("0").rstrip(".")


def refusal(
    label: str,
    check: Check,
    result: Result,
    *,
    limit_reset: str | None,
    prompt_tokens: int,
    worst: WorstCase | None,
    free: FreeTier,
    at: datetime,
) -> GatewayError:
    """The error a failed check answers: 429 for a rate, 402 for money (`worst` is
    known then: a money check needs it)."""
    used = sum(result.values.get(c, 0) for c in check.counters)
    if check.holds:
        used += result.values.get(check.holds, 0)
    if label in ("key-limit", "balance"):
        worst = worst or WorstCase(cost=check.amount, max_output=0)
        left = max(0, check.cap - used)
        wants = (
            f"this request may cost up to {_usd(worst.cost)} "
            f"({prompt_tokens} prompt tokens, up to {worst.max_output} output tokens)"
        )
        if label == "key-limit":
            period = f"{limit_reset} " if limit_reset else ""
            message = (
                f"Key limit exceeded: {wants}, and this key has {_usd(left)} left of its "
                f"{period}limit of {_usd(check.cap)}. "
                "Lower max_tokens or raise the key's limit."
            )
        elif check.cap - used < 0 or worst.cost == 0:
            message = "Insufficient credits: the account balance is negative. Add credits."
        else:
            message = (
                f"Insufficient credits: {wants}, and the account has {_usd(left)}. "
                "Add credits (`crossroads credits add`) or lower max_tokens."
            )
        return GatewayError(402, message, metadata={"limit": label})
    if label == "free-per-day":
        tomorrow = at.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        reset = tomorrow.timestamp()
        more = ""
        if check.cap < free.per_day_with_credits:
            more = (
                f"; once {_usd(free.credits_threshold)} of credits were added, the "
                f"account may make {free.per_day_with_credits} a day"
            )
        message = (
            f"Rate limit exceeded: free-models-per-day. This account may make {check.cap} "
            f"requests a day to free model variants (:free){more}."
        )
    else:
        reset = (math.floor(at.timestamp() / 60) + 1) * 60.0
        what = {
            "free-per-minute": f"{check.cap} requests a minute to free model variants "
            "(:free), per key",
            "requests-per-minute": f"{check.cap} requests a minute with this key",
            "tokens-per-minute": f"{check.cap} tokens a minute with this key (this request "
            f"counts {check.amount})",
        }[label]
        name = {"free-per-minute": "free-models-per-min"}.get(label, label)
        message = f"Rate limit exceeded: {name}. The limit is {what}."
    retry = max(1, math.ceil(reset - at.timestamp()))
    return GatewayError(
        429,
        message,
        metadata={"limit": label},
        headers={
            "Retry-After": str(retry),
            "X-RateLimit-Limit": str(check.cap),
            "X-RateLimit-Remaining": str(max(0, check.cap - used)),
            "X-RateLimit-Reset": str(int(reset * 1000)),
        },
    )
