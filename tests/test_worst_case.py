"""The worst-case cost of a request on one endpoint, in pico-USD: what admission holds.

Prices are USD per token, as in the catalog. `usage_cost` is what a finished request bills;
the worst case must never be below it for usage within the request's bounds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossroads.accounting import billing
from crossroads.accounting.pricing import (
    HARD_TOKEN_CAP,
    RESERVE_PROMPT_MARGIN,
    max_output_tokens,
    reserved_prompt_tokens,
    usage_cost,
    worst_case_cost,
)
from crossroads.schema.catalog import Endpoint

MICRO = 10**6  # pico-USD in one micro-USD: a price of 1e-6 USD per token is 10**6 pico


def ep(prompt: str = "0.000001", completion: str = "0.000002", **fields: Any) -> Endpoint:
    pricing = {"prompt": prompt, "completion": completion, **fields.pop("pricing", {})}
    return Endpoint(provider="alpha", tag="alpha", model_id="acme/m", pricing=pricing, **fields)


def test_the_hard_cap_is_the_routing_one_and_the_margin_is_exact() -> None:
    assert billing.HARD_TOKEN_CAP is HARD_TOKEN_CAP == 10_000_000  # the clamp bills by it
    assert RESERVE_PROMPT_MARGIN == 1.2
    assert reserved_prompt_tokens(5) == 6  # 5 * 1.2 in floats is 6.000000000000001
    assert reserved_prompt_tokens(1000) == 1200
    assert reserved_prompt_tokens(1) == 2  # rounded up
    assert reserved_prompt_tokens(0) == 0


def test_max_output_is_the_request_limit_capped_by_the_endpoint() -> None:
    e = ep(max_completion_tokens=4096, context_length=8192)
    assert max_output_tokens(e, prompt_tokens=100, requested=None) == 4096
    assert max_output_tokens(e, prompt_tokens=100, requested=500) == 500
    assert max_output_tokens(e, prompt_tokens=100, requested=10_000) == 4096
    assert max_output_tokens(e, prompt_tokens=6000, requested=None) == 2192  # context left
    assert max_output_tokens(e, prompt_tokens=9000, requested=None) == 1  # at least 1
    # no limits anywhere: the hard cap
    assert max_output_tokens(ep(), prompt_tokens=100, requested=None) == HARD_TOKEN_CAP
    assert max_output_tokens(ep(), prompt_tokens=100, requested=10**9) == HARD_TOKEN_CAP
    assert max_output_tokens(ep(context_length=1000), prompt_tokens=10, requested=None) == 990


def test_worst_case_is_exact_and_rounded_up() -> None:
    e = ep("0.000001", "0.000002", max_completion_tokens=4096, context_length=100_000)
    # 1200 prompt tokens at 1e-6, 300 output tokens at 2e-6
    assert worst_case_cost(e, prompt_tokens=1000, max_output=300) == 1200 * MICRO + 600 * MICRO
    # no request limit: the endpoint's 4096
    assert worst_case_cost(e, prompt_tokens=1000, max_output=None) == (1200 + 2 * 4096) * MICRO
    # a fraction of a pico is rounded up: 2 tokens x 0.1 pico
    tiny = ep("0.0000000000001", "0")
    assert worst_case_cost(tiny, prompt_tokens=1, max_output=1) == 1
    assert worst_case_cost(ep("0", "0"), prompt_tokens=10_000, max_output=None) == 0


def test_missing_limits_reserve_for_the_hard_cap() -> None:
    e = ep("0", "0.000001")
    assert worst_case_cost(e, prompt_tokens=10, max_output=None) == HARD_TOKEN_CAP * MICRO
    # a context length bounds both the output and the prompt
    small = ep("0.000001", "0.000001", context_length=1000)
    assert worst_case_cost(small, prompt_tokens=900, max_output=None) == (1000 + 100) * MICRO


def test_request_price_discount_and_reasoning_price() -> None:
    e = ep(pricing={"request": "0.001"})
    assert worst_case_cost(e, prompt_tokens=1000, max_output=100) == (
        1200 * MICRO + 200 * MICRO + 10**9
    )
    e = ep(pricing={"discount": "0.25"})
    assert worst_case_cost(e, prompt_tokens=1000, max_output=100) == (1200 + 200) * MICRO * 3 // 4
    # reasoning dearer than completion: every output token may be reasoning
    e = ep(pricing={"internal_reasoning": "0.00001"})
    assert worst_case_cost(e, prompt_tokens=1000, max_output=100) == (1200 + 1000) * MICRO
    # cheaper reasoning does not lower the worst case
    e = ep(pricing={"internal_reasoning": "0.0000001"})
    assert worst_case_cost(e, prompt_tokens=1000, max_output=100) == (1200 + 200) * MICRO
    # writing the cache may cost more than a plain prompt token
    e = ep(pricing={"input_cache_write": "0.0000015", "input_cache_read": "0.0000001"})
    assert worst_case_cost(e, prompt_tokens=1000, max_output=100) == (1800 + 200) * MICRO
    # a negative price (variable pricing) is not a credit
    e = ep("-1", "-1", pricing={"request": "-1"})
    assert worst_case_cost(e, prompt_tokens=1000, max_output=100) == 0


def test_overrides_apply_for_the_prompt_the_margin_allows() -> None:
    rule = {"min_prompt_tokens": 200_000, "prompt": "0.000004", "completion": "0.000008"}
    e = ep(pricing={"overrides": [rule]})
    assert worst_case_cost(e, prompt_tokens=1000, max_output=10) == (1200 + 20) * MICRO
    # 180,000 estimated: up to 216,000 may bill, past the threshold, at the long-prompt prices
    assert worst_case_cost(e, prompt_tokens=180_000, max_output=10) == (216_000 * 4 + 80) * MICRO
    # a rule that makes long prompts cheaper: the dearest prompt is just under its threshold
    cheaper = ep(pricing={"overrides": [{"min_prompt_tokens": 1000, "prompt": "0.0000001"}]})
    assert worst_case_cost(cheaper, prompt_tokens=1000, max_output=10) == (
        max(1000 * MICRO, 1200 * MICRO // 10) + 20 * MICRO
    )
    # a rule may change the discount too
    discounted = ep(pricing={"overrides": [{"min_prompt_tokens": 100, "discount": "0.5"}]})
    assert worst_case_cost(discounted, prompt_tokens=1000, max_output=10) == max(
        100 * MICRO + 20 * MICRO, (1200 + 20) * MICRO // 2
    )


# Property: for any usage `usage_cost` may bill within the request's bounds, the bill never
# exceeds the worst case. Prices are whole pico-USD per token (as catalog prices are) up to
# 20 micro-USD, so every bill stays below 1,000 USD and its float is read back exactly.
price = st.integers(0, 20 * MICRO).map(lambda n: f"{Decimal(n).scaleb(-12):f}")
maybe_price = st.none() | price
discount = st.sampled_from([None, "0", "0.1", "0.25", "0.5", "1"])


@st.composite
def endpoints(draw: st.DrawFn) -> Endpoint:
    pricing: dict[str, Any] = {"prompt": draw(price), "completion": draw(price)}
    for key in ("input_cache_read", "input_cache_write", "internal_reasoning", "request"):
        if (value := draw(maybe_price)) is not None:
            pricing[key] = value
    if (d := draw(discount)) is not None:
        pricing["discount"] = d
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        rule: dict[str, Any] = {"min_prompt_tokens": draw(st.integers(0, 300_000))}
        for key in ("prompt", "completion", "internal_reasoning", "input_cache_write"):
            if (value := draw(maybe_price)) is not None:
                rule[key] = value
        if (d := draw(discount)) is not None:
            rule["discount"] = d
        rules.append(rule)
    if rules:
        pricing["overrides"] = rules
    return ep(
        pricing=pricing,
        context_length=draw(st.none() | st.integers(1, 400_000)),
        max_completion_tokens=draw(st.none() | st.integers(1, 100_000)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=endpoints(),
    estimate=st.integers(0, 300_000),
    requested=st.none() | st.integers(1, 200_000),
    shares=st.tuples(*[st.floats(0, 1)] * 5),
    finish=st.sampled_from(["stop", "length", None]),
)
def test_no_bill_exceeds_the_worst_case(
    endpoint: Endpoint,
    estimate: int,
    requested: int | None,
    shares: tuple[float, float, float, float, float],
    finish: str | None,
) -> None:
    worst = worst_case_cost(endpoint, prompt_tokens=estimate, max_output=requested)
    output = max_output_tokens(endpoint, prompt_tokens=estimate, requested=requested)
    most_prompt = reserved_prompt_tokens(estimate)
    if endpoint.context_length:  # the run clamps a reported prompt to the context
        most_prompt = min(most_prompt, endpoint.context_length)
    prompt = round(most_prompt * shares[0])
    cached = round(prompt * shares[1])
    written = round((prompt - cached) * shares[2])
    completion = round(output * shares[3])
    reasoning = round(completion * shares[4])
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    assert usage_cost(usage, endpoint, finish).total <= worst
    # the extremes: the whole prompt and the whole output, all cache writes or all reasoning
    for details in (
        ({"cached_tokens": 0}, {"reasoning_tokens": 0}),
        ({"cache_write_tokens": most_prompt}, {"reasoning_tokens": output}),
    ):
        full = {
            "prompt_tokens": most_prompt,
            "completion_tokens": output,
            "prompt_tokens_details": details[0],
            "completion_tokens_details": details[1],
        }
        assert usage_cost(full, endpoint, "stop").total <= worst


@pytest.mark.parametrize("estimate", [0, 1, 999, 200_000])
def test_the_worst_case_is_reached(estimate: int) -> None:
    """Not a loose bound: a usage at the limits bills the worst case, to the pico."""
    e = ep("0.000003", "0.000015", pricing={"request": "0.0002"}, max_completion_tokens=8192)
    most = reserved_prompt_tokens(estimate)
    usage = {"prompt_tokens": most, "completion_tokens": 8192}
    assert usage_cost(usage, e, "stop").total == worst_case_cost(
        e, prompt_tokens=estimate, max_output=None
    )
