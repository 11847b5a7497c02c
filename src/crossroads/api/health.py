"""GET /health: liveness, and the generation recorder's counters (no key needed).

The counters are `telemetry.recorder.RecorderStats`: queue depth, rows written, rejected
(quarantined), spilled to the journal, dropped, journal errors, failed writes, journal
segments pending. A monitor alerts on `rows_rejected`, `rows_dropped` or a growing
`queue_depth`. `limits` says whether the limits' counters are shared through Redis now
(`redis: "unreachable"`: each replica limits on its own until Redis answers again).
"""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, gateway_of


async def health(request: Request) -> Response:
    gateway = gateway_of(request)
    stats = gateway.recorder.stats()
    limits = asdict(gateway.counters.status())
    return JSON({"status": "ok", "recorder": asdict(stats), "limits": limits})
