"""Small HTTP helpers shared by the routes: orjson responses, bodies with a size cap, auth."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from crossroads.accounting.keys import ApiKey
from crossroads.errors import GatewayError


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: GatewayError) -> JSON:
    return JSON(error.envelope(), status_code=error.status, headers=error.headers)


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


def authenticate(request: Request, *, management: bool = False, x_api_key: bool = False) -> ApiKey:
    """The caller's key; 401 without a valid one, 403 when it is the wrong kind."""
    token = bearer_token(request, x_api_key=x_api_key)
    if token is None:
        raise GatewayError(401, "Missing Authentication header: send 'Authorization: Bearer <key>'")
    key = request.app.state.gateway.keys.authenticate(token)
    if key is None:
        raise GatewayError(401, "Invalid, disabled or expired API key")
    if management and not key.is_management:
        raise GatewayError(403, "Only management keys can perform this operation")
    if not management and key.is_management:
        raise GatewayError(403, "Management keys cannot call inference endpoints; create an API key with POST /keys")
    return key
