"""Which endpoints of a model may serve a request: OpenRouter's hard filters.

Each filter removes endpoints and says why, so that a request nothing can serve gets
an error naming the filter that left nothing (`excluded_by`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crossroads.catalog import Catalog, Model
from crossroads.errors import GatewayError
from crossroads.schema.catalog import Endpoint
from crossroads.schema.chat import ChatRequest, ProviderPreferences

# `fp4` includes mxfp4 and nvfp4; `fp8` includes mxfp8 (OpenRouter's quantization levels).
_QUANT_FAMILIES = {"fp4": {"fp4", "mxfp4", "nvfp4"}, "fp8": {"fp8", "mxfp8"}}
# Parameters endpoints are preferred for even without require_parameters, in this order;
# `reasoning` when the request asks the model to reason.
SOFT_PARAMETERS = ("tools", "response_format", "verbosity")
# The request fields of reasoning; an endpoint that lists any of them takes all of them.
_REASONING = ("reasoning", "include_reasoning", "reasoning_effort")
# `provider.max_price` fields; each names the endpoint price it limits.
_MAX_PRICE_FIELDS = ("prompt", "completion", "request", "image", "audio")
_PER_MILLION = {"prompt", "completion", "audio"}  # limits per million tokens; prices are per token


def provider_matches(endpoint: Endpoint, name: str, catalog: Catalog) -> bool:
    """A slug, a tag or a display name; a base slug matches all of a provider's endpoints."""
    wanted = name.strip().lower()
    return wanted in (
        endpoint.tag.lower(),
        endpoint.provider.lower(),
        endpoint.provider_name.lower(),
    ) or (wanted == catalog.providers[endpoint.provider].name.lower())


def _quantization_ok(endpoint: Endpoint, wanted: list[str]) -> bool:
    allowed = set()
    for q in wanted:
        allowed |= _QUANT_FAMILIES.get(q.lower(), {q.lower()})
    return (endpoint.quantization or "unknown").lower() in allowed


def _price_limit(value: Any, field: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise GatewayError(400, f"provider.max_price.{field} must be a number") from None


def _within_max_price(endpoint: Endpoint, prefs: ProviderPreferences) -> bool:
    limits = prefs.max_price
    for field in _MAX_PRICE_FIELDS:
        limit = getattr(limits, field)
        if limit is None:
            continue
        price = float(endpoint.price(field))
        if field in _PER_MILLION:
            price *= 1_000_000
        if price > _price_limit(limit, field) + 1e-12:
            return False
    return True


def privacy_ok(endpoint: Endpoint, catalog: Catalog, *, zdr: bool) -> bool:
    policy = catalog.providers[endpoint.provider].data_policy
    if policy is None:  # an unknown policy cannot satisfy a privacy requirement
        return False
    return policy.zdr if zdr else not policy.training and not policy.retains_prompts


def _fits(endpoint: Endpoint, prompt_tokens: int, completion: int | None) -> bool:
    if endpoint.max_prompt_tokens and prompt_tokens > endpoint.max_prompt_tokens:
        return False
    if (
        completion
        and endpoint.max_completion_tokens
        and completion > endpoint.max_completion_tokens
    ):
        return False
    return (
        not endpoint.context_length or prompt_tokens + (completion or 0) <= endpoint.context_length
    )


def _supports(endpoint: Endpoint, parameter: str) -> bool:
    supported = endpoint.supported_parameters
    if supported is None or parameter in supported:
        return True
    if parameter == "response_format":  # json_schema support may be declared either way
        return "structured_outputs" in supported
    if parameter in ("max_tokens", "max_completion_tokens"):
        return "max_tokens" in supported or "max_completion_tokens" in supported
    if parameter in _REASONING:
        return any(p in supported for p in _REASONING)
    return False


def _soft_preferences(parameters: set[str], *, reasoning: bool) -> list[str]:
    wanted = [p for p in SOFT_PARAMETERS if p in parameters]
    return [*wanted, "reasoning"] if reasoning else wanted


def eligible_endpoints(
    model: Model,
    request: ChatRequest,
    parameters: set[str],
    prompt_tokens: int,
    catalog: Catalog,
    *,
    reasoning: bool,
    compressed: Callable[[Endpoint], int | None] | None = None,
) -> list[Endpoint]:
    """The endpoints that may serve `request`, or a GatewayError naming the filter;
    `reasoning`: the request asks the model to reason (those that can come first);
    `compressed`: the prompt's tokens once compressed for an endpoint (None: it is not)."""
    prefs = request.provider or ProviderPreferences()
    completion = request.completion_limit
    filters: list[tuple[str, Callable[[Endpoint], bool]]] = [
        ("unavailable", lambda e: catalog.providers[e.provider].usable),
    ]
    only, ignore, quantizations = prefs.only, prefs.ignore, prefs.quantizations
    if only:
        filters.append(
            ("allowed_providers", lambda e: any(provider_matches(e, p, catalog) for p in only))
        )
    if ignore:
        filters.append(
            (
                "ignored_providers",
                lambda e: not any(provider_matches(e, p, catalog) for p in ignore),
            )
        )
    if quantizations:
        filters.append(("quantization", lambda e: _quantization_ok(e, quantizations)))
    if prefs.zdr:
        filters.append(("data_policy:zdr", lambda e: privacy_ok(e, catalog, zdr=True)))
    if prefs.data_collection == "deny":
        filters.append(("data_policy:training", lambda e: privacy_ok(e, catalog, zdr=False)))
    if prefs.max_price is not None:
        filters.append(("max_price", lambda e: _within_max_price(e, prefs)))

    def fits(e: Endpoint) -> bool:
        if _fits(e, prompt_tokens, completion):
            return True
        shrunk = compressed(e) if compressed is not None else None
        return shrunk is not None and _fits(e, shrunk, completion)

    filters.append(("context_length", fits))
    if prefs.require_parameters:
        filters.append(("require_parameters", lambda e: all(_supports(e, p) for p in parameters)))

    endpoints = list(model.endpoints)
    if not endpoints:
        raise _unavailable(model, "no_endpoints", f"No endpoints found for {model.id}", [])
    excluded: list[str] = []
    for name, keep in filters:
        kept = [e for e in endpoints if keep(e)]
        if len(kept) < len(endpoints):
            excluded.append(name)
        if not kept:
            raise _filtered(model, catalog, name, excluded, prompt_tokens, completion)
        endpoints = kept
    for parameter in _soft_preferences(parameters, reasoning=reasoning):
        preferred = [e for e in endpoints if _supports(e, parameter)]
        endpoints = preferred or endpoints
    return endpoints


def _unavailable(
    model: Model, code: str, message: str, excluded: list[str], **extra: Any
) -> GatewayError:
    availability = {
        "code": code,
        "retryable": False,
        "requested_models": [model.id],
        "excluded_by": excluded,
        **extra,
    }
    return GatewayError(404, message, metadata={"availability": availability})


def _filtered(
    model: Model,
    catalog: Catalog,
    name: str,
    excluded: list[str],
    prompt: int,
    completion: int | None,
) -> GatewayError:
    if name == "context_length":
        limit = max((e.context_length or 0) for e in model.endpoints)
        message = (
            f"This request needs about {prompt + (completion or 0)} tokens "
            f"({prompt} in the prompt, {completion or 0} for the completion) "
            f"but {model.id} can take at most {limit}. "
            "Shorten the prompt or lower max_tokens."
        )
        return GatewayError(
            400,
            message,
            error_type="context_length_exceeded",
            metadata={
                "availability": {
                    "code": "constraint_filtered",
                    "excluded_by": excluded,
                    "constraint": {"field": "context_length"},
                    "requested_models": [model.id],
                    "retryable": False,
                }
            },
        )
    if name == "unavailable":
        reasons = sorted(
            {
                f"{e.provider}: {catalog.providers[e.provider].unusable_reason}"
                for e in model.endpoints
            }
        )
        return _unavailable(
            model,
            "no_endpoints",
            f"No usable provider serves {model.id} here ({'; '.join(reasons)})",
            excluded,
        )
    return _unavailable(
        model,
        "constraint_filtered",
        f"No endpoints found for {model.id} that satisfy your '{name}' provider preference",
        excluded,
        constraint={"field": name},
    )


__all__ = ["SOFT_PARAMETERS", "eligible_endpoints", "provider_matches"]
