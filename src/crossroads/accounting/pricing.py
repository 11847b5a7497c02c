"""What a generation costs, from its usage and the serving endpoint's prices.

Money is computed in `Decimal` and reported as a float rounded to 1e-12 USD.
Zero-completion insurance: nothing is charged when a response produced no completion
tokens and no finish reason, or ended in an error.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from crossroads.schema.catalog import Endpoint, parse_price

_QUANTUM = Decimal("1e-12")


def _override_prices(endpoint: Endpoint, prompt_tokens: int) -> dict[str, Any]:
    """Base prices with any `overrides` whose `min_prompt_tokens` the prompt exceeds."""
    prices = dict(endpoint.pricing)
    for rule in endpoint.pricing.get("overrides") or []:
        if isinstance(rule, dict) and prompt_tokens > int(rule.get("min_prompt_tokens") or 0):
            prices.update(
                {
                    k: v
                    for k, v in rule.items()
                    if k != "min_prompt_tokens" and not k.startswith("utc_")
                }
            )
    return prices


def _d(prices: dict[str, Any], key: str, fallback: str | None = None) -> Decimal:
    """The price for `key`, else for `fallback` when `key` is unset, else 0."""
    value = prices.get(key)
    if (value is None or value == "") and fallback:
        value = prices.get(fallback)
    return parse_price(value)


def insured(usage: dict[str, Any], finish_reason: str | None) -> bool:
    """True when zero-completion insurance waives the charge."""
    return finish_reason == "error" or (not usage.get("completion_tokens") and not finish_reason)


def usage_cost(
    usage: dict[str, Any], endpoint: Endpoint, finish_reason: str | None
) -> tuple[float, dict[str, Any]]:
    """(cost, cost_details) in USD for OpenRouter's `usage.cost` and `usage.cost_details`."""
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    prompt_details = usage.get("prompt_tokens_details") or {}
    cached = int(prompt_details.get("cached_tokens") or 0)
    written = int(prompt_details.get("cache_write_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    prices = _override_prices(endpoint, prompt)

    prompt_cost = (
        (prompt - cached - written) * _d(prices, "prompt")
        + cached * _d(prices, "input_cache_read", "prompt")
        + written * _d(prices, "input_cache_write", "prompt")
        + _d(prices, "request")
    )
    reasoning_price = _d(prices, "internal_reasoning", "completion")
    completion_cost = (completion - reasoning) * _d(
        prices, "completion"
    ) + reasoning * reasoning_price
    discount = Decimal(1) - _d(prices, "discount")
    prompt_cost, completion_cost = prompt_cost * discount, completion_cost * discount
    if insured(usage, finish_reason):
        prompt_cost = completion_cost = Decimal(0)
    details = {
        "upstream_inference_cost": None,
        "upstream_inference_prompt_cost": float(prompt_cost.quantize(_QUANTUM)),
        "upstream_inference_completions_cost": float(completion_cost.quantize(_QUANTUM)),
    }
    return float((prompt_cost + completion_cost).quantize(_QUANTUM)), details
