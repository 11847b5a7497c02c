"""Carry out a routing plan: try endpoints in order, fall back, account, record.

Provider-level fallback happens on failures of the provider (5xx, 429, timeouts,
connection errors, auth or model faults of the provider's own), only before the first
byte reaches the client; a request error (400, 413, 422) moves on to the next model of
`models` instead. Every attempt feeds the live statistics and the endpoint's circuit
(one `AttemptSample`), and the plan orders endpoints by their circuits; every request,
served or not, leaves one generation record. A request cancelled before its answer (the
client went away) is recorded as cancelled and charged nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from crossroads.catalog import Catalog
from crossroads.providers.base import UpstreamError
from crossroads.routing.attempt import Upstream
from crossroads.routing.context import RequestContext, elapsed_ms
from crossroads.routing.plan import Plan, plan_request
from crossroads.routing.run import Outcome, Run, Sinks
from crossroads.routing.streaming import ChatStream
from crossroads.schema.chat import ChatRequest
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats


class Executor:
    def __init__(
        self,
        *,
        catalog: Catalog,
        upstream: Upstream,
        stats: LiveStats,
        circuits: Circuits,
        sinks: Sinks,
        rng: random.Random,
    ) -> None:
        self.catalog = catalog
        self.upstream = upstream
        self.stats = stats
        self.circuits = circuits
        self.sinks = sinks
        self.rng = rng

    def plan(self, request: ChatRequest, body: dict[str, Any]) -> Plan:
        return plan_request(
            request, body, self.catalog, self.stats, self.rng, circuits=self.circuits
        )

    async def complete(
        self, request: ChatRequest, body: dict[str, Any], ctx: RequestContext, plan: Plan
    ) -> dict[str, Any]:
        run = Run(self.sinks, plan, request, body, ctx, streamed=False)
        try:
            return await self._complete(run, body)
        finally:  # whatever ended it (a bug of ours too), the request is recorded and settled
            run.abandon()

    async def _complete(self, run: Run, body: dict[str, Any]) -> dict[str, Any]:
        for endpoint in run.endpoints():
            since = time.perf_counter()
            try:
                async with self.upstream.call(endpoint, body, stream=False, ctx=run.ctx) as call:
                    completion = await call.completion()
            except UpstreamError as error:
                run.failed(endpoint, error, elapsed_ms(since))
                continue
            except asyncio.CancelledError:  # the client went away: the upstream call is closed
                latency = elapsed_ms(run.ctx.started)
                run.record(Outcome(endpoint=endpoint, latency_ms=latency, cancelled=True))
                raise  # nothing was delivered, nothing is charged
            return run.served(endpoint, completion, elapsed_ms(since))
        raise run.give_up()

    def stream(
        self, request: ChatRequest, body: dict[str, Any], ctx: RequestContext, plan: Plan
    ) -> ChatStream:
        run = Run(self.sinks, plan, request, body, ctx, streamed=True)
        return ChatStream(self.upstream, run, body)
