"""The streaming response of every inference route, as a raw ASGI responder.

The HTTP status is chosen late: the response starts when the first chunk is ready, so
an error before it is still a plain JSON error with the right status. If the first
chunk is slow, the response starts anyway and `: OPENROUTER PROCESSING` comments keep
the connection alive while the router may still fall back. A client that disconnects
cancels the relay, which closes the upstream connection. An `Encoder` turns the
router's OpenAI-shaped chunks into the wire events of the route's dialect. While a
stream is served, the gateway's `crossroads_open_streams` gauge counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol

import orjson
from starlette.types import Receive, Scope, Send

from crossroads.errors import GatewayError, StreamFailure
from crossroads.telemetry.metrics import Metrics

KEEPALIVE = b": OPENROUTER PROCESSING\n\n"
_HEADER = ("id", "provider", "model", "object", "created")  # what every chunk of one stream repeats


class Encoder(Protocol):
    def event(self, chunk: dict[str, Any]) -> bytes:
        """Wire bytes for one chunk (possibly several events, possibly none)."""

    def close(self) -> bytes:
        """Wire bytes after the last chunk of a stream that ended normally."""

    def failure(self, error: GatewayError) -> bytes:
        """Wire bytes for an error after the response started: the stream's last event."""


def data_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\n" + data_event(payload)


class ChatEncoder:
    """OpenAI chat-completion chunks, as OpenRouter streams them."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = (
            None  # the latest chunk: a mid-stream error repeats its header
        )

    def event(self, chunk: dict[str, Any]) -> bytes:
        self.last = chunk
        return data_event(chunk)

    def close(self) -> bytes:
        return b"data: [DONE]\n\n"

    def failure(self, error: GatewayError) -> bytes:
        if self.last is None:  # nothing streamed yet: a bare error event
            return data_event({"error": error.error_object(), "choices": []})
        header: dict[str, Any] = {k: self.last[k] for k in _HEADER if k in self.last}
        return data_event(
            {
                **header,
                "error": error.error_object(),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": ""},
                        "finish_reason": "error",
                        "native_finish_reason": None,
                    }
                ],
            }
        )


class SSEStream:
    """The ASGI response of a stream: `chunks` yields chat chunks, then maybe a `StreamFailure`."""

    def __init__(
        self,
        chunks: AsyncGenerator[dict[str, Any] | StreamFailure, None],
        *,
        headers: dict[str, str],
        keepalive: float,
        encoder: Encoder,
        error_body: Callable[[GatewayError], dict[str, Any]],
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.chunks = chunks
        self.on_close = on_close  # after the chunks are closed: whatever they left undone
        self.headers = headers
        self.keepalive = keepalive
        self.encoder = encoder
        self.error_body = error_body
        self.started = False

    async def _start(
        self, send: Send, status: int = 200, content_type: bytes = b"text/event-stream"
    ) -> None:
        headers = [(b"content-type", content_type)]
        if content_type.startswith(b"text/event-stream"):
            headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        self.started = True

    async def _relay(self, send: Send) -> None:
        async def body(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async def end(data: bytes = b"") -> None:
            await send({"type": "http.response.body", "body": data})

        first = asyncio.ensure_future(anext(self.chunks))
        try:
            while True:
                done, _ = await asyncio.wait({first}, timeout=self.keepalive)
                if done:
                    break
                if not self.started:
                    await self._start(send)
                await body(KEEPALIVE)
            item = first.result()
        except GatewayError as error:
            if not self.started:
                self.headers.update(
                    error.headers
                )  # keeps X-Generation-Id: the failed attempts are on record
                await self._start(send, error.status, b"application/json")
                await end(orjson.dumps(self.error_body(error)))
                return
            await end(self.encoder.failure(error))
            return
        finally:
            if not first.done():  # cancelled by a disconnect: let the relay unwind first
                first.cancel()
                await asyncio.wait({first})
        if not self.started:
            await self._start(send)
        while True:
            if isinstance(
                item, StreamFailure
            ):  # a failure mid-stream: the error event is the last one
                await end(self.encoder.failure(item.error))
                return
            await body(self.encoder.event(item))
            try:
                item = await anext(self.chunks)
            except StopAsyncIteration:
                break
        await end(self.encoder.close())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = _metrics(scope)
        if metrics is not None:
            metrics.stream_opened()
        try:
            await self._serve(receive, send)
        finally:
            if metrics is not None:
                metrics.stream_closed()

    async def _serve(self, receive: Receive, send: Send) -> None:
        relay = asyncio.ensure_future(self._relay(send))

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    relay.cancel()
                    return

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await relay
        except asyncio.CancelledError:
            if not relay.cancelled():
                raise
        except OSError:  # the socket went away while we wrote
            pass
        finally:
            watcher.cancel()
            await self.chunks.aclose()
            self.on_close()


def _metrics(scope: Scope) -> Metrics | None:
    """The gateway's metrics (for the open-streams gauge), when served by the app."""
    state = getattr(scope.get("app"), "state", None)
    metrics = getattr(getattr(state, "gateway", None), "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None
