"""The account: GET /credits (the balance) and GET /activity (daily usage), management key.

`total_credits` is the ledger's credits added (`crossroads credits add`). `total_usage` is,
as OpenRouter's, what the account has used whether or not a balance is enforced: the cost
of every generation record, or the charges drawn from the balance when those are ahead (a
charge is counted at once; its record is written a moment later). The balance requests are
held to is the credits minus the charges drawn while it was in force: the same figure as
credits minus usage unless requests were made before the first top-up. Activity is read
from the generation records.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from crossroads.accounting.keys import WORKSPACE_ID
from crossroads.accounting.money import to_usd
from crossroads.api.accounts import management_key
from crossroads.api.http import JSON, gateway_of, parse_query
from crossroads.errors import GatewayError

ACTIVITY_DAYS = 30  # the completed UTC days /activity covers, today's so far besides


async def credits(request: Request) -> Response:
    await management_key(request)
    gateway = gateway_of(request)
    limits = gateway.limits
    usage = max(await limits.account_usage(), await gateway.rollups.total_cost())
    return JSON(
        {
            "data": {
                "total_credits": to_usd(limits.account.credits),
                "total_usage": to_usd(usage),
            }
        }
    )


class ActivityQuery(Struct, kw_only=True):
    """`GET /activity`'s query (OpenRouter's `getUserActivity`)."""

    date: Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None
    api_key_hash: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")] | None = None
    user_id: str | None = None  # one user here: accepted, matches everything
    workspace_id: str | None = None
    group_by: Literal["workspace"] | None = None


async def activity(request: Request) -> Response:
    """Usage per UTC day, model and endpoint over the last 30 completed days and today."""
    await management_key(request)
    query = parse_query(request.query_params, ActivityQuery)
    today = datetime.now(UTC).date()
    since = today - timedelta(days=ACTIVITY_DAYS)
    day: date | None = None
    if query.date is not None:
        try:
            day = date.fromisoformat(query.date)
        except ValueError:
            raise GatewayError(400, "Invalid query parameter 'date': not a date") from None
        if not since <= day <= today:
            raise GatewayError(
                400, f"Invalid query parameter 'date': must be within the last {ACTIVITY_DAYS} days"
            )
    if query.workspace_id is not None and query.workspace_id != WORKSPACE_ID:
        return JSON({"data": []})  # every key is in this installation's one workspace
    rows = await gateway_of(request).activity.daily(
        since=since, until=today, api_key_hash=query.api_key_hash, day=day
    )
    items = []
    for row in rows:
        item = {
            "date": row.date,
            "model": row.model,
            "model_permaslug": row.model,
            "endpoint_id": f"{row.model}@{row.endpoint_tag}",
            "provider_name": row.provider_name,
            "usage": row.usage,
            "byok_usage_inference": 0.0,
            "requests": row.requests,
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "reasoning_tokens": row.reasoning_tokens,
            "cached_tokens": row.cached_tokens,  # the openrouter SDK requires it
        }
        if query.group_by == "workspace":
            item["workspace_id"] = WORKSPACE_ID
        items.append(item)
    return JSON({"data": items})
