"""Small HTTP helpers shared by the routes: orjson responses, bodies with a size cap, auth,
and the one rendering of a `GatewayError` (see `render_error`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import msgspec
import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from crossroads.accounting.keys import ApiKey
from crossroads.errors import GatewayError
from crossroads.gateway import Gateway

ErrorBody = Callable[[GatewayError], dict[str, Any]]
T = TypeVar("T")
Q = TypeVar("Q", bound=msgspec.Struct)
CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it, but logs do


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


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away. Call only after the body was read: from then
    on the ASGI `receive` channel blocks until `http.disconnect`."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _consume(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's exception as retrieved; the watcher's end is of no interest."""
    if not task.cancelled():
        task.exception()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; if the client disconnects first, `work` is cancelled (its cleanup
    runs to the end) and a 499 `GatewayError` is raised for a response nobody reads."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler itself is cancelled (server shutdown)
        watcher.cancel()
        # retrieve what the watcher ended with (an error of `receive`): never left unread
        watcher.add_done_callback(_consume)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise GatewayError(CLIENT_CLOSED, "Client closed the request")
    return task.result()


def bearer_token(request: Request, *, x_api_key: bool = False) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") if x_api_key else None


KeyKind = Literal["inference", "management", "any"]
log = logging.getLogger(__name__)


async def fresh_key(
    request: Request, *, kind: KeyKind = "inference", x_api_key: bool = False
) -> ApiKey:
    """`authenticate`, after bringing this process's view of the token up to date when it
    may be stale: a token it does not know (a key just created on another replica or
    worker) or a stored management key (it may have been rotated by another process) is
    checked against the store first (`KeyRing.reload`). A known API key, the common case,
    is checked in memory only."""
    token = bearer_token(request, x_api_key=x_api_key)
    keys = gateway_of(request).keys
    if token and not keys.is_current(token):
        try:
            await keys.reload(token)
        except (SQLAlchemyError, OSError) as exc:  # keep this process's view meanwhile
            log.warning("cannot read the keys again: %s", exc)
    return authenticate(request, kind=kind, x_api_key=x_api_key)


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


_LOCATION = re.compile(r"^(?P<reason>.*) - at `\$\.(?P<name>[^`]+)`$", re.DOTALL)


def parse_query(params: Mapping[str, str], kind: type[Q]) -> Q:
    """A route's query string as `kind`: strings coerced to the field types (numbers,
    booleans, uuids) and checked against their bounds. A bad value is a 400 naming the
    parameter; so is a number that is not finite (`inf`), which no JSON Schema number is."""
    try:
        query = msgspec.convert(dict(params), kind, strict=False)
    except msgspec.ValidationError as exc:
        found = _LOCATION.match(str(exc))
        if found is None:
            raise GatewayError(400, f"Invalid query: {exc}") from None
        # a parameter is absent when left out: "null" is no type to ask of a query string
        name, reason = found.group("name"), found.group("reason").replace(" | null", "")
        raise GatewayError(400, f"Invalid query parameter '{name}': {reason}") from None
    for name in kind.__struct_fields__:
        value = getattr(query, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise GatewayError(400, f"Invalid query parameter '{name}': Expected a finite number")
    return query
