"""What a generation costs, from its usage and the serving endpoint's prices.

Money is computed in `Decimal` and billed in integer pico-USD (a `Bill`).
Zero-completion insurance: nothing is charged when a response produced no completion
tokens and no finish reason, or ended in an error.

Before a request goes upstream, `worst_case_cost` bounds what `usage_cost` may bill it on
one endpoint (in pico-USD), for admission control.
"""

from __future__ import annotations

import functools
import math
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from crossroads.accounting.money import PICO, Bill
from crossroads.schema.catalog import Endpoint, parse_price

HARD_TOKEN_CAP = 10_000_000
"""No count a provider reports is believed past this, whatever the catalog says."""
RESERVE_PROMPT_MARGIN = 1.2
"""Prompt estimates are approximate: the worst case allows for this many times the estimate."""
_PROMPT_PRICES = ("prompt", "input_cache_read", "input_cache_write")  # what a prompt token bills
_COMPLETION_PRICES = ("completion", "internal_reasoning")  # what a completion token bills


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


def usage_cost(usage: dict[str, Any], endpoint: Endpoint, finish_reason: str | None) -> Bill:
    """What `usage` costs on `endpoint`, in pico-USD: OpenRouter's `usage.cost` and its
    `cost_details` (the prompt's share and the completion's); the total is rounded to the
    pico, and the completion's share is what the prompt's leaves of it."""
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    if insured(usage, finish_reason):
        return Bill()
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
    total = _pico((prompt_cost + completion_cost) * discount)  # rounded once: never past
    prompt_share = min(_pico(prompt_cost * discount), total)  # the worst case's ceiling
    return Bill(prompt=prompt_share, completion=total - prompt_share)


def _pico(usd: Decimal) -> int:
    return int((usd * PICO).to_integral_value(rounding=ROUND_HALF_EVEN))


def reserved_prompt_tokens(prompt_tokens: int) -> int:
    """The most prompt tokens a request estimated at `prompt_tokens` is assumed to bill:
    ceil(estimate x `RESERVE_PROMPT_MARGIN`), computed exactly (5 x 1.2 is 6, not 7)."""
    margin = Decimal(str(RESERVE_PROMPT_MARGIN))
    return math.ceil(Decimal(max(prompt_tokens, 0)) * margin)


def max_output_tokens(endpoint: Endpoint, *, prompt_tokens: int, requested: int | None) -> int:
    """The most completion tokens a request may get from `endpoint`: its own limit
    (`requested`; None or 0 for none), capped by the endpoint's `max_completion_tokens`,
    by what its context leaves after the prompt (at least 1), and by `HARD_TOKEN_CAP`."""
    limit = requested if requested and requested > 0 else HARD_TOKEN_CAP
    if endpoint.max_completion_tokens:
        limit = min(limit, endpoint.max_completion_tokens)
    if endpoint.context_length:
        limit = min(limit, max(endpoint.context_length - max(prompt_tokens, 0), 1))
    return max(min(limit, HARD_TOKEN_CAP), 1)


def billable_output(
    endpoint: Endpoint, *, prompt_tokens: int, requested: int | None, reasoning: bool
) -> int:
    """The most completion tokens (reasoning included) a request may be billed for on
    `endpoint`: what admission reserves for and what the run clamps a reported count to.
    A request that reasons may get more than its own limit (budget-style providers add the
    thinking budget to it), so only the endpoint bounds it."""
    return max_output_tokens(
        endpoint, prompt_tokens=prompt_tokens, requested=None if reasoning else requested
    )


def _worst_price(prices: dict[str, Any], keys: tuple[str, ...]) -> Decimal:
    """The highest of the prices `usage_cost` may apply to one token of a kind (unset ones
    fall back to the first, as there); a negative price counts as 0."""
    return max([Decimal(0), *(_d(prices, key, keys[0]) for key in keys)])


def worst_case_cost(endpoint: Endpoint, *, prompt_tokens: int, max_output: int | None) -> int:
    """The most `usage_cost` may bill a request on `endpoint`, in pico-USD, rounded up.

    `prompt_tokens` is the estimate: the prompt may bill up to `reserved_prompt_tokens` of
    it (never past the context, as the run clamps reported counts), each at the highest of
    its prompt, cache-read and cache-write prices. `max_output` is the request's completion
    limit (None: none), capped as `max_output_tokens` does; each output token at the higher
    of the completion and internal-reasoning prices. Plus the request price; times
    (1 - discount). Prices follow `overrides` by prompt size, so every prompt size where a
    rule starts to apply is weighed and the dearest taken."""
    output = max_output_tokens(endpoint, prompt_tokens=prompt_tokens, requested=max_output)
    prompt_cap = min(endpoint.context_length or HARD_TOKEN_CAP, HARD_TOKEN_CAP)
    most = min(reserved_prompt_tokens(prompt_tokens), prompt_cap)
    # the largest prompt of each price regime: `most`, and each rule's threshold below it
    # (a rule applies to prompts above its `min_prompt_tokens`)
    sizes = {most}
    for rule in endpoint.pricing.get("overrides") or []:
        if isinstance(rule, dict):
            threshold = int(rule.get("min_prompt_tokens") or 0)
            if 0 <= threshold < most:
                sizes.add(threshold)
    worst = Decimal(0)
    plain = _plain_pricing(endpoint.pricing)
    with localcontext() as context:
        context.prec = 80  # exact: prices have few digits, counts at most 8
        for size in sizes:
            if plain is not None:  # no overrides: the unit prices, read once per pricing
                prompt, request, completion, factor = _unit_prices(plain)
            else:
                prompt, request, completion, factor = _units(_override_prices(endpoint, size))
            cost = (size * prompt + request + output * completion) * factor
            worst = max(worst, cost)
        return int((worst * PICO).to_integral_value(rounding=ROUND_CEILING))


_Units = tuple[Decimal, Decimal, Decimal, Decimal]


def _units(prices: dict[str, Any]) -> _Units:
    """The dearest prompt token, the request price, the dearest completion token, and
    what is left after the discount."""
    return (
        _worst_price(prices, _PROMPT_PRICES),
        max(_d(prices, "request"), Decimal(0)),
        _worst_price(prices, _COMPLETION_PRICES),
        Decimal(1) - _d(prices, "discount"),
    )


def _plain_pricing(pricing: dict[str, Any]) -> tuple[tuple[str, Any], ...] | None:
    """A pricing without `overrides` as a hashable key (None for one with overrides, or a
    value that is not a plain price)."""
    if "overrides" in pricing:
        return None
    items = tuple(sorted(pricing.items()))
    return items if all(isinstance(v, str | int | float | None) for _, v in items) else None


@functools.lru_cache(maxsize=4096)
def _unit_prices(pricing: tuple[tuple[str, Any], ...]) -> _Units:
    """`_units` of a plain pricing, remembered: admission asks for it on every request."""
    with localcontext() as context:
        context.prec = 80
        return _units(dict(pricing))
