"""The one place where Crossroads talks to providers over the network.

A single aiohttp session with pooled keep-alive connections serves every provider.
Transport failures become `UpstreamError`s; everything else is handed back as bytes
for the adapters to read. What a provider sends is bounded: a whole body by
`UpstreamLimits.max_body_bytes`, one stream event by `max_event_bytes`, a stream by a
total deadline and by the time it may stay silent between events. The client hears what
happened in plain words; network details (hosts, ports, errno) go to the server log.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
import orjson
import yarl

from crossroads.errors import redact
from crossroads.providers.base import UpstreamError, UpstreamRequest
from crossroads.providers.sse import SSEDecoder
from crossroads.schema.catalog import Provider

MAX_RETRY_AFTER = 3600.0  # a provider's Retry-After beyond an hour is capped to one
_ERROR_BODY_BYTES = 64 * 1024  # what is read of a non-200 answer


def _log() -> logging.Logger:
    return logging.getLogger("crossroads.upstream")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamLimits:
    """How much a provider may send, and for how long (see `Settings.upstream_*`)."""

    max_body_bytes: int = 16 * 1024 * 1024  # a whole non-streamed answer
    max_event_bytes: int = 1024 * 1024  # one event of a stream
    stream_seconds: float = 1800.0  # a whole stream, from its headers to its end
    idle_seconds: float = 300.0  # silence between two stream events (or before the first)

    def idle_for(self, provider: Provider) -> float:
        """A provider's `timeout_seconds` lowers the idle limit for that provider."""
        return min(self.idle_seconds, provider.timeout_seconds)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header in seconds: delay-seconds or an HTTP date; None when absent or
    unusable (inf, nan, negative, garbage); at most `MAX_RETRY_AFTER`."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _unreachable(exc: aiohttp.ClientError) -> str:
    """Why a connection could not be made, without the host and port."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return "Cannot reach provider: TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "Cannot reach provider: host name not found"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED:
            return "Cannot reach provider: connection refused"
        return "Cannot reach provider: connection failed"
    return _broken(exc)


def _broken(exc: aiohttp.ClientError) -> str:
    """What went wrong on an open connection, in words a client can act on."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "The provider closed the connection before its answer was complete"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "The provider closed the connection without answering"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "The provider sent a malformed HTTP response"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _unreachable(exc)
    return "Provider connection failed"


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` bytes (the rest is not read)."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class UpstreamClient:
    """Pooled HTTP to providers. `start()` inside the running loop, `close()` at shutdown."""

    def __init__(
        self, *, max_connections: int = 1000, limits: UpstreamLimits | None = None
    ) -> None:
        self._max_connections = max_connections
        self.limits = limits or UpstreamLimits()
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

    def _timeout(self, provider: Provider, *, stream: bool) -> aiohttp.ClientTimeout:
        if stream:  # a stream may run long; what must not stall is each read
            return aiohttp.ClientTimeout(
                connect=provider.connect_timeout_seconds,
                sock_read=self.limits.idle_for(provider),
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
        where = _loggable(request.url, provider)
        try:
            response = await self.session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._timeout(provider, stream=request.stream),
            )
        except aiohttp.ConnectionTimeoutError:
            _log().warning("provider %s: connecting to %s timed out", provider.slug, where)
            raise UpstreamError(
                provider, "timeout", "Provider timed out: the connection was not accepted"
            ) from None
        except TimeoutError:
            raise UpstreamError(provider, "timeout", "Provider timed out") from None
        except aiohttp.ClientError as exc:
            _log().warning(
                "provider %s: cannot connect to %s: %s",
                provider.slug,
                where,
                _redacted(exc, provider),
            )
            raise UpstreamError(provider, "connection", _unreachable(exc)) from None
        try:
            yield response
        except TimeoutError:
            raise UpstreamError(provider, "timeout", "Provider timed out") from None
        except aiohttp.ClientError as exc:
            _log().warning(
                "provider %s: connection to %s failed: %s",
                provider.slug,
                where,
                _redacted(exc, provider),
            )
            raise UpstreamError(provider, "connection", _broken(exc)) from None
        finally:
            response.close()

    async def read_body(self, response: aiohttp.ClientResponse, provider: Provider) -> bytes:
        """A whole answer; an `UpstreamError` past `max_body_bytes`."""
        limit = self.limits.max_body_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise _too_large(provider, limit)
        body = bytearray()
        async for block in response.content.iter_any():
            body += block
            if len(body) > limit:
                raise _too_large(provider, limit)
        return bytes(body)

    @staticmethod
    async def read_error_body(response: aiohttp.ClientResponse) -> bytes:
        """The start of a non-200 answer: enough for its error message, never all of it."""
        body = bytearray()
        async for block in response.content.iter_any():
            body += block
            if len(body) >= _ERROR_BODY_BYTES:
                break
        return bytes(body[:_ERROR_BODY_BYTES])

    async def get_json(
        self,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        limit: int = 2 << 20,
    ) -> object:
        """A small GET (local discovery, the web search): the answer read as JSON, at most
        `limit` bytes of it. Raises `OSError` when nothing answers or the status is not 2xx,
        ValueError for an answer that is not JSON or is too large."""
        try:
            async with self.session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                response.raise_for_status()
                raw = await _read_at_most(response, limit)
        except aiohttp.ClientError as error:
            raise OSError(redact(str(error))) from None
        if raw is None:
            raise ValueError(f"an answer of more than {limit} bytes")
        return orjson.loads(raw)  # orjson.JSONDecodeError is a ValueError

    async def post_json(
        self, url: str, body: object, *, headers: Mapping[str, str], timeout: float, limit: int
    ) -> tuple[int, object]:
        """A small JSON POST (the moderation plugin's check): the status and the answer read
        as JSON (None when it is not), at most `limit` bytes of it; raises `OSError`-like
        errors (and TimeoutError) when nothing answers in time."""
        try:
            async with self.session.post(
                url,
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await _read_at_most(response, limit)
                status = response.status
        except aiohttp.ClientError as error:
            raise OSError(redact(str(error))) from None
        if raw is None:
            return status, None
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return status, None

    async def events(
        self, response: aiohttp.ClientResponse, provider: Provider
    ) -> AsyncIterator[str]:
        """The `data` payloads of an SSE response, in order, within the stream limits."""
        limits = self.limits
        idle = limits.idle_for(provider)
        deadline = time.monotonic() + limits.stream_seconds
        decoder = SSEDecoder(max_event_bytes=limits.max_event_bytes)
        pending = b""  # the part of a line not yet ended
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            wait = min(quiet_since + idle, deadline) - now
            try:
                if wait <= 0:
                    raise TimeoutError
                async with asyncio.timeout(wait):
                    block = await response.content.readany()
            except TimeoutError:
                raise _stalled(provider, deadline, limits.stream_seconds, idle) from None
            if not block:
                break
            lines = (pending + block).split(b"\n")
            pending = lines.pop()
            if len(pending) > limits.max_event_bytes:
                raise _event_too_large(provider, limits.max_event_bytes)
            for line in lines:
                data = _feed(decoder, line, provider)
                if data is not None:
                    yield data
                    quiet_since = time.monotonic()
        for data in (_feed(decoder, pending, provider) if pending else None, decoder.flush()):
            if data is not None:
                yield data


def _loggable(url: str, provider: Provider) -> str:
    """A URL for the log: no `user:password@`, no credentials in its query."""
    try:
        url = str(yarl.URL(url).with_user(None))
    except (TypeError, ValueError):
        pass
    return redact(url, (provider.api_key,))


def _redacted(exc: BaseException, provider: Provider) -> str:
    """An exception for the log: its repr may carry the URL, so without credentials."""
    return redact(repr(exc), (provider.api_key,))


def _feed(decoder: SSEDecoder, line: bytes, provider: Provider) -> str | None:
    try:
        return decoder.feed(line)
    except UnicodeDecodeError:
        raise UpstreamError(
            provider, "invalid_response", "The provider's stream is not valid UTF-8"
        ) from None
    except OverflowError:
        raise _event_too_large(provider, decoder.max_event_bytes or 0) from None


def _too_large(provider: Provider, limit: int) -> UpstreamError:
    return UpstreamError(
        provider, "invalid_response", f"The provider's answer is larger than {limit} bytes"
    )


def _event_too_large(provider: Provider, limit: int) -> UpstreamError:
    return UpstreamError(
        provider, "invalid_response", f"The provider sent a stream event larger than {limit} bytes"
    )


def _stalled(provider: Provider, deadline: float, total: float, idle: float) -> UpstreamError:
    if time.monotonic() >= deadline - 0.001:
        message = f"Provider timed out: the stream did not finish within {total:g} s"
    else:
        message = f"Provider timed out: the stream sent nothing for {idle:g} s"
    return UpstreamError(provider, "timeout", message)
