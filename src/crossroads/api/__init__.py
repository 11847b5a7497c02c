"""The HTTP API under /api/v1 (and the /v1 alias), shaped like OpenRouter's."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route

from crossroads.api import (
    accounts,
    catalog,
    chat,
    completions,
    credits,
    generations,
    health,
    metrics,
    openapi,
    stats,
)
from crossroads.api.fastpath import Handler
from crossroads.api.messages import messages
from crossroads.api.responses import responses

PREFIXES = ("/api/v1", "/v1")
# the inference routes (all POST), dispatched by `api.fastpath` and listed in the router too
INFERENCE: dict[str, Handler] = {
    "/chat/completions": chat.chat_completions,
    "/messages": messages,
    "/responses": responses,
    "/completions": completions.completions,
}


def inference_handlers() -> dict[str, Handler]:
    """Every inference path, under each prefix, and its handler."""
    return {prefix + path: handler for prefix in PREFIXES for path, handler in INFERENCE.items()}


def _routes() -> list[BaseRoute]:
    return [
        *(Route(path, handler, methods=["POST"]) for path, handler in INFERENCE.items()),
        Route("/models", catalog.list_models, methods=["GET"]),
        Route("/models/count", catalog.count_models, methods=["GET"]),
        Route("/models/{author}/{slug}/endpoints", catalog.list_endpoints, methods=["GET"]),
        Route("/model/{author}/{slug}", catalog.get_model, methods=["GET"]),
        Route("/providers", catalog.list_providers, methods=["GET"]),
        Route("/stats/endpoints/{author}/{slug}", stats.endpoints, methods=["GET"]),
        Route("/stats/models/{author}/{slug}/daily", stats.model_daily, methods=["GET"]),
        Route("/stats/apps", stats.apps, methods=["GET"]),
        Route("/stats/rankings", stats.rankings, methods=["GET"]),
        Route("/generation", accounts.get_generation, methods=["GET"]),
        Route("/generations", generations.list_generations, methods=["GET"]),
        Route("/key", accounts.current_key, methods=["GET"]),
        Route("/auth/key", accounts.current_key, methods=["GET"]),
        Route("/keys", accounts.list_keys, methods=["GET"]),
        Route("/keys", accounts.create_key, methods=["POST"]),
        Route("/keys/{hash}", accounts.one_key, methods=["GET", "PATCH", "DELETE"]),
        Route("/credits", credits.credits, methods=["GET"]),
        Route("/activity", credits.activity, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_document, methods=["GET"]),
    ]


def api_routes() -> list[BaseRoute]:
    routes = _routes()
    health_route = Route("/health", health.health, methods=["GET"])  # no key; at the root
    live_route = Route("/health/live", health.live, methods=["GET"])
    metrics_route = Route("/metrics", metrics.metrics, methods=["GET"])  # no key; at the root
    return [
        health_route,
        live_route,
        metrics_route,
        *(Mount(prefix, routes=routes) for prefix in PREFIXES),
    ]
