"""What a request may cost at most: the worst case over its plan's endpoints."""

from __future__ import annotations

from collections.abc import Sequence

from crossroads.accounting.pricing import max_output_tokens, worst_case_cost
from crossroads.limits.policy import Demand
from crossroads.schema.catalog import Endpoint


def demand_for(
    endpoints: Sequence[Endpoint],
    *,
    prompt_tokens: int,
    requested_output: int | None,
    model: str,
) -> Demand:
    """The most any of `endpoints` may bill for this request (any of them may serve it, as a
    fallback), with the prompt estimate and the output that worst case allows for."""
    worst, output = 0, 0
    for endpoint in endpoints:
        allowed = max_output_tokens(
            endpoint, prompt_tokens=prompt_tokens, requested=requested_output
        )
        cost = worst_case_cost(endpoint, prompt_tokens=prompt_tokens, max_output=allowed)
        if cost >= worst:
            worst, output = cost, allowed
    return Demand(
        worst_case=worst,
        prompt_tokens=prompt_tokens,
        max_output=output,
        free_model=model.endswith(":free"),
    )
