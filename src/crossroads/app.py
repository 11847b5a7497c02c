"""create_app(settings): the ASGI application, with everything built per app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api import api_routes, inference_handlers
from crossroads.api.fastpath import InferencePaths
from crossroads.api.health import DatabaseCheck
from crossroads.api.http import render_error
from crossroads.api.observe import Observe
from crossroads.errors import GatewayError
from crossroads.gateway import Gateway
from crossroads.settings import Settings
from crossroads.web import Pages, web_routes

# Every error a client sees is rendered by `render_error`: a route raises `GatewayError`,
# Starlette raises `HTTPException` (404 for an unknown path, 405 for a wrong method),
# `api/fastpath.py` renders the inference routes' own GatewayErrors the same way, and
# anything else is a 500, rendered by the `Observe` middleware (so it carries the overhead
# header too) before the exception goes on to the server's log.


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return render_error(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return render_error(request, GatewayError(exc.status_code, exc.detail or "Error"))


def create_app(settings: Settings, gateway: Gateway | None = None) -> Starlette:
    gateway = gateway or Gateway.build(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        app.state.on_started(gateway)
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=[*api_routes(), *web_routes()],  # the API's routes first: they always win
        lifespan=lifespan,
        middleware=[
            Middleware(Observe, gateway=gateway),  # overhead header, access log, span
            Middleware(InferencePaths, handlers=inference_handlers()),  # no router for these
        ],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
        },
    )
    app.state.gateway = gateway
    app.state.pages = Pages()  # the website's templates
    app.state.database_check = DatabaseCheck()  # /health's, shared by its callers
    app.state.on_started = lambda gw: None
    return app
