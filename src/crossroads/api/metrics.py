"""GET /metrics: the gateway's Prometheus metrics, in the text exposition format.

No key is needed, as for /health: operators scrape it (keep the port private or filter
the path at the proxy if the figures must not be public). The metrics are listed in
`telemetry/metrics.py`.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import gateway_of


async def metrics(request: Request) -> Response:
    body = gateway_of(request).metrics.render()
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
