"""Keys and generations: GET /generation, GET /key, and the management routes under /keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, authenticate, bearer_token, error_response, read_json
from crossroads.errors import GatewayError

_RESETS = (None, "daily", "weekly", "monthly")


async def get_generation(request: Request) -> Response:
    gateway = request.app.state.gateway
    try:
        token = bearer_token(request)
        key = gateway.keys.authenticate(token) if token else None
        if key is None:
            raise GatewayError(401, "Missing or invalid API key")
        generation_id = request.query_params.get("id")
        if not generation_id:
            raise GatewayError(400, "Query parameter 'id' is required")
        record = await gateway.recorder.get(generation_id)
        if record is None or (not key.is_management and record.api_key_hash != key.hash):
            raise GatewayError(404, f"Generation {generation_id} not found")
    except GatewayError as error:
        return error_response(error)
    return JSON({"data": record.public()})


async def current_key(request: Request) -> Response:
    gateway = request.app.state.gateway
    token = bearer_token(request)
    key = gateway.keys.authenticate(token) if token else None
    if key is None:
        return error_response(GatewayError(401, "Missing or invalid API key"))
    data = key.public()
    data.update(
        is_management_key=key.is_management,
        is_provisioning_key=key.is_management,
        is_free_tier=False,
        rate_limit={"requests": -1, "interval": "10s", "note": "no request limit"},
        allowed_data_regions=["global"],
        budgets=[],
        effective_budget=None,
        organization_id=None,
        # no free-tier cap is enforced yet (-1); `used` counts today's requests to :free models
        free_model_daily_requests={"limit": -1, "remaining": -1, "used": key.usage.free_requests_today},
    )
    return JSON({"data": data})


def _key_fields(body: Any, *, creating: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GatewayError(400, "Request body must be a JSON object")
    allowed = {"name", "limit", "limit_reset", "include_byok_in_limit", "expires_at", "creator_user_id"}
    if not creating:
        allowed = (allowed - {"expires_at", "creator_user_id"}) | {"disabled"}
    unknown = set(body) - allowed - {"workspace_id"}
    if unknown:
        raise GatewayError(400, f"Unknown fields: {sorted(unknown)}")
    fields = {k: v for k, v in body.items() if k in allowed}
    if creating and not (isinstance(fields.get("name"), str) and fields["name"].strip()):
        raise GatewayError(400, "'name' is required and must be a non-empty string")
    if "limit" in fields and fields["limit"] is not None and (
        not isinstance(fields["limit"], (int, float)) or isinstance(fields["limit"], bool) or fields["limit"] < 0
    ):
        raise GatewayError(400, "'limit' must be a non-negative number or null")
    if fields.get("limit_reset") not in _RESETS:
        raise GatewayError(400, "'limit_reset' must be daily, weekly, monthly or null")
    if fields.get("expires_at") is not None:
        try:
            expires = datetime.fromisoformat(str(fields["expires_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise GatewayError(400, "'expires_at' must be an ISO 8601 timestamp") from None
        if expires.utcoffset() is None or expires.utcoffset().total_seconds() != 0:
            raise GatewayError(400, "'expires_at' must be in UTC")
        fields["expires_at"] = expires
    for flag in ("include_byok_in_limit", "disabled"):
        if flag in fields and not isinstance(fields[flag], bool):
            raise GatewayError(400, f"'{flag}' must be a boolean")
    return fields


async def create_key(request: Request) -> Response:
    gateway = request.app.state.gateway
    try:
        authenticate(request, management=True)
        fields = _key_fields(await read_json(request, 65536), creating=True)
        token, key = await gateway.keys.create(fields.pop("name").strip(), **fields)
    except GatewayError as error:
        return error_response(error)
    return JSON({"data": key.public(), "key": token}, status_code=201)


async def list_keys(request: Request) -> Response:
    gateway = request.app.state.gateway
    try:
        authenticate(request, management=True)
    except GatewayError as error:
        return error_response(error)
    include_disabled = request.query_params.get("include_disabled") == "true"
    keys = [k for k in gateway.keys.list() if include_disabled or not k.disabled]
    return JSON({"data": [k.public() for k in keys]})


async def one_key(request: Request) -> Response:
    gateway = request.app.state.gateway
    try:
        authenticate(request, management=True)
        key = gateway.keys.get(request.path_params["hash"])
        if key is None or key.is_management:
            raise GatewayError(404, "API key not found")
        if request.method == "DELETE":
            await gateway.keys.delete(key)
            return JSON({"deleted": True})
        if request.method == "PATCH":
            key = await gateway.keys.update(key, **_key_fields(await read_json(request, 65536), creating=False))
    except GatewayError as error:
        return error_response(error)
    return JSON({"data": key.public()})
