"""A request's routing plan: every endpoint it may try, in order, across its models.

The order follows `routing.ordering`: the request's provider preferences, live figures,
and the endpoints' circuits (an endpoint set aside by its circuit goes behind the others).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from crossroads.catalog import Catalog
from crossroads.errors import GatewayError
from crossroads.plugins import NONE, Plugins
from crossroads.plugins.compression import smallest
from crossroads.routing.candidates import eligible_endpoints
from crossroads.routing.ordering import Admission, order_endpoints, sort_preference
from crossroads.routing.tokens import estimate_prompt_tokens
from crossroads.schema.catalog import Endpoint
from crossroads.schema.chat import ChatRequest, ProviderPreferences, SortSpec, request_parameters
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats

# OpenRouter documents at most 3 fallback models (the `fallbacks` of its Anthropic API);
# `models` takes as many.
MAX_MODELS = 3
# At most this many endpoints are tried for one request, across all its models: one
# request never fans out into an unbounded number of upstream calls.
MAX_ATTEMPTS = 10


@dataclass(slots=True)
class Plan:
    endpoints: list[Endpoint]
    requested: list[str]
    prompt_tokens: int  # the estimate; providers report the real count


def _partition(request: ChatRequest, prefs: ProviderPreferences) -> str:
    if isinstance(prefs.sort, SortSpec) and prefs.sort.partition:
        return prefs.sort.partition
    return "none" if request.route == "sort" else "model"


def requested_models(request: ChatRequest) -> list[str]:
    """`model`, then the `models` fallbacks (at most `MAX_MODELS`), each once."""
    fallbacks = request.models or []
    if len(fallbacks) > MAX_MODELS:
        raise GatewayError(
            400,
            f"'models' takes at most {MAX_MODELS} fallback models; this request has "
            f"{len(fallbacks)}",
        )
    names = [request.model] if request.model else []
    for name in fallbacks:
        if name not in names:
            names.append(name)
    if not names:
        raise GatewayError(400, "Request needs a model: set 'model' (or 'models')")
    return names


def _compressed(body: dict[str, Any], plugins: Plugins) -> Callable[[Endpoint], int | None]:
    """For an endpoint whose context compresses prompts, the prompt's smallest estimate
    (what context-compression can bring it down to; computed once, when first asked)."""
    least: list[int] = []

    def tokens(endpoint: Endpoint) -> int | None:
        if not plugins.compresses(endpoint.context_length):
            return None
        if not least:
            least.append(smallest(body, estimate_prompt_tokens))
        return least[0]

    return tokens


def plan_request(
    request: ChatRequest,
    body: dict[str, Any],
    catalog: Catalog,
    stats: LiveStats,
    rng: random.Random,
    *,
    circuits: Circuits,
    reasoning: bool,
    plugins: Plugins = NONE,
) -> Plan:
    """Resolve models, filter their endpoints and order them; raise when none can serve.
    `reasoning`: the request asks the model to reason (resolved once, by the caller).

    The plan holds at most `MAX_ATTEMPTS` endpoints, the first in order. Each endpoint's
    circuit is asked once for the whole plan, whatever the number of models."""
    names = requested_models(request)
    prefs = request.provider or ProviderPreferences()
    prompt_tokens = estimate_prompt_tokens(body)
    parameters = request_parameters(body)
    compressed = _compressed(body, plugins)
    groups: list[tuple[str | None, list[Endpoint]]] = []
    admission = Admission(circuits)
    last_error: GatewayError | None = None
    for name in names:
        try:
            model, variant = catalog.resolve(name)
            if "text" not in model.output_modalities:
                raise GatewayError(
                    400, f"{model.id} does not produce text; it cannot serve chat completions"
                )
            eligible = eligible_endpoints(
                model,
                request,
                parameters,
                prompt_tokens,
                catalog,
                reasoning=reasoning,
                compressed=compressed,
            )
            groups.append((variant, eligible))
        except GatewayError as exc:
            last_error = exc
    if not groups:
        assert last_error is not None
        raise last_error
    if _partition(request, prefs) == "none" and len(groups) > 1:
        variant = groups[0][0]
        merged = [e for _, eps in groups for e in eps]
        if not sort_preference(prefs, variant) and not prefs.order:
            # one global order across models needs a sort; a random draw would mix models
            prefs = msgspec.structs.replace(prefs, sort="price")
        ordered = order_endpoints(merged, prefs, variant, stats, rng, catalog, admission=admission)
    else:
        ordered = [
            e
            for variant, eps in groups
            for e in order_endpoints(eps, prefs, variant, stats, rng, catalog, admission=admission)
        ]
    # one endpoint reached through several names (`acme/trio`, `acme/trio:nitro`) is tried once
    unique: dict[str, Endpoint] = {}
    for e in ordered:
        unique.setdefault(e.id, e)  # the first occurrence keeps its place
    if not unique:
        raise _no_match(names)
    endpoints = list(unique.values())[:MAX_ATTEMPTS]
    return Plan(endpoints=endpoints, requested=names, prompt_tokens=prompt_tokens)


def _no_match(names: list[str]) -> GatewayError:
    """Every endpoint passed the filters, but the provider preferences (`order` without
    fallbacks, `only`) left none to try."""
    return GatewayError(
        404,
        f"No endpoints found matching your provider constraints for {', '.join(names)}",
        metadata={
            "availability": {
                "code": "constraint_filtered",
                "retryable": False,
                "requested_models": names,
                "excluded_by": ["provider"],
                "constraint": {"field": "provider"},
            }
        },
    )
