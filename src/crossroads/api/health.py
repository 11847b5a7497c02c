"""GET /health (readiness) and GET /health/live (liveness); no key needed.

`/health` checks the database (one `SELECT 1`, at most `DATABASE_CHECK_SECONDS`) and says
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
import os
from dataclasses import asdict

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, gateway_of
from crossroads.gateway import Gateway

DATABASE_CHECK_SECONDS = 1.0


async def database_state(gateway: Gateway) -> str:
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS):
            async with gateway.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure is "unreachable", whatever its kind
        return "unreachable"
    return "ok"


async def health(request: Request) -> Response:
    gateway = gateway_of(request)
    limits = gateway.counters.status()
    checks = {"database": await database_state(gateway), "redis": limits.redis}
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
