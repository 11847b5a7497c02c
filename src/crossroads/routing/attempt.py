"""One try at one endpoint: build the provider's request, open it, read its answer.

`Upstream.call()` yields a `Call` once the provider answered 200, and raises the
provider's `UpstreamError` otherwise. A `Call` reads a whole completion or decodes a
stream into OpenAI-shaped chunks; what the provider sends that cannot be read (wrong
types, bad JSON, too large, too deep, not UTF-8, a stream cut before its end) becomes
an `UpstreamError` too, so the router can fall back.

Given the request's `RequestContext`, every wait on the provider (opening the request,
reading a body, each read of a stream) is added to `ctx.upstream_ms`: the gateway's
overhead header and metric leave that time out. With tracing on, each call is one
"crossroads.attempt" span (`telemetry/tracing.py`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from crossroads.providers.base import Adapter, Completion, UpstreamError
from crossroads.providers.http import UpstreamClient, parse_retry_after
from crossroads.providers.untrusted import read_json
from crossroads.routing.context import RequestContext
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.telemetry.tracing import Tracing

_UNREADABLE = (
    ValueError,
    TypeError,
    KeyError,
)  # what a pure adapter raises on a reply it cannot read


@dataclass(slots=True)
class Call:
    """An open, successful (200) upstream response."""

    provider: Provider
    adapter: Adapter
    response: aiohttp.ClientResponse
    client: UpstreamClient
    ctx: RequestContext | None = None  # where the time awaiting the provider is added

    async def completion(self) -> Completion:
        ctx = self.ctx
        if ctx is not None:
            ctx.upstream_since = time.perf_counter()
        try:
            raw = await self.client.read_body(self.response, self.provider)
        finally:
            if ctx is not None:
                _waited(ctx)
        try:
            return self.adapter.parse_chat_response(read_json(raw))
        except _UNREADABLE as exc:
            raise UpstreamError(
                self.provider, "invalid_response", f"Invalid response from provider: {exc}"
            ) from None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The stream's OpenAI-shaped chunks, in order, until its end.

        A body that ends before the protocol's end (`decoder.ended`) raises an
        `UpstreamError`: the provider cut the stream short. A transport that breaks after
        that end (say between the finish chunk and `[DONE]`) ends a complete stream."""
        decoder = self.adapter.stream_decoder()
        events = aiter(self.client.events(self.response, self.provider))
        ctx = self.ctx
        while True:
            if ctx is not None:
                ctx.upstream_since = time.perf_counter()
            try:
                data = await anext(events)
            except StopAsyncIteration:
                break
            except (aiohttp.ClientError, UpstreamError):
                if decoder.ended:
                    break
                raise
            finally:
                if ctx is not None:
                    _waited(ctx)
            try:
                pieces = decoder.feed(data)
            except _UNREADABLE as exc:
                raise UpstreamError(
                    self.provider, "invalid_response", f"Provider stream failed: {exc}"
                ) from None
            for piece in pieces:
                yield piece
            if data.strip() == "[DONE]":
                break
        if not decoder.ended:
            raise UpstreamError(
                self.provider, "incomplete", "The provider ended the stream before it finished"
            )


def _waited(ctx: RequestContext) -> None:
    """End the wait on the provider that began at `ctx.upstream_since`."""
    if ctx.upstream_since:
        ctx.upstream_ms += (time.perf_counter() - ctx.upstream_since) * 1000
        ctx.upstream_since = 0.0


class Upstream:
    """The providers as the router sees them: who serves an endpoint, in which protocol, and how."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        adapters: Mapping[str, Adapter],
        client: UpstreamClient,
        *,
        tracing: Tracing | None = None,
    ):
        self.providers = providers
        self.adapters = adapters
        self.client = client
        self.tracing = tracing or Tracing()

    @asynccontextmanager
    async def call(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        *,
        stream: bool,
        ctx: RequestContext | None = None,
    ) -> AsyncIterator[Call]:
        """One try at `endpoint`: the open response once it answers 200, else an `UpstreamError`.
        The time awaiting the provider is added to `ctx.upstream_ms`."""
        provider = self.providers[endpoint.provider]
        adapter = self.adapters[provider.api or ""]
        upstream = adapter.build_chat_request(body, endpoint, provider, stream=stream)
        span = None
        if self.tracing.enabled:
            span = self.tracing.start_attempt(
                provider=provider.slug, model=endpoint.model_id, endpoint=endpoint.id
            )
        status: int | None = None
        error: str | None = None
        if ctx is not None:
            ctx.upstream_since = time.perf_counter()
        try:
            async with self.client.open(upstream, provider) as response:
                status = response.status
                if ctx is not None:
                    _waited(ctx)
                if status != 200:
                    if ctx is not None:
                        ctx.upstream_since = time.perf_counter()
                    raw = await self.client.read_error_body(response)
                    if ctx is not None:
                        _waited(ctx)
                    try:
                        payload: Any = read_json(raw)
                        message = adapter.error_message(payload)
                    except (ValueError, TypeError):  # not JSON, or JSON no adapter reads
                        payload = raw.decode("utf-8", "replace")[:2000]
                        message = "upstream error"
                    raise UpstreamError(
                        provider,
                        "http",
                        message,
                        status=status,
                        raw=payload,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                yield Call(provider, adapter, response, self.client, ctx)
        except UpstreamError as exc:  # refused, unreadable, or cut midway
            error = f"{exc.kind}: {exc.message}"
            raise
        except BaseException as exc:  # cancelled (the client left), or a bug of ours
            error = type(exc).__name__
            raise
        finally:
            if ctx is not None:  # a failed open: the wait ends here
                _waited(ctx)
            if span is not None:
                self.tracing.end_attempt(span, status=status, error=error)
