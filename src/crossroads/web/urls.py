"""Addresses the website links to: model pages and this server's API base URL."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request


def model_href(model_id: str, tab: str | None = None) -> str:
    """The page of a model ("/openai/gpt-oss-120b:free"), or one of its tabs
    ("/openai/gpt-oss-120b:free/providers"; "overview" is the page itself)."""
    href = "/" + quote(model_id, safe="/:@")
    return href if tab in (None, "overview") else f"{href}/{tab}"


def site_base_url(request: Request) -> str:
    """This server's address as the visitor reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def api_base_url(request: Request) -> str:
    """This server's API base URL ("http://host:port/api/v1")."""
    return site_base_url(request) + "/api/v1"


API_PREFIXES = ("/api/", "/v1/")  # the API's own: never a page, its errors stay JSON


def is_api_path(path: str) -> bool:
    """Whether `path` is the API's (under `/api` or `/v1`): no page answers there."""
    return path in ("/api", "/v1") or path.startswith(API_PREFIXES)
