"""One attempt at one endpoint, as the inference service's attempt loop drives it.

A leg reads the provider's answer (`take`), and then ends as exactly one of: `finish`
(the answer was whole), `fail` (the provider failed after output reached the client),
`cancel` (the client went away). `AnswerLeg` takes a whole answer and delivers nothing
before it ends; `StreamLeg` relays a stream chunk by chunk. While a leg has not
`started` (nothing reached the client), the loop may fall back to the next endpoint.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from crossroads.accounting.billing import Billed, usage_object
from crossroads.errors import GatewayError, StreamFailure
from crossroads.plugins.healing import heal
from crossroads.providers.base import Completion, UpstreamError
from crossroads.providers.reasoning import strip_reasoning
from crossroads.routing.attempt import Call
from crossroads.routing.context import elapsed_ms
from crossroads.routing.render import completion_body, completion_text, envelope
from crossroads.routing.run import Outcome, Run
from crossroads.schema.catalog import Endpoint
from crossroads.schema.chat import ResponseFormat


class Leg(ABC):
    """What both kinds of attempt share: the run, the endpoint, when it began."""

    def __init__(self, run: Run, endpoint: Endpoint) -> None:
        self.run, self.endpoint = run, endpoint
        self.since = time.perf_counter()
        self.started = False  # output reached the client: no fallback any more
        self.notes: list[str] = []  # what was done to the request for this endpoint
        self.prompt_estimate: int | None = None  # of the prompt sent, when it was compressed

    def latency_ms(self) -> float:
        return elapsed_ms(self.since)

    @abstractmethod
    def take(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        """The chunks for the client while the provider answers (none for a whole answer)."""

    @abstractmethod
    def finish(self) -> dict[str, Any]:
        """The answer was whole: account for it; the last thing the client gets."""

    def cancel(self) -> None:
        """The client went away before anything reached it: recorded as cancelled, charged
        nothing (the upstream call is closed)."""
        run = self.run
        run.record(
            Outcome(endpoint=self.endpoint, latency_ms=elapsed_ms(run.ctx.started), cancelled=True)
        )


class AnswerLeg(Leg):
    """A non-streamed attempt: the whole completion, then OpenRouter's chat completion."""

    completion: Completion | None = None

    async def take(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        self.completion = await call.completion()
        return
        yield  # an async generator: nothing reaches the client before the answer is whole

    def finish(self) -> dict[str, Any]:
        run, endpoint, completion = self.run, self.endpoint, self.completion
        assert completion is not None  # `take` ran to its end
        latency = self.latency_ms()
        choice = completion.choices[0] if completion.choices else {}
        finish, native = choice.get("finish_reason"), choice.get("native_finish_reason")
        reported = (completion.usage or {}).get("completion_tokens") is not None
        text = "" if reported else completion_text(choice.get("message") or {})
        billed = run.bill(
            completion.usage,
            endpoint,
            text=text,
            finish_reason=finish,
            prompt_estimate=self.prompt_estimate,
        )
        if run.job.hides_reasoning:
            for c in completion.choices:
                strip_reasoning(c.get("message") or {})
        if annotations := run.job.annotations():  # files read (sent back next turn), citations
            annotate(completion.choices, annotations)
        notes = [billed.note, *self.notes]
        if (healing := run.job.plugins.healing) is not None:
            notes += heal_choices(completion.choices, healing)
        note = "; ".join(n for n in notes if n) or None
        run.succeeded(endpoint, billed, first_token_ms=latency, total_ms=latency, note=note)
        run.record(
            Outcome(
                endpoint=endpoint,
                billed=billed,
                finish_reason=finish,
                native_finish_reason=native,
                upstream_id=completion.upstream_id,
                latency_ms=latency,
                generation_ms=latency,
            )
        )
        head = envelope(run.ctx, run.provider(endpoint), endpoint, "chat.completion")
        return completion_body(head, completion, usage_object(billed))


def annotate(choices: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> None:
    """Add `annotations` to each choice's message (after any the provider sent)."""
    for choice in choices:
        message = choice.setdefault("message", {})
        message["annotations"] = [*(message.get("annotations") or []), *annotations]


def heal_choices(choices: list[dict[str, Any]], fmt: ResponseFormat) -> list[str | None]:
    """`response-healing` on each choice's text (in place); what each one says of it."""
    notes: list[str | None] = []
    for choice in choices:
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            healed = heal(message["content"], fmt)
            message["content"] = healed.text
            notes.append(healed.note)
    return notes


class StreamLeg(Leg):
    """A streamed attempt: upstream chunks to OpenAI-shaped chunks, usage held for the last.

    A bare role preamble is held back until output follows, so that a provider failing
    before its first token can still be fallen back from. A stream the provider ends
    without output, or before its protocol's end, is an `UpstreamError`."""

    def __init__(self, run: Run, endpoint: Endpoint) -> None:
        super().__init__(run, endpoint)
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.native: str | None = None
        self.upstream_id: str | None = None
        self.text: list[str] = []
        self.first_at = 0.0
        self.head = envelope(run.ctx, run.provider(endpoint), endpoint, "chat.completion.chunk")

    async def take(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        held: list[dict[str, Any]] = []
        async for piece in call.chunks():
            chunk = self.absorb(piece)
            if chunk is None:
                continue
            if not self.started and not _has_output(chunk):
                held.append(chunk)  # a bare preamble: fallback is still possible
                continue
            if not self.started and (annotations := self.run.job.annotations()):
                chunk = _with_annotations(chunk, annotations)  # with the first output
            self.started = True
            for earlier in held:
                yield earlier
            held.clear()
            yield chunk
        if not self.started:
            if not held:
                raise UpstreamError(
                    call.provider, "invalid_response", "Provider ended the stream without output"
                )
            self.started = True  # only empty deltas, but a complete stream: pass it on
            for earlier in held:
                yield earlier

    def absorb(self, piece: dict[str, Any]) -> dict[str, Any] | None:
        """The client chunk for one upstream chunk; usage is held back for the final chunk."""
        self.upstream_id = self.upstream_id or piece.get("upstream_id")
        if piece.get("usage"):
            self.usage = piece["usage"]
        choices = piece.get("choices") or []
        if not choices:
            return None
        hide = self.run.job.hides_reasoning
        for c in choices:
            delta = c.get("delta") or {}
            for key in ("content", "reasoning"):
                if isinstance(delta.get(key), str):
                    self.text.append(delta[key])
            for call in delta.get("tool_calls") or []:
                self.text.append(str((call.get("function") or {}).get("arguments") or ""))
            if c.get("finish_reason"):
                self.finish_reason, self.native = c["finish_reason"], c.get("native_finish_reason")
            if hide:
                strip_reasoning(delta)
        if not self.first_at:
            self.first_at = time.perf_counter()
        return dict(self.head, choices=choices)

    @property
    def first_token_ms(self) -> float:
        if self.first_at:
            return round((self.first_at - self.since) * 1000, 3)
        return self.latency_ms()

    def _bill(self, finish: str | None) -> Billed:
        text = "".join(self.text)
        return self.run.bill(
            self.usage,
            self.endpoint,
            text=text,
            finish_reason=finish,
            prompt_estimate=self.prompt_estimate,
        )

    def _record(
        self, billed: Billed, *, error: GatewayError | None = None, cancelled: bool = False
    ) -> None:
        self.run.record(
            Outcome(
                endpoint=self.endpoint,
                billed=billed,
                finish_reason=self.finish_reason,
                native_finish_reason=self.native,
                upstream_id=self.upstream_id,
                latency_ms=elapsed_ms(self.run.ctx.started),
                generation_ms=elapsed_ms(self.first_at) if self.first_at else None,
                error=error,
                cancelled=cancelled,
            )
        )

    def finish(self) -> dict[str, Any]:
        """The stream ended normally: account for it; the last chunk carries the usage."""
        billed = self._bill(self.finish_reason)
        self.run.succeeded(
            self.endpoint,
            billed,
            first_token_ms=self.first_token_ms,
            total_ms=self.latency_ms(),
            note="; ".join(n for n in (billed.note, *self.notes) if n) or None,
        )
        self._record(billed)
        return dict(self.head, choices=[], usage=usage_object(billed))

    def fail(self, error: UpstreamError) -> StreamFailure:
        """The provider failed after output began: count what was delivered (zero-completion
        insurance waives the charge of an answer that ends in an error), end with the error."""
        self.finish_reason = "error"
        self.run.failed(self.endpoint, error, self.first_token_ms, midstream=True)
        gateway_error = error.to_gateway_error(midstream=True)
        self._record(self._bill("error"), error=gateway_error)
        return StreamFailure(gateway_error)

    def cancel(self) -> None:
        """The client disconnected: bill what was delivered, mark the record cancelled."""
        if not self.started:
            super().cancel()
            return
        billed = self._bill(self.finish_reason or "cancelled")
        self.run.succeeded(  # noted, not measured: a cut-off stream says nothing of throughput
            self.endpoint,
            billed,
            first_token_ms=self.first_token_ms,
            total_ms=self.latency_ms(),
            note="; ".join(n for n in ("cancelled by client", billed.note) if n),
            measured=False,
        )
        self._record(billed, cancelled=True)


def _with_annotations(chunk: dict[str, Any], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """`chunk` with the plugins' annotations in its first choice's delta."""
    choices = [dict(c) for c in chunk["choices"]]
    delta = dict(choices[0].get("delta") or {})
    delta["annotations"] = [*(delta.get("annotations") or []), *annotations]
    choices[0]["delta"] = delta
    return dict(chunk, choices=choices)


def _has_output(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries anything beyond the role preamble."""
    for choice in chunk["choices"]:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or any(v for k, v in delta.items() if k != "role"):
            return True
    return False
