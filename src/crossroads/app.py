"""create_app(settings): the ASGI application, with everything built per app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api import api_routes
from crossroads.api.http import error_response
from crossroads.errors import GatewayError
from crossroads.gateway import Gateway
from crossroads.settings import Settings


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(GatewayError(exc.status_code, exc.detail or "Error"))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(GatewayError(500, "Internal Server Error"))


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
        routes=api_routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.gateway = gateway
    app.state.on_started = lambda gw: None
    return app
