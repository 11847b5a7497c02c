"""The inference routes without the router: a POST to one goes straight to its handler.

Starlette's router matches every route in turn (Mount, then Route, each a regex) and wraps
each handler in its exception middleware; the inference routes are the request path that
counts, so this pure ASGI middleware, inside `Observe`, dispatches them by a dict lookup
on the exact path. It renders a `GatewayError` with the one renderer
(`api.http.render_error`), as app.py's handler does; anything else goes on to `Observe`,
which renders the 500. Every other request (and a trailing slash, a wrong method) goes
on to the router as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from crossroads.api.http import render_error
from crossroads.errors import GatewayError

Handler = Callable[[Request], Awaitable[ASGIApp]]  # a Response, or an SSEStream


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """What `scope["route"]` holds for a dispatched request (its span's `http.route`)."""

    path: str


class InferencePaths:
    def __init__(self, app: ASGIApp, *, handlers: Mapping[str, Handler]) -> None:
        self.app = app
        self.handlers = {path: (handler, DirectRoute(path)) for path, handler in handlers.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self.handlers.get(scope["path"])
            if found is not None:
                handler, scope["route"] = found
                request = Request(scope, receive, send)
                try:
                    response = await handler(request)
                except GatewayError as error:
                    response = render_error(request, error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
