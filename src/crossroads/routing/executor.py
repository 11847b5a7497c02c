"""Carry out a routing plan: try endpoints in order, fall back, account, record.

Provider-level fallback happens on failures of the provider (5xx, 429, timeouts,
connection errors, auth or model faults of the provider's own), only before the first
byte reaches the client; a request error (400, 413, 422) moves on to the next model of
`models` instead. Every attempt feeds the live statistics; every request, served or
not, leaves one generation record.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from crossroads.accounting.keys import KeyRing
from crossroads.catalog import Catalog
from crossroads.providers.base import Adapter, UpstreamError
from crossroads.providers.http import UpstreamClient
from crossroads.routing.plan import Plan, plan_request
from crossroads.routing.run import RequestContext, Run, elapsed_ms
from crossroads.routing.streaming import ChatStream
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.schema.chat import ChatRequest
from crossroads.telemetry.recorder import Recorder
from crossroads.telemetry.stats import LiveStats

__all__ = ["ChatStream", "Executor", "RequestContext"]


class Executor:
    def __init__(
        self,
        catalog: Catalog,
        adapters: Mapping[str, Adapter],
        client: UpstreamClient,
        stats: LiveStats,
        recorder: Recorder,
        keys: KeyRing,
        rng: random.Random,
    ) -> None:
        self.catalog = catalog
        self.adapters = adapters
        self.client = client
        self.stats = stats
        self.recorder = recorder
        self.keys = keys
        self.rng = rng

    def plan(self, request: ChatRequest, body: dict[str, Any]) -> Plan:
        return plan_request(request, body, self.catalog, self.stats, self.rng)

    def target(self, endpoint: Endpoint) -> tuple[Provider, Adapter]:
        provider = self.catalog.providers[endpoint.provider]
        return provider, self.adapters[provider.api or ""]

    @asynccontextmanager
    async def attempt(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, Provider, Adapter]]:
        """One try at `endpoint`: the open response once it answered 200, else an `UpstreamError`."""
        provider, adapter = self.target(endpoint)
        upstream = adapter.build_chat_request(body, endpoint, provider, stream=stream)
        async with self.client.open(upstream, provider) as response:
            if response.status != 200:
                raw = await response.read()
                try:
                    payload: Any = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    payload = raw.decode("utf-8", "replace")[:2000]
                raise UpstreamError(provider, "http", adapter.error_message(payload), status=response.status,
                                    raw=payload, retry_after=self.client.retry_after(response))
            yield response, provider, adapter

    # -- non-streaming -------------------------------------------------------------------

    async def complete(self, request: ChatRequest, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        plan = self.plan(request, body)
        run = Run(self, plan, request, body, ctx, streamed=False)
        for endpoint in plan.endpoints:
            if endpoint.model_id in run.skip_models:
                continue
            since = time.perf_counter()
            try:
                async with self.attempt(endpoint, body, stream=False) as (response, provider, adapter):
                    raw = await response.read()
                try:
                    completion = adapter.parse_chat_response(orjson.loads(raw))
                except (ValueError, TypeError, KeyError) as exc:
                    raise UpstreamError(provider, "invalid_response", f"Invalid response from provider: {exc}") from None
            except UpstreamError as error:
                run.failed(endpoint, error, since)
                continue
            return run.served(endpoint, completion, elapsed_ms(since))
        raise run.give_up()

    # -- streaming -----------------------------------------------------------------------

    def stream(self, request: ChatRequest, body: dict[str, Any], ctx: RequestContext) -> ChatStream:
        return ChatStream(self, self.plan(request, body), request, body, ctx)
