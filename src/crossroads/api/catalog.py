"""The catalog API: GET /models, /models/count, /model/{author}/{slug},
/models/{author}/{slug}/endpoints, /providers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, gateway_of, parse_query
from crossroads.catalog import Catalog, Model
from crossroads.errors import GatewayError
from crossroads.listing.models import ModelsQuery, filtered_models, sorted_models
from crossroads.schema.catalog import Endpoint
from crossroads.telemetry.stats import LiveStats

_UNSUPPORTED = (
    ("category", "it has no usage data to rank models by use case"),
    ("distillable", "its catalog does not record which models may be distilled"),
    ("region", "its catalog does not record the data region of endpoints"),
    ("min_tool_success_rate", "it does not measure tool-calling success rates"),
    ("max_tool_success_rate", "it does not measure tool-calling success rates"),
)


def _models_query(request: Request) -> ModelsQuery:
    query = parse_query(request.query_params, ModelsQuery)
    for name, why in _UNSUPPORTED:
        if getattr(query, name) is not None:
            raise GatewayError(
                400, f"Query parameter '{name}' is not supported by this server: {why}"
            )
    if (query.use_rss or "").lower() == "true":
        raise GatewayError(
            400, "Query parameter 'use_rss' is not supported by this server: it serves no RSS feed"
        )
    return query


def _next_link(request: Request, offset: int, limit: int) -> str:
    """The next page: the same query with the page moved on."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]
    return "/api/v1/models?" + urlencode([("offset", offset), ("limit", limit), *rest])


async def list_models(request: Request) -> Response:
    query = _models_query(request)
    gateway = gateway_of(request)
    popularity = gateway.rollups.popularity()
    models = sorted_models(
        filtered_models(gateway.catalog, query), query.sort, gateway.stats, popularity
    )
    total = len(models)
    next_link = None
    if query.offset is not None or query.limit is not None:
        start, size = query.offset or 0, query.limit or 500
        models = models[start : start + size]
        if start + size < total:
            next_link = _next_link(request, start + size, size)
    data = [m.info for m in models]
    return JSON({"data": data, "total_count": total, "links": {"next": next_link}})


async def count_models(request: Request) -> Response:
    query = _models_query(request)
    models = filtered_models(gateway_of(request).catalog, query)
    return JSON({"data": {"count": len(models)}})


def _model(request: Request) -> Model:
    params = request.path_params
    model, _ = gateway_of(request).catalog.resolve(f"{params['author']}/{params['slug']}")
    return model


async def get_model(request: Request) -> Response:
    return JSON({"data": _model(request).info})


def public_endpoint(
    model: Model, endpoint: Endpoint, catalog: Catalog, stats: LiveStats
) -> dict[str, Any]:
    """OpenRouter's `PublicEndpoint`, with live figures and whether Crossroads can route to it.

    The spec requires an integer `context_length` and a `prompt` and `completion` price:
    an endpoint configured without them takes the model's context length (0 when neither
    states one: unknown, and the router does not limit it) and the price it is billed at
    (`Endpoint.price`: 0 when unset)."""
    provider = catalog.providers[endpoint.provider]
    params = endpoint.supported_parameters
    tool_choice = params is None or "tool_choice" in params
    return {
        "name": f"{provider.name} | {model.info['canonical_slug']}",
        "model_id": model.info["canonical_slug"],
        "model_name": model.info["name"],
        "context_length": endpoint.context_length or model.info["context_length"] or 0,
        "pricing": {"prompt": "0", "completion": "0", **endpoint.pricing},
        "provider_name": provider.name,
        "tag": endpoint.tag,
        "quantization": endpoint.quantization,
        "max_completion_tokens": endpoint.max_completion_tokens,
        "max_prompt_tokens": endpoint.max_prompt_tokens,
        "supported_parameters": (
            params if params is not None else model.info["supported_parameters"]
        ),
        "status": endpoint.status,
        "uptime_last_5m": stats.uptime(endpoint.id, 300),
        "uptime_last_30m": stats.uptime(endpoint.id, 1800),
        "uptime_last_1d": stats.uptime(endpoint.id, 86400),
        "supports_implicit_caching": endpoint.supports_implicit_caching,
        "supports_tool_choice": {
            "auto": tool_choice,
            "none": tool_choice,
            "required": tool_choice,
            "function": tool_choice,
        },
        "supports_diarization": False,
        "service_tier": None,
        "native_tools": {},
        "latency_last_30m": stats.latency(endpoint.id),
        "throughput_last_30m": stats.throughput(endpoint.id),
        "available": provider.usable,
        "unavailable_reason": provider.unusable_reason,
    }


async def list_endpoints(request: Request) -> Response:
    gateway = gateway_of(request)
    model = _model(request)
    info = model.info
    data = {k: info[k] for k in ("id", "name", "created", "description", "architecture")}
    data["endpoints"] = [
        public_endpoint(model, e, gateway.catalog, gateway.stats) for e in model.endpoints
    ]
    return JSON({"data": data})


async def list_providers(request: Request) -> Response:
    catalog = gateway_of(request).catalog
    rows = []
    for p in catalog.providers.values():
        rows.append(
            {
                "name": p.name,
                "slug": p.slug,
                "privacy_policy_url": p.privacy_policy_url,
                "terms_of_service_url": p.terms_of_service_url,
                "status_page_url": p.status_page_url,
                "headquarters": p.headquarters,
                "datacenters": p.datacenters,
                "api": p.api,
                "usable": p.usable,
                "unusable_reason": p.unusable_reason,
            }
        )
    return JSON({"data": rows})
