"""The website: server-rendered pages beside the API, in the same process.

`web_routes()` is appended by `create_app` AFTER the API's routes, so `/api/v1`, `/v1`,
`/health` and `/metrics` always win. Pages read the gateway's in-memory data (catalog,
live statistics, circuits, usage rollups) like the API does; templates and static files
are package data (`templates/`, `static/`), nothing is fetched at run time.

Order matters below: fixed paths first, then the model pages' `/{author}/{...}` pattern,
then `UnknownPage`, which answers a GET of an unknown page with the HTML 404 page (other
methods still get the API's JSON 404, or its 405).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount, NoMatchFound, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from crossroads.web import home
from crossroads.web.interactive import interactive_routes
from crossroads.web.listing import listing_routes
from crossroads.web.model_page import model_routes
from crossroads.web.templating import Pages, not_found, render
from crossroads.web.urls import is_api_path

__all__ = ["Pages", "render", "web_routes"]


class UnknownPage(BaseRoute):
    """The last route: a GET or HEAD of a path no other route took is answered with the
    HTML 404 page. Any other method matches nothing here, so the router answers as it
    would without the website (405 when a route has the path, else the API's JSON 404)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and not is_api_path(scope.get("path", ""))
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = not_found(Request(scope, receive))
        await response(scope, receive, send)


def web_routes() -> list[BaseRoute]:
    """The website's routes: static files, pages, and the HTML 404 catch-all (last)."""
    static = StaticFiles(packages=[("crossroads.web", "static")])
    return [
        Mount("/static", app=static, name="static"),
        Route("/", home.home, methods=["GET"]),
        Route("/docs", home.docs, methods=["GET"]),
        Route("/favicon.ico", home.favicon, methods=["GET"]),
        *interactive_routes(),
        *listing_routes(),
        *model_routes(),  # `/{author}/...`: after every literal path
        UnknownPage(),
    ]
