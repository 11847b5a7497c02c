"""The streaming relay: upstream chunks to OpenAI-shaped chunks, with fallback before output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from crossroads.errors import GatewayError, StreamFailure
from crossroads.providers.base import UpstreamError
from crossroads.providers.reasoning import strip_reasoning
from crossroads.routing.attempt import Upstream
from crossroads.routing.context import elapsed_ms
from crossroads.routing.run import Outcome, Run
from crossroads.schema.catalog import Endpoint


class ChatStream:
    """One streamed chat completion: `chunks()` yields OpenAI-shaped chunks.

    Until the first chunk is yielded, a failing endpoint falls back to the next one and
    the client has seen nothing. Once chunks flow, a failure ends the stream with a
    `StreamFailure`; so does a stream the provider ends before its protocol's end (no
    finish reason, no end marker): it was cut short, not finished. If every endpoint fails
    first, `chunks()` raises the GatewayError.
    """

    def __init__(self, upstream: Upstream, run: Run, body: dict[str, Any]) -> None:
        self.upstream, self.run, self.body = upstream, run, body
        self.started = False

    async def chunks(self) -> AsyncGenerator[dict[str, Any] | StreamFailure, None]:
        run = self.run
        for endpoint in run.endpoints():
            relay = _Relay(run, endpoint)
            held: list[dict[str, Any]] = []
            try:
                async with self.upstream.call(
                    endpoint, self.body, stream=True, ctx=run.ctx
                ) as call:
                    async for piece in call.chunks():
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
                            raise UpstreamError(
                                call.provider,
                                "invalid_response",
                                "Provider ended the stream without output",
                            )
                        self.started = True  # only empty deltas, but a complete stream: pass it on
                        for earlier in held:
                            yield earlier
            except UpstreamError as error:
                if not self.started:
                    run.failed(endpoint, error, elapsed_ms(relay.since))
                    continue
                yield relay.fail(error)
                return
            except (asyncio.CancelledError, GeneratorExit):
                # the client went away (cancellation) or the consumer closed us
                if self.started:
                    relay.cancel()
                else:
                    run.record(
                        Outcome(
                            endpoint=endpoint,
                            latency_ms=elapsed_ms(run.ctx.started),
                            cancelled=True,
                        )
                    )
                raise
            except Exception:  # a bug of ours, not the client's doing: record it, then let it out
                run.record(  # not charged: the failure is the gateway's
                    Outcome(
                        endpoint=endpoint if self.started else None,
                        finish_reason="error",
                        latency_ms=elapsed_ms(run.ctx.started),
                        error=GatewayError(500, "Internal server error"),
                    )
                )
                raise
            yield relay.finish()
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
        self.since = time.perf_counter()
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

    @property
    def first_token_ms(self) -> float:
        return (
            round((self.first_at - self.since) * 1000, 3)
            if self.first_at
            else elapsed_ms(self.since)
        )

    def _usage(self, finish: str | None) -> tuple[dict[str, Any], str | None]:
        return self.run.billed_usage(self.usage, "".join(self.text), self.endpoint, finish)

    def _record(self, usage: dict[str, Any], **outcome: Any) -> None:
        self.run.record(
            Outcome(
                endpoint=self.endpoint,
                usage=usage,
                finish_reason=self.finish_reason,
                native_finish_reason=self.native,
                upstream_id=self.upstream_id,
                latency_ms=elapsed_ms(self.run.ctx.started),
                generation_ms=elapsed_ms(self.first_at) if self.first_at else None,
                **outcome,
            )
        )

    def finish(self) -> dict[str, Any]:
        """The stream ended normally: account for it; the last chunk carries the usage."""
        usage, note = self._usage(self.finish_reason)
        self.run.succeeded(
            self.endpoint,
            usage,
            first_token_ms=self.first_token_ms,
            total_ms=elapsed_ms(self.since),
            note=note,
        )
        self._record(usage)
        chunk = self.run.header(self.endpoint, "chat.completion.chunk")
        chunk.update(choices=[], usage=usage)
        return chunk

    def fail(self, error: UpstreamError) -> StreamFailure:
        """The provider failed after output began: count what was delivered (zero-completion
        insurance waives the charge of an answer that ends in an error), end with the error."""
        self.finish_reason = "error"
        self.run.failed(self.endpoint, error, self.first_token_ms, midstream=True)
        gateway_error = error.to_gateway_error(midstream=True)
        usage, _ = self._usage("error")
        self._record(usage, error=gateway_error)
        return StreamFailure(gateway_error)

    def cancel(self) -> None:
        """The client disconnected: bill what was delivered, mark the record cancelled."""
        usage, note = self._usage(self.finish_reason or "cancelled")
        self.run.succeeded(  # noted, not measured: a cut-off stream says nothing of throughput
            self.endpoint,
            usage,
            first_token_ms=self.first_token_ms,
            total_ms=elapsed_ms(self.since),
            note="; ".join(n for n in ("cancelled by client", note) if n),
            measured=False,
        )
        self._record(usage, cancelled=True)
