"""Keys and generations: GET /generation, GET /key, and the management routes under /keys."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from crossroads.accounting.keys import MAX_LIMIT, WORKSPACE_ID, ApiKey
from crossroads.accounting.money import to_usd
from crossroads.api.http import (
    JSON,
    fresh_key,
    gateway_of,
    parse_query,
    read_json,
)
from crossroads.errors import GatewayError
from crossroads.gateway import Gateway
from crossroads.limits.guardrails import parse_guardrails
from crossroads.limits.values import KeyUsage
from crossroads.schema.chat import validated
from crossroads.storage.tables import CONTROL_CHARACTERS, api_keys, column_length

log = logging.getLogger(__name__)
_MAX_BODY = 65536  # a key's fields


async def get_generation(request: Request) -> Response:
    key = await fresh_key(request, kind="any")
    generation_id = request.query_params.get("id")
    if not generation_id:
        raise GatewayError(400, "Query parameter 'id' is required")
    record = await gateway_of(request).recorder.get(generation_id)
    if record is None or (not key.is_management and record.api_key_hash != key.hash):
        raise GatewayError(404, f"Generation {generation_id} not found")
    return JSON({"data": record.public()})


async def public_key(gateway: Gateway, key: ApiKey) -> dict[str, Any]:
    """`key.public()` with its spend as the limits' counters hold it (every replica's)."""
    return _public(key, await gateway.limits.key_usage(key))


def _public(key: ApiKey, usage: KeyUsage) -> dict[str, Any]:
    """`key.public()` with `usage` as its spend."""
    return key.public(
        {
            "total": to_usd(usage.total),
            "daily": to_usd(usage.daily),
            "weekly": to_usd(usage.weekly),
            "monthly": to_usd(usage.monthly),
        }
    )


async def current_key(request: Request) -> Response:
    key = await fresh_key(request, kind="any")
    gateway = gateway_of(request)
    limits = gateway.limits
    data = await public_key(gateway, key)
    free = await limits.free_day()
    per_minute = key.requests_per_minute
    data.update(
        is_management_key=key.is_management,
        is_provisioning_key=key.is_management,
        # free tier: no credits were ever added to this installation's balance
        is_free_tier=limits.account.credits == 0,
        rate_limit={
            "requests": per_minute or limits.free.per_minute,
            "interval": "1m",
            "note": "requests a minute with this key"
            if per_minute
            else "requests a minute to free model variants (:free); others have no cap",
        },
        allowed_data_regions=["global"],
        budgets=[],
        effective_budget=None,
        organization_id=None,
        free_model_daily_requests={
            "limit": free.limit,
            "remaining": free.remaining,
            "used": free.used,
        },
    )
    return JSON({"data": data})


Reset = Literal["daily", "weekly", "monthly"]
Limit = Annotated[float, Meta(ge=0, le=MAX_LIMIT)]  # USD
PerMinute = Annotated[int, Meta(ge=1, le=2**31 - 1)]
_NAME_LENGTH = column_length(api_keys.c.name)
_USER_LENGTH = column_length(api_keys.c.creator_user_id)


class CreateKeyRequest(Struct, forbid_unknown_fields=True):
    """OpenRouter's `createKeys` body."""

    name: str
    limit: Limit | None = None
    limit_reset: Reset | None = None
    include_byok_in_limit: bool = False
    expires_at: str | None = None  # ISO 8601, in UTC
    creator_user_id: str | None = None
    workspace_id: UUID | None = None  # one workspace here: checked, accepted, not stored
    # this server's own fields (OpenRouter has no per-key rates; its guardrails are objects)
    requests_per_minute: PerMinute | None = None
    tokens_per_minute: PerMinute | None = None
    guardrails: dict[str, Any] | None = None  # checked by `parse_guardrails`


class UpdateKeyRequest(Struct):
    """OpenRouter's `updateKeys` body; a field left out is left as it is. As OpenRouter
    documents, other fields are ignored, and a body with none of these is refused."""

    name: str | UnsetType = UNSET
    disabled: bool | UnsetType = UNSET
    limit: Limit | None | UnsetType = UNSET
    limit_reset: Reset | None | UnsetType = UNSET
    include_byok_in_limit: bool | UnsetType = UNSET
    workspace_id: str | None | UnsetType = UNSET
    requests_per_minute: PerMinute | None | UnsetType = UNSET
    tokens_per_minute: PerMinute | None | UnsetType = UNSET
    guardrails: dict[str, Any] | None | UnsetType = UNSET


def _text(value: str, field: str, limit: int) -> str:
    """A stored text field: stripped, not empty, no control characters, at most `limit`."""
    value = value.strip()
    if not value:
        raise GatewayError(400, f"'{field}' must be a non-empty string")
    if CONTROL_CHARACTERS.search(value):
        raise GatewayError(400, f"'{field}' must not contain control characters")
    if len(value) > limit:
        raise GatewayError(400, f"'{field}' is longer than {limit} characters")
    return value


def _expiry(value: str) -> datetime:
    try:
        expires = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(400, "'expires_at' must be an ISO 8601 timestamp") from None
    offset = expires.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise GatewayError(400, "'expires_at' must be in UTC")
    return expires


def _create_fields(body: Any) -> dict[str, Any]:
    request = validated(body, CreateKeyRequest)
    fields = msgspec.structs.asdict(request)
    del fields["workspace_id"]
    fields["name"] = _text(request.name, "name", _NAME_LENGTH)
    if request.creator_user_id is not None:
        fields["creator_user_id"] = _text(request.creator_user_id, "creator_user_id", _USER_LENGTH)
    if request.expires_at is not None:
        fields["expires_at"] = _expiry(request.expires_at)
    fields["guardrails"] = parse_guardrails(request.guardrails)
    return fields


def _update_fields(body: Any) -> dict[str, Any]:
    """The fields to change; empty when the body only names the key's workspace (a no-op)."""
    request = validated(body, UpdateKeyRequest)
    fields = {k: v for k, v in msgspec.structs.asdict(request).items() if v is not UNSET}
    if not fields:
        raise GatewayError(400, "No update fields provided")
    fields.pop("workspace_id", None)
    if isinstance(request.name, str):
        fields["name"] = _text(request.name, "name", _NAME_LENGTH)
    if "guardrails" in fields:
        fields["guardrails"] = parse_guardrails(fields["guardrails"])
    return fields


async def management_key(request: Request) -> ApiKey:
    """The caller's management key, as stored now (see `fresh_key`)."""
    return await fresh_key(request, kind="management")


async def create_key(request: Request) -> Response:
    await management_key(request)
    fields = _create_fields(await read_json(request, _MAX_BODY))
    gateway = gateway_of(request)
    token, key = await gateway.keys.create(fields.pop("name"), **fields)
    return JSON({"data": await public_key(gateway, key), "key": token}, status_code=201)


class KeysQuery(Struct, kw_only=True):
    """The query of `GET /keys` (OpenRouter's `list`), with the spec's types and bounds."""

    include_disabled: Literal["true", "false"] = "false"
    offset: Annotated[int, Meta(ge=0)] | None = None
    workspace_id: UUID | None = None


async def list_keys(request: Request) -> Response:
    await management_key(request)
    query = parse_query(request.query_params, KeysQuery)
    keys = [
        k
        for k in gateway_of(request).keys.list()
        if query.include_disabled == "true" or not k.disabled
    ]
    if query.workspace_id is not None and str(query.workspace_id) != WORKSPACE_ID:
        keys = []  # every key is in this installation's one workspace
    keys = keys[query.offset or 0 :]
    usages = await gateway_of(request).limits.key_usages(keys)  # one read of the counters
    return JSON({"data": [_public(k, usages[k.hash]) for k in keys]})


async def one_key(request: Request) -> Response:
    await management_key(request)
    gateway = gateway_of(request)
    keys = gateway.keys
    key = keys.get(request.path_params["hash"])
    if key is None or key.is_management:
        raise GatewayError(404, "API key not found")
    if request.method == "DELETE":
        await keys.delete(key)
        return JSON({"deleted": True})
    if request.method == "PATCH":
        fields = _update_fields(await read_json(request, _MAX_BODY))
        if fields:
            key = await keys.update(key, **fields)
    return JSON({"data": await public_key(gateway, key)})
