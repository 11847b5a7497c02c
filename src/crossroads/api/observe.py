"""The ASGI middleware around every HTTP request: overhead header and metric, access log, span.

- `x-crossroads-overhead-ms` on every response (inference, catalog, errors, 404s, streams):
  the time from the request's arrival to the start of its response, minus the time spent
  awaiting providers so far, in milliseconds. The provider time is what
  `routing/attempt.py` adds to the request's `RequestContext` (which the inference path
  keeps as `request.state.ctx`), the wait in progress included. A crash is rendered here,
  as app.py's handler renders it, so that its 500 carries the header too; the exception
  then goes on to Starlette's outer middleware and the server, which log it.
- `crossroads_gateway_overhead_seconds`: at the end of each request, its whole wall time
  (a stream's too) minus its upstream time.
- With `settings.access_log`: one JSON line per request on the "crossroads.access" logger
  (a handler on standard error is attached, since the server's logging configuration
  does not cover it): id, key (label) and key_name, model, provider, status, error (the
  code a request ended with, also a stream that failed after its 200), tokens (prompt,
  completion), cost, overhead_ms, duration_ms, path, method. Inference requests take
  key, model, provider, tokens and cost from their generation record (the router hands
  it over through `RecordFanout`); other requests leave those fields null.
- With tracing on (`telemetry/tracing.py`): the request's span, current while it runs.

Per request without tracing or the access log, this costs two clock readings, one header
and one histogram observation.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossroads.accounting.keys import ApiKey
from crossroads.api.http import render_error
from crossroads.errors import GatewayError
from crossroads.gateway import Gateway
from crossroads.routing.context import RequestContext
from crossroads.schema.generation import GenerationRecord
from crossroads.telemetry.tracing import Attribute, RequestSpan

OVERHEAD_HEADER = b"x-crossroads-overhead-ms"
_GENERATION_HEADER = b"x-generation-id"
ACCESS_LOGGER = "crossroads.access"
log = logging.getLogger("crossroads.observe")


class _AccessHandler(logging.StreamHandler[TextIO]):
    """The access log's own handler (one per process, however many apps)."""


def access_logger() -> logging.Logger:
    """The access logger, printing its lines (the bare JSON) to standard error."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(h, _AccessHandler) for h in logger.handlers):
        handler = _AccessHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the lines go out once, as they are
    return logger


class Observe:
    """Pure ASGI middleware (no response wrapping: a stream passes through untouched)."""

    def __init__(self, app: ASGIApp, *, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.metrics = gateway.metrics
        self.tracing = gateway.tracing
        self.access = access_logger() if gateway.settings.access_log else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        span = None
        if self.tracing.enabled:
            span = self.tracing.start_request(scope["method"], scope["path"])
        detailed = span is not None or self.access is not None
        status = 0
        generation_id: str | None = None

        async def observed(message: Message) -> None:
            nonlocal status, generation_id
            if message["type"] == "http.response.start":
                now = time.perf_counter()
                ctx = state.get("ctx")
                upstream = ctx.waits.so_far_ms(now) if ctx is not None else 0.0
                overhead = max((now - started) * 1000 - upstream, 0.0)
                headers = [*message.get("headers", ()), (OVERHEAD_HEADER, b"%.3f" % overhead)]
                message["headers"] = headers
                status = message["status"]
                if detailed and ctx is None:  # no context kept: the id from the header
                    for name, value in headers:
                        if name.lower() == _GENERATION_HEADER:
                            generation_id = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            if not status:  # nothing sent yet: the 500 goes out here, with the header
                response = render_error(Request(scope), GatewayError(500, "Internal Server Error"))
                await response(scope, receive, observed)
            raise
        finally:
            now = time.perf_counter()
            ctx = state.get("ctx")
            duration = (now - started) * 1000
            upstream = ctx.waits.so_far_ms(now) if ctx is not None else 0.0
            overhead = max(duration - upstream, 0.0)
            self.metrics.observe_overhead(overhead / 1000)
            if detailed:
                try:
                    self._detail(
                        scope,
                        span,
                        ctx,
                        generation_id,
                        status=status,
                        duration=duration,
                        overhead=overhead,
                    )
                except Exception:  # the response is out: a bug here must not hide it
                    log.exception("cannot log or trace %s %s", scope["method"], scope["path"])

    def _detail(
        self,
        scope: Scope,
        span: RequestSpan | None,
        ctx: RequestContext | None,
        generation_id: str | None,
        *,
        status: int,
        duration: float,
        overhead: float,
    ) -> None:
        """The request's access-log line and the end of its span."""
        if ctx is not None:
            generation_id = ctx.generation_id
        records = self.gateway.records
        record = records.claim(generation_id) if generation_id and records else None
        if not status:  # no response began: the client left, or the server stopped
            status = 499 if record is None or record.cancelled else 500
        key_hash = record.api_key_hash if record else ctx.api_key_hash if ctx else None
        key = self.gateway.keys.get(key_hash) if key_hash else None
        if span is not None:
            attributes: dict[str, Attribute] = {}
            route = scope.get("route")
            if route is not None and hasattr(route, "path"):
                attributes["http.route"] = scope.get("root_path", "") + route.path
            if generation_id:
                attributes["crossroads.generation_id"] = generation_id
            if key is not None:
                attributes["crossroads.key"] = key.label
            if ctx is not None and ctx.route:
                attributes["crossroads.route"] = list(ctx.route)
            if record is not None:
                attributes["crossroads.model"] = record.model
                if record.provider_slug:
                    attributes["crossroads.provider"] = record.provider_slug
            self.tracing.end_request(span, status=status, attributes=attributes)
        if self.access is not None:
            self.access.info(_line(scope, record, generation_id, status, duration, overhead, key))


def _line(
    scope: Scope,
    record: GenerationRecord | None,
    generation_id: str | None,
    status: int,
    duration: float,
    overhead: float,
    key: ApiKey | None,
) -> str:
    error = record.error.get("code") if record is not None and record.error else None
    return orjson.dumps(
        {
            "id": generation_id,
            "key": key.label if key is not None else None,
            "key_name": key.name if key is not None else None,
            "model": record.model if record else None,
            "provider": record.provider_slug if record else None,
            "status": status,
            "error": error,
            "tokens": {
                "prompt": record.tokens_prompt if record else None,
                "completion": record.tokens_completion if record else None,
            },
            "cost": record.total_cost if record else None,
            "overhead_ms": round(overhead, 3),
            "duration_ms": round(duration, 3),
            "path": scope["path"],
            "method": scope["method"],
        }
    ).decode()
