"""GET /health (readiness) and GET /health/live (liveness); no key needed.

`/health` checks the database (one `SELECT 1`, at most `DATABASE_CHECK_SECONDS`, and not
more than once per `DATABASE_CHECK_EVERY` seconds whatever the number of callers) and says
where the limits' counters are (`redis`: "ok", "unreachable" or "off", as the counters
last found it: no extra round trip). Either unreachable makes the status "degraded", still
200: the request path never waits on the database (records are journaled, see
telemetry/journal.py) and a Redis outage falls back to per-process limits, so an outage of
a shared dependency must not take every replica out of the load balancer at once. A
replica answers nothing while it starts and once its shutdown began (the server stops
listening first): that is its "not ready".

The rest are the generation recorder's counters (`telemetry.recorder.RecorderStats`: queue
depth, rows written, rejected, spilled, dropped, journal errors, failed writes, journal
segments pending; a monitor alerts on `rows_rejected`, `rows_dropped` or a growing
`queue_depth`), the limits' status, and which process answered (`instance`, `pid`).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import asdict

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, gateway_of
from crossroads.gateway import Gateway

DATABASE_CHECK_SECONDS = 1.0
DATABASE_CHECK_EVERY = 1.0


class DatabaseCheck:
    """The database's state, checked at most once per `DATABASE_CHECK_EVERY` seconds (one
    per app: many callers of /health share one check in flight and its answer)."""

    def __init__(self) -> None:
        self._at = -math.inf
        self._state = "ok"
        self._running: asyncio.Task[str] | None = None

    async def state(self, gateway: Gateway) -> str:
        if time.monotonic() - self._at < DATABASE_CHECK_EVERY:
            return self._state
        if self._running is None:
            self._running = asyncio.create_task(self._check(gateway))
        return await asyncio.shield(self._running)

    async def _check(self, gateway: Gateway) -> str:
        try:
            async with asyncio.timeout(DATABASE_CHECK_SECONDS):
                async with gateway.engine.connect() as connection:
                    await connection.execute(sa.text("SELECT 1"))
            state = "ok"
        except Exception:  # noqa: BLE001 - any failure is "unreachable", whatever its kind
            state = "unreachable"
        self._state, self._at, self._running = state, time.monotonic(), None
        return state


async def health(request: Request) -> Response:
    gateway = gateway_of(request)
    limits = gateway.counters.status()
    database = await request.app.state.database_check.state(gateway)
    checks = {"database": database, "redis": limits.redis}
    degraded = "unreachable" in checks.values()
    return JSON(
        {
            "status": "degraded" if degraded else "ok",
            "checks": checks,
            "instance": gateway.settings.instance,
            "pid": os.getpid(),
            "recorder": asdict(gateway.recorder.stats()),
            "limits": asdict(limits),
        }
    )


async def live(request: Request) -> Response:
    return JSON({"status": "ok"})
