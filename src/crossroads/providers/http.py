"""The one place where Crossroads talks to providers over the network.

A single aiohttp session with pooled keep-alive connections serves every provider.
Transport failures become `UpstreamError`s; everything else is handed back as bytes
for the adapters to read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from crossroads.providers.base import UpstreamError, UpstreamRequest
from crossroads.providers.sse import SSEDecoder
from crossroads.schema.catalog import Provider


class UpstreamClient:
    """Pooled HTTP to providers. `start()` inside the running loop, `close()` at shutdown."""

    def __init__(self, *, max_connections: int = 1000) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, ttl_dns_cache=300, keepalive_timeout=60
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, trust_env=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        return self._session

    @staticmethod
    def _timeout(provider: Provider, *, stream: bool) -> aiohttp.ClientTimeout:
        if stream:  # a stream may run long; what must not stall is each read
            return aiohttp.ClientTimeout(
                connect=provider.connect_timeout_seconds, sock_read=provider.timeout_seconds
            )
        return aiohttp.ClientTimeout(
            total=provider.timeout_seconds, connect=provider.connect_timeout_seconds
        )

    @asynccontextmanager
    async def open(
        self, request: UpstreamRequest, provider: Provider
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `request`; yields the response once its status line and headers arrived.

        Leaving the block early (an error, a cancelled client) closes the connection, which
        is how the provider learns to stop generating.
        """
        try:
            response = await self.session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._timeout(provider, stream=request.stream),
            )
        except TimeoutError:
            raise UpstreamError(provider, "timeout", "Provider timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(provider, "connection", f"Cannot reach provider: {exc}") from None
        try:
            yield response
        except TimeoutError:
            raise UpstreamError(provider, "timeout", "Provider timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                provider, "connection", f"Provider connection failed: {exc}"
            ) from None
        finally:
            response.close()

    async def get_json(self, url: str, *, timeout: float) -> object:
        """A small GET (local discovery); raises `OSError`-like errors when nothing answers."""
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    @staticmethod
    async def events(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
        """The `data` payloads of an SSE response, in order."""
        decoder = SSEDecoder()
        async for line in response.content:
            data = decoder.feed(line)
            if data is not None:
                yield data
        data = decoder.flush()
        if data is not None:
            yield data

    @staticmethod
    def retry_after(response: aiohttp.ClientResponse) -> float | None:
        """A provider's `Retry-After`, in seconds, when it sent a number."""
        try:
            return float(response.headers.get("Retry-After", ""))
        except ValueError:
            return None
