"""One try at one endpoint: build the provider's request, open it, read its answer.

`Upstream.call()` yields a `Call` once the provider answered 200, and raises the
provider's `UpstreamError` otherwise. A `Call` reads a whole completion or decodes a
stream into OpenAI-shaped chunks; what the provider sends that cannot be read (wrong
types, bad JSON, too large, too deep, not UTF-8, a stream cut before its end) becomes
an `UpstreamError` too, so the router can fall back.

Every wait on the provider (opening the request, reading a body, each read of a stream)
is added to the request's `ProviderTime`: the gateway's overhead header and metric leave
that time out. With tracing on, each call is one
"crossroads.attempt" span (`telemetry/tracing.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from crossroads.providers.base import Adapter, Completion, UpstreamError
from crossroads.providers.http import UpstreamClient, parse_retry_after
from crossroads.providers.untrusted import read_json
from crossroads.routing.context import ProviderTime
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
    waits: ProviderTime  # where the time awaiting the provider is added

    async def completion(self) -> Completion:
        with self.waits:
            raw = await self.client.read_body(self.response, self.provider)
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
        waits = self.waits
        while True:
            try:
                with waits:
                    data = await anext(events)
            except StopAsyncIteration:
                break
            except (aiohttp.ClientError, UpstreamError):
                if decoder.ended:
                    break
                raise
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
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool, waits: ProviderTime
    ) -> AsyncIterator[Call]:
        """One try at `endpoint`: the open response once it answers 200, else an `UpstreamError`.
        The time awaiting the provider is added to `waits`."""
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
        try:
            async with AsyncExitStack() as stack:
                with waits:
                    response = await stack.enter_async_context(self.client.open(upstream, provider))
                status = response.status
                if status != 200:
                    with waits:
                        raw = await self.client.read_error_body(response)
                    raise _refusal(adapter, provider, response, raw)
                yield Call(provider, adapter, response, self.client, waits)
        except UpstreamError as exc:  # refused, unreadable, or cut midway
            error = f"{exc.kind}: {exc.message}"
            raise
        except BaseException as exc:  # cancelled (the client left), or a bug of ours
            error = type(exc).__name__
            raise
        finally:
            if span is not None:
                self.tracing.end_attempt(span, status=status, error=error)


def _refusal(
    adapter: Adapter, provider: Provider, response: aiohttp.ClientResponse, raw: bytes
) -> UpstreamError:
    """The provider's non-200 answer as its `UpstreamError`, its message read if it can be."""
    try:
        payload: Any = read_json(raw)
        message = adapter.error_message(payload)
    except (ValueError, TypeError):  # not JSON, or JSON no adapter reads
        payload = raw.decode("utf-8", "replace")[:2000]
        message = "upstream error"
    return UpstreamError(
        provider,
        "http",
        message,
        status=response.status,
        raw=payload,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
