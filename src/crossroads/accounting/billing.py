"""Billing one answer: the provider's counts, bounded by what could have happened, priced.

A provider's usage is untrusted: counts it left out are estimated, counts past what the
endpoint and the request allow are clamped (and the clamp noted), and the bill never
exceeds what admission held for the request, so a limit or a balance is never
overdrawn. `usage_object` renders OpenRouter's `usage` from the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossroads.accounting.money import Bill, to_usd
from crossroads.accounting.pricing import HARD_TOKEN_CAP, billable_output, usage_cost
from crossroads.schema.catalog import Endpoint


@dataclass(frozen=True, slots=True)
class Billed:
    """An answer's usage as billed: the counts (OpenRouter's usage fields without cost),
    its `Bill`, and a note when counts were clamped or the cost capped."""

    counts: dict[str, Any]
    bill: Bill
    note: str | None = None

    @property
    def total_tokens(self) -> int:
        return int(self.counts.get("total_tokens") or 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """What a request could have used, known before it went upstream."""

    prompt_estimate: int  # used where the provider reports no prompt count
    requested_output: int | None  # the request's own completion limit
    reasoning: bool  # it reasons: a thinking budget may come on top of its limit
    reserved: int | None = None  # pico-USD admission held against a limit (None: nothing)


def bill_usage(
    reported: dict[str, Any] | None,
    *,
    endpoint: Endpoint,
    bounds: Bounds,
    completion_estimate: int,
    finish_reason: str | None,
) -> Billed:
    """The counts a provider `reported` (None: none), estimated where missing and clamped,
    priced on `endpoint`; `completion_estimate` stands in for a missing completion count."""
    counts = dict(reported or {})
    if counts.get("prompt_tokens") is None:
        counts["prompt_tokens"] = bounds.prompt_estimate
    if counts.get("completion_tokens") is None:
        counts["completion_tokens"] = completion_estimate
    notes = _clamp(counts, endpoint, bounds)
    counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
    bill = usage_cost(counts, endpoint, finish_reason)
    if bounds.reserved is not None and bill.total > bounds.reserved:
        notes.append(f"cost {to_usd(bill.total)} capped at the {to_usd(bounds.reserved)} reserved")
        bill = bill.capped(bounds.reserved)
    return Billed(counts, bill, "; ".join(notes) or None)


def _clamp(counts: dict[str, Any], endpoint: Endpoint, bounds: Bounds) -> list[str]:
    """Bound the counts a provider reported (checked non-negative integers by the
    adapters) by what could have happened: the prompt by the context, the completion by
    the endpoint's and the request's limits, each detail by its total."""
    clamped: list[str] = []

    def bound(holder: dict[str, Any], name: str, cap: int) -> int:
        value = int(holder.get(name) or 0)
        if value > cap:
            clamped.append(f"{name} {value} > {cap}")
            holder[name] = value = cap
        return value

    limits = (endpoint.max_completion_tokens, endpoint.context_length, HARD_TOKEN_CAP)
    hard = min(c for c in limits if c)
    prompt_cap = min(endpoint.context_length or HARD_TOKEN_CAP, HARD_TOKEN_CAP)
    prompt = bound(counts, "prompt_tokens", prompt_cap)
    prompt_details = counts.get("prompt_tokens_details")
    if isinstance(prompt_details, dict):
        prompt_details = counts["prompt_tokens_details"] = dict(prompt_details)
        cached = bound(prompt_details, "cached_tokens", prompt)
        if "cache_write_tokens" in prompt_details:
            bound(prompt_details, "cache_write_tokens", prompt - cached)
    completion_details = counts.get("completion_tokens_details")
    reasoning = 0
    if isinstance(completion_details, dict):
        completion_details = counts["completion_tokens_details"] = dict(completion_details)
        reasoning = bound(completion_details, "reasoning_tokens", hard)
    cap = billable_output(
        endpoint,
        prompt_tokens=prompt,
        requested=bounds.requested_output,
        reasoning=bounds.reasoning,
    )
    completion = bound(counts, "completion_tokens", cap)
    if isinstance(completion_details, dict) and reasoning > completion:
        bound(completion_details, "reasoning_tokens", completion)
    return [f"usage clamped: {', '.join(clamped)}"] if clamped else []


def usage_object(billed: Billed) -> dict[str, Any]:
    """OpenRouter's `usage`: the counts, `cost` and `cost_details` in USD, `is_byok`."""
    bill = billed.bill
    return {
        **billed.counts,
        "cost": to_usd(bill.total),
        "cost_details": {
            "upstream_inference_cost": None,
            "upstream_inference_prompt_cost": to_usd(bill.prompt),
            "upstream_inference_completions_cost": to_usd(bill.completion),
        },
        "is_byok": False,
    }
