"""The catalog API: GET /models, /models/count, /model/{author}/{slug},
/models/{author}/{slug}/endpoints, /providers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, gateway_of
from crossroads.catalog import Catalog, Model
from crossroads.errors import GatewayError
from crossroads.schema.catalog import Endpoint
from crossroads.telemetry.stats import LiveStats


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _filtered_models(catalog: Catalog, params: Any) -> list[Model]:
    outputs = _csv(params.get("output_modalities")) or ["text"]
    inputs = _csv(params.get("input_modalities"))
    wanted_params = _csv(params.get("supported_parameters"))
    query = (params.get("q") or "").lower()
    models = []
    for model in catalog.models.values():
        arch = model.info["architecture"]
        if "all" not in outputs and not set(outputs) & set(arch.get("output_modalities") or []):
            continue
        if inputs and not set(inputs) <= set(arch.get("input_modalities") or []):
            continue
        if wanted_params and not set(wanted_params) <= set(model.info["supported_parameters"]):
            continue
        if query and query not in model.id.lower() and query not in model.info["name"].lower():
            continue
        models.append(model)
    return models


def _int_param(params: Any, name: str, default: int | None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise GatewayError(400, f"'{name}' must be a non-negative integer")
    return int(raw)


async def list_models(request: Request) -> Response:
    models = _filtered_models(gateway_of(request).catalog, request.query_params)
    offset = _int_param(request.query_params, "offset", None)
    limit = _int_param(request.query_params, "limit", None)
    total = len(models)
    next_link = None
    if offset is not None or limit is not None:
        start, size = offset or 0, min(limit or 500, 1000)
        models = models[start : start + size]
        if start + size < total:
            next_link = f"/api/v1/models?offset={start + size}&limit={size}"
    data = [m.info for m in models]
    return JSON({"data": data, "total_count": total, "links": {"next": next_link}})


async def count_models(request: Request) -> Response:
    models = _filtered_models(gateway_of(request).catalog, request.query_params)
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
    """OpenRouter's `PublicEndpoint`, with live figures and whether Crossroads can route to it."""
    provider = catalog.providers[endpoint.provider]
    params = endpoint.supported_parameters
    tool_choice = params is None or "tool_choice" in params
    return {
        "name": f"{provider.name} | {model.info['canonical_slug']}",
        "model_id": model.info["canonical_slug"],
        "model_name": model.info["name"],
        "context_length": endpoint.context_length,
        "pricing": endpoint.pricing,
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
