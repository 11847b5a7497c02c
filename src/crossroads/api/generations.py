"""GET /generations?limit=N: the caller's latest generation records, newest first.

This server's own route (OpenRouter has only `GET /generation?id=`): the account page lists
a key's last generations with it. Any key may call it, as `/generation`: an API key sees
its own records, a management key every key's. The records are read from the database,
not from the inference path; a generation just made appears once the recorder has written
it (its next round, every `recorder_interval_seconds`, 0.25 s by default), whereas
`/generation?id=` also answers from the recorder's memory.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, fresh_key, gateway_of, parse_query

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


class GenerationsQuery(Struct, kw_only=True):
    """The query of `GET /generations`: how many records, 1 to 100."""

    limit: Annotated[int, Meta(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT


async def list_generations(request: Request) -> Response:
    key = await fresh_key(request, kind="any")
    query = parse_query(request.query_params, GenerationsQuery)
    store = gateway_of(request).generations
    records = await store.recent(None if key.is_management else key.hash, query.limit)
    return JSON({"data": [record.public() for record in records]})
