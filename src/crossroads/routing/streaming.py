"""The streaming relay: upstream SSE chunks to OpenAI-shaped chunks, with fallback before output."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from crossroads.providers.base import UpstreamError
from crossroads.providers.reasoning import strip_reasoning
from crossroads.routing.plan import Plan
from crossroads.routing.run import RequestContext, Run, elapsed_ms
from crossroads.schema.catalog import Endpoint
from crossroads.schema.chat import ChatRequest
from crossroads.telemetry.records import Attempt

if TYPE_CHECKING:
    from crossroads.routing.executor import Executor


class ChatStream:
    """One streamed chat completion: `chunks()` yields OpenAI-shaped chunks.

    Until the first chunk is yielded, a failing endpoint falls back to the next one and
    the client has seen nothing. Once chunks flow, a failure ends the stream with an
    error chunk. If every endpoint fails first, `chunks()` raises the GatewayError.
    """

    def __init__(self, ex: Executor, plan: Plan, request: ChatRequest, body: dict[str, Any], ctx: RequestContext):
        self.run = Run(ex, plan, request, body, ctx, streamed=True)
        self.ex, self.body = ex, body
        self.started = False

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        run = self.run
        for endpoint in run.plan.endpoints:
            if endpoint.model_id in run.skip_models:
                continue
            relay = _Relay(run, endpoint)
            held: list[dict[str, Any]] = []
            since = time.perf_counter()
            try:
                async with self.ex.attempt(endpoint, self.body, stream=True) as (response, provider, adapter):
                    decoder = adapter.stream_decoder()
                    async for data in self.ex.client.events(response):
                        if data.strip() == "[DONE]":
                            break
                        try:
                            pieces = decoder.feed(data)
                        except (ValueError, TypeError, KeyError) as exc:
                            raise UpstreamError(provider, "invalid_response", f"Provider stream failed: {exc}") from None
                        for piece in pieces:
                            chunk = relay.absorb(piece)
                            if chunk is None:
                                continue
                            if not self.started and not _has_output(chunk):
                                held.append(chunk)  # a bare preamble: fallback is still possible
                                continue
                            self.started = True
                            for earlier in held:
                                yield earlier
                            held.clear()
                            yield chunk
                    if not self.started:
                        if not held:
                            raise UpstreamError(provider, "invalid_response", "Provider ended the stream without output")
                        self.started = True  # only empty deltas, but a complete stream: pass it on
                        for earlier in held:
                            yield earlier
            except UpstreamError as error:
                if not self.started:
                    run.failed(endpoint, error, since)
                    continue
                yield relay.fail(error, since)
                return
            except BaseException:  # the client went away (cancellation) or the consumer closed us
                if self.started:
                    relay.cancel(since)
                else:
                    run.record(endpoint, None, None, None, None, elapsed_ms(run.ctx.started), None, cancelled=True)
                raise
            yield relay.finish(since)
            return
        raise run.give_up()


def _has_output(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries anything beyond the role preamble."""
    for choice in chunk["choices"]:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or any(v for k, v in delta.items() if k != "role"):
            return True
    return False


class _Relay:
    """State of one streaming attempt: usage, finish reason, timing, text so far."""

    def __init__(self, run: Run, endpoint: Endpoint) -> None:
        self.run, self.endpoint = run, endpoint
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.native: str | None = None
        self.upstream_id: str | None = None
        self.text: list[str] = []
        self.first_at = 0.0

    def absorb(self, piece: dict[str, Any]) -> dict[str, Any] | None:
        """The client chunk for one upstream chunk; usage is held back for the final chunk."""
        self.upstream_id = self.upstream_id or piece.get("upstream_id")
        if piece.get("usage"):
            self.usage = piece["usage"]
        choices = piece.get("choices") or []
        if not choices:
            return None
        for c in choices:
            delta = c.get("delta") or {}
            for key in ("content", "reasoning"):
                if isinstance(delta.get(key), str):
                    self.text.append(delta[key])
            for call in delta.get("tool_calls") or []:
                self.text.append(str((call.get("function") or {}).get("arguments") or ""))
            if c.get("finish_reason"):
                self.finish_reason, self.native = c["finish_reason"], c.get("native_finish_reason")
            if self.run.exclude_reasoning:
                strip_reasoning(delta)
        if not self.first_at:
            self.first_at = time.perf_counter()
        chunk = self.run.header(self.endpoint, "chat.completion.chunk")
        chunk["choices"] = choices
        return chunk

    def _close(self, since: float, usage: dict[str, Any], *, ok: bool, **extra: Any) -> None:
        ttft = round((self.first_at - since) * 1000, 3) if self.first_at else elapsed_ms(since)
        generation = elapsed_ms(self.first_at) if self.first_at else None
        ex = self.run.ex
        if ok:
            seconds = (generation or 0) / 1000
            tokens = usage.get("completion_tokens") or 0
            ex.stats.record_success(self.endpoint.id, ttft, tokens / seconds if seconds and tokens > 1 else None)
        provider = ex.catalog.providers[self.endpoint.provider]
        self.run.attempts.append(Attempt(self.endpoint.provider, provider.name, self.endpoint.tag,
                                         self.endpoint.model_id, 200, ttft, extra.get("note")))
        self.run.record(self.endpoint, usage, self.finish_reason, self.native, self.upstream_id, elapsed_ms(self.run.ctx.started),
                        generation, cancelled=extra.get("cancelled", False), error=extra.get("error"))

    def finish(self, since: float) -> dict[str, Any]:
        usage = self.run.usage(self.usage, "".join(self.text), self.endpoint, self.finish_reason)
        self._close(since, usage, ok=True)
        chunk = self.run.header(self.endpoint, "chat.completion.chunk")
        chunk.update(choices=[], usage=usage)
        return chunk

    def fail(self, error: UpstreamError, since: float) -> dict[str, Any]:
        self.finish_reason = "error"
        self.run.ex.stats.record_failure(self.endpoint.id, rate_limited=error.status == 429)
        usage = self.run.usage(self.usage, "".join(self.text), self.endpoint, "error")
        gateway_error = error.to_gateway_error()
        self._close(since, usage, ok=False, error=gateway_error, note=error.message)
        chunk = self.run.header(self.endpoint, "chat.completion.chunk")
        chunk["error"] = {"code": gateway_error.status, "message": gateway_error.message,
                          "metadata": gateway_error.metadata}
        chunk["choices"] = [{"index": 0, "delta": {"content": ""}, "finish_reason": "error",
                             "native_finish_reason": None}]
        return chunk

    def cancel(self, since: float) -> None:
        """The client disconnected: bill what was delivered, mark the record cancelled."""
        usage = self.run.usage(self.usage, "".join(self.text), self.endpoint, self.finish_reason or "cancelled")
        self._close(since, usage, ok=True, cancelled=True, note="cancelled by client")
