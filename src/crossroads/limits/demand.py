"""What a request asks of the limits; what it may cost at most: the worst case over its
plan's endpoints, computed only when a limit needs it (`Limits.needs_worst_case`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from crossroads.accounting.pricing import billable_output, worst_case_cost
from crossroads.limits.values import Demand, WorstCase
from crossroads.schema.catalog import Endpoint


def demand_for(
    endpoints: Sequence[Endpoint],
    *,
    prompt_tokens: int,
    requested_output: int | None,
    reasoning: bool,
) -> Demand:
    """What this request asks of the limits: its prompt estimate; whether it asks for a free
    variant (any of `endpoints` is one, however the client spelled its name); and, computed
    only when a limit needs it, its worst case over `endpoints` (`worst_case`)."""
    return Demand(
        prompt_tokens=prompt_tokens,
        free_model=any(e.model_id.endswith(":free") for e in endpoints),
        estimate=partial(
            worst_case,
            tuple(endpoints),
            prompt_tokens=prompt_tokens,
            requested_output=requested_output,
            reasoning=reasoning,
        ),
    )


def worst_case(
    endpoints: Sequence[Endpoint],
    *,
    prompt_tokens: int,
    requested_output: int | None,
    reasoning: bool,
) -> WorstCase:
    """The most any of `endpoints` may bill for this request (any of them may serve it, as a
    fallback), with the output that worst case allows for."""
    worst, output = 0, 0
    for endpoint in endpoints:
        allowed = billable_output(
            endpoint, prompt_tokens=prompt_tokens, requested=requested_output, reasoning=reasoning
        )
        cost = worst_case_cost(endpoint, prompt_tokens=prompt_tokens, max_output=allowed)
        if cost >= worst:
            worst, output = cost, allowed
    return WorstCase(cost=worst, max_output=output)
