"""One try at one endpoint: build the provider's request, open it, read its answer.

`Upstream.call()` yields a `Call` once the provider answered 200, and raises the
provider's `UpstreamError` otherwise. A `Call` reads a whole completion or decodes a
stream into OpenAI-shaped chunks; what the provider sends that cannot be read becomes
an `UpstreamError` too, so the router can fall back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from crossroads.providers.base import Adapter, Completion, UpstreamError
from crossroads.providers.http import UpstreamClient
from crossroads.schema.catalog import Endpoint, Provider

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

    async def completion(self) -> Completion:
        raw = await self.response.read()
        try:
            return self.adapter.parse_chat_response(orjson.loads(raw))
        except _UNREADABLE as exc:
            raise UpstreamError(
                self.provider, "invalid_response", f"Invalid response from provider: {exc}"
            ) from None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The stream's OpenAI-shaped chunks, in order, until `[DONE]` or the end of the body."""
        decoder = self.adapter.stream_decoder()
        async for data in UpstreamClient.events(self.response):
            if data.strip() == "[DONE]":
                return
            try:
                pieces = decoder.feed(data)
            except _UNREADABLE as exc:
                raise UpstreamError(
                    self.provider, "invalid_response", f"Provider stream failed: {exc}"
                ) from None
            for piece in pieces:
                yield piece


class Upstream:
    """The providers as the router sees them: who serves an endpoint, in which protocol, and how."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        adapters: Mapping[str, Adapter],
        client: UpstreamClient,
    ):
        self.providers = providers
        self.adapters = adapters
        self.client = client

    @asynccontextmanager
    async def call(
        self, endpoint: Endpoint, body: dict[str, Any], *, stream: bool
    ) -> AsyncIterator[Call]:
        """One try at `endpoint`: the open response once it answers 200, else an `UpstreamError`."""
        provider = self.providers[endpoint.provider]
        adapter = self.adapters[provider.api or ""]
        upstream = adapter.build_chat_request(body, endpoint, provider, stream=stream)
        async with self.client.open(upstream, provider) as response:
            if response.status != 200:
                raw = await response.read()
                try:
                    payload: Any = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    payload = raw.decode("utf-8", "replace")[:2000]
                raise UpstreamError(
                    provider,
                    "http",
                    adapter.error_message(payload),
                    status=response.status,
                    raw=payload,
                    retry_after=self.client.retry_after(response),
                )
            yield Call(provider, adapter, response)
