"""Small HTTP helpers shared by the routes: orjson responses, bodies with a size cap, auth,
and the one rendering of a `GatewayError` (see `render_error`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response

from crossroads.accounting.keys import ApiKey
from crossroads.errors import GatewayError
from crossroads.gateway import Gateway

ErrorBody = Callable[[GatewayError], dict[str, Any]]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def render_error(request: Request, error: GatewayError) -> JSON:
    """The response for `error`: its status and headers, and the body the route's dialect
    set as `request.state.error_body` (e.g. Anthropic's on /messages), else OpenRouter's
    envelope. The app's exception handlers all answer through this."""
    error_body: ErrorBody = getattr(request.state, "error_body", GatewayError.envelope)
    return JSON(error_body(error), status_code=error.status, headers=error.headers)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The decoded JSON body; 413 past `max_bytes`, 400 when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise GatewayError(413, f"Request body is larger than {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise GatewayError(413, f"Request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"Request body is not valid JSON: {exc}") from None


def bearer_token(request: Request, *, x_api_key: bool = False) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") if x_api_key else None


KeyKind = Literal["inference", "management", "any"]


def authenticate(
    request: Request, *, kind: KeyKind = "inference", x_api_key: bool = False
) -> ApiKey:
    """The caller's key; 401 without a valid one, 403 when it is not of `kind`.

    `inference` keys call the model routes, `management` keys the /keys routes; `any` (the
    /generation and /key routes) takes either and answers one 401 for a missing or bad key.
    `x_api_key` also accepts Anthropic's `x-api-key` header.
    """
    token = bearer_token(request, x_api_key=x_api_key)
    key = gateway_of(request).keys.authenticate(token) if token else None
    if key is None:
        if kind == "any":
            raise GatewayError(401, "Missing or invalid API key")
        if token is None:
            raise GatewayError(
                401, "Missing Authentication header: send 'Authorization: Bearer <key>'"
            )
        raise GatewayError(401, "Invalid, disabled or expired API key")
    if kind == "management" and not key.is_management:
        raise GatewayError(403, "Only management keys can perform this operation")
    if kind == "inference" and key.is_management:
        raise GatewayError(
            403,
            "Management keys cannot call inference endpoints; create an API key with POST /keys",
        )
    return key
