"""Keys and generations: GET /generation, GET /key, and the management routes under /keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, authenticate, gateway_of, read_json
from crossroads.errors import GatewayError

_RESETS = (None, "daily", "weekly", "monthly")
_MAX_BODY = 65536  # a key's fields


async def get_generation(request: Request) -> Response:
    key = authenticate(request, kind="any")
    generation_id = request.query_params.get("id")
    if not generation_id:
        raise GatewayError(400, "Query parameter 'id' is required")
    record = await gateway_of(request).recorder.get(generation_id)
    if record is None or (not key.is_management and record.api_key_hash != key.hash):
        raise GatewayError(404, f"Generation {generation_id} not found")
    return JSON({"data": record.public()})


async def current_key(request: Request) -> Response:
    key = authenticate(request, kind="any")
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
        free_model_daily_requests={
            "limit": -1,
            "remaining": -1,
            "used": key.usage.free_requests_today,
        },
    )
    return JSON({"data": data})


def _key_fields(body: Any, *, creating: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GatewayError(400, "Request body must be a JSON object")
    allowed = {
        "name",
        "limit",
        "limit_reset",
        "include_byok_in_limit",
        "expires_at",
        "creator_user_id",
    }
    if not creating:
        allowed = (allowed - {"expires_at", "creator_user_id"}) | {"disabled"}
    unknown = set(body) - allowed - {"workspace_id"}
    if unknown:
        raise GatewayError(400, f"Unknown fields: {sorted(unknown)}")
    fields = {k: v for k, v in body.items() if k in allowed}
    if creating and not (isinstance(fields.get("name"), str) and fields["name"].strip()):
        raise GatewayError(400, "'name' is required and must be a non-empty string")
    limit = fields.get("limit")
    if limit is not None and (
        not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit < 0
    ):
        raise GatewayError(400, "'limit' must be a non-negative number or null")
    if fields.get("limit_reset") not in _RESETS:
        raise GatewayError(400, "'limit_reset' must be daily, weekly, monthly or null")
    if fields.get("expires_at") is not None:
        try:
            expires = datetime.fromisoformat(str(fields["expires_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise GatewayError(400, "'expires_at' must be an ISO 8601 timestamp") from None
        offset = expires.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise GatewayError(400, "'expires_at' must be in UTC")
        fields["expires_at"] = expires
    for flag in ("include_byok_in_limit", "disabled"):
        if flag in fields and not isinstance(fields[flag], bool):
            raise GatewayError(400, f"'{flag}' must be a boolean")
    return fields


async def create_key(request: Request) -> Response:
    authenticate(request, kind="management")
    fields = _key_fields(await read_json(request, _MAX_BODY), creating=True)
    token, key = await gateway_of(request).keys.create(fields.pop("name").strip(), **fields)
    return JSON({"data": key.public(), "key": token}, status_code=201)


async def list_keys(request: Request) -> Response:
    authenticate(request, kind="management")
    include_disabled = request.query_params.get("include_disabled") == "true"
    keys = [k for k in gateway_of(request).keys.list() if include_disabled or not k.disabled]
    return JSON({"data": [k.public() for k in keys]})


async def one_key(request: Request) -> Response:
    authenticate(request, kind="management")
    keys = gateway_of(request).keys
    key = keys.get(request.path_params["hash"])
    if key is None or key.is_management:
        raise GatewayError(404, "API key not found")
    if request.method == "DELETE":
        await keys.delete(key)
        return JSON({"deleted": True})
    if request.method == "PATCH":
        fields = _key_fields(await read_json(request, _MAX_BODY), creating=False)
        key = await keys.update(key, **fields)
    return JSON({"data": key.public()})
