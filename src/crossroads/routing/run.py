"""Bookkeeping of one request across its attempts: statistics, spend, the generation record.

The inference service (`routing.service`) drives the attempts; every failed one goes
through `failed()`, every answer through `succeeded()`, and the request ends with exactly
one `record()` of its `Outcome`. Every measured attempt becomes one `AttemptSample` for
the stats sink (live statistics and circuits); a stream the client cut off becomes none.
Billing is `accounting.billing`'s; rendering is `routing.render`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from crossroads.accounting.billing import Billed, Bounds, bill_usage
from crossroads.accounting.money import to_usd
from crossroads.errors import GatewayError
from crossroads.providers.base import UpstreamError
from crossroads.routing.context import elapsed_ms
from crossroads.routing.job import Job
from crossroads.routing.tokens import estimate_text_tokens
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.schema.generation import Attempt, GenerationRecord, RecordSink
from crossroads.schema.limits import Ticket
from crossroads.telemetry.sample import AttemptSample, Verdict


class StatsSink(Protocol):
    """Takes one `AttemptSample` per measured attempt (live statistics, circuits)."""

    def observe(self, sample: AttemptSample) -> None: ...


class SpendSink(Protocol):
    """Settles a request's admission ticket at its real cost in pico-USD (`limits.Limits`);
    whether the charge was drawn from the account balance (it then gets a ledger row)."""

    def settle(self, ticket: Ticket | None, *, cost: int, tokens: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Sinks:
    """What a run records into: attempt samples (live statistics and circuits), key spend,
    generation records."""

    providers: Mapping[str, Provider]
    stats: StatsSink
    spend: SpendSink
    records: RecordSink


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How a request ended, for its generation record; unknown fields stay None."""

    endpoint: Endpoint | None = None
    billed: Billed | None = None
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    upstream_id: str | None = None
    latency_ms: float | None = None
    generation_ms: float | None = None
    cancelled: bool = False
    error: GatewayError | None = None


def final_error(errors: list[UpstreamError]) -> GatewayError:
    """The error that ends a request after every attempt failed."""
    if errors and all(e.status == 429 for e in errors):
        hints = [e.retry_after for e in errors if e.retry_after]
        retry = min(hints) if hints else None
        last = errors[-1]
        return GatewayError(
            429,
            "Every provider for this request is rate limited; retry later",
            metadata={
                "provider_name": last.provider.name,
                "raw": last.raw,
                "previous_errors": [e.summary() for e in errors],
                "availability": {
                    "code": "capacity_exhausted",
                    "retryable": True,
                    "retry_after": retry,
                },
            },
            headers={"Retry-After": str(math.ceil(retry))} if retry else None,
        )
    if not errors:  # nothing was tried: a plan is never empty, but never answer an IndexError
        return GatewayError(
            404,
            "No endpoints found matching your provider constraints",
            metadata={"availability": {"code": "constraint_filtered", "retryable": False}},
        )
    return errors[-1].to_gateway_error(previous=errors[:-1])


class Run:
    """One request's attempts, from its plan to its record."""

    def __init__(self, sinks: Sinks, job: Job, *, streamed: bool) -> None:
        self.sinks, self.job, self.ctx = sinks, job, job.ctx
        self.streamed = streamed
        ticket = job.ctx.ticket
        held = ticket is not None and (ticket.key_hold or ticket.balance)
        self.bounds = Bounds(
            prompt_estimate=job.plan.prompt_tokens,
            requested_output=job.request.completion_limit,
            reasoning=job.reasons,
            reserved=ticket.reserved if ticket is not None and held else None,
        )
        self.attempts: list[Attempt] = []
        self.errors: list[UpstreamError] = []
        self.skip_models: set[str] = set()
        self.recorded = False  # `record` ran: the request is settled and its record submitted

    def endpoints(self) -> Iterator[Endpoint]:
        """The plan's endpoints still worth trying (a model that refused the request is skipped)."""
        for endpoint in self.job.plan.endpoints:
            if endpoint.model_id not in self.skip_models:
                yield endpoint

    def provider(self, endpoint: Endpoint) -> Provider:
        return self.sinks.providers[endpoint.provider]

    def bill(
        self,
        reported: dict[str, Any] | None,
        endpoint: Endpoint,
        *,
        text: str,
        finish_reason: str | None,
        prompt_estimate: int | None = None,
    ) -> Billed:
        """The provider's counts (`reported`; `text` estimates a missing completion count),
        bounded by the request and priced on `endpoint`, never above what admission held;
        `prompt_estimate`: the prompt sent to this endpoint, when it is not the request's
        (compressed to fit it)."""
        completion_missing = not reported or reported.get("completion_tokens") is None
        bounds = self.bounds
        if prompt_estimate is not None:
            bounds = replace(bounds, prompt_estimate=prompt_estimate)
        return bill_usage(
            reported,
            endpoint=endpoint,
            bounds=bounds,
            completion_estimate=estimate_text_tokens(text) if completion_missing else 0,
            finish_reason=finish_reason,
        )

    def _note(
        self, endpoint: Endpoint, status: int | None, latency_ms: float, error: str | None = None
    ) -> None:
        provider = self.provider(endpoint)
        self.attempts.append(
            Attempt(
                endpoint.provider,
                provider.name,
                endpoint.tag,
                endpoint.model_id,
                status,
                latency_ms,
                error,
            )
        )

    def succeeded(
        self,
        endpoint: Endpoint,
        billed: Billed,
        *,
        first_token_ms: float,
        total_ms: float,
        note: str | None = None,
        measured: bool = True,
    ) -> None:
        """An attempt answered: latency is the time to its first token (to the whole answer when not
        streamed); throughput is output tokens per second after the first token (unknown when not
        streamed, where the first token is not seen apart from the last). Not `measured` (a
        stream the client cut off), the attempt is noted; the live statistics stay as they were.
        """
        if not measured:
            self._note(endpoint, 200, first_token_ms, note)
            return
        generation_s = (total_ms - first_token_ms) / 1000
        tokens = int(billed.counts.get("completion_tokens") or 0)
        throughput = tokens / generation_s if generation_s > 0 and tokens > 1 else None
        self.sinks.stats.observe(
            AttemptSample(
                endpoint_id=endpoint.id,
                provider=endpoint.provider,
                model=endpoint.model_id,
                verdict=Verdict.OK,
                latency_ms=first_token_ms,
                throughput=throughput,
                prompt_tokens=int(billed.counts.get("prompt_tokens") or 0),
                completion_tokens=tokens,
                prompt_cost=to_usd(billed.bill.prompt),
                completion_cost=to_usd(billed.bill.completion),
            )
        )
        self._note(endpoint, 200, first_token_ms, note)

    def failed(
        self,
        endpoint: Endpoint,
        error: UpstreamError,
        latency_ms: float,
        *,
        midstream: bool = False,
    ) -> None:
        """An attempt failed; before output reached the client, the next endpoint may be tried.
        A rate limit (429) is RATE_LIMITED, the caller's own request refused (400, 413, 422:
        no fallback) is REFUSED, any other failure of the provider is FAILED."""
        if error.status == 429:
            verdict = Verdict.RATE_LIMITED
        elif not error.fallback_allowed:
            verdict = Verdict.REFUSED
        else:
            verdict = Verdict.FAILED
        self.sinks.stats.observe(
            AttemptSample(
                endpoint_id=endpoint.id,
                provider=endpoint.provider,
                model=endpoint.model_id,
                verdict=verdict,  # no latency: a failure shows no first token
                retry_after=error.retry_after if verdict is Verdict.RATE_LIMITED else None,
            )
        )
        self._note(endpoint, 200 if midstream else error.status, latency_ms, error.message)
        self.errors.append(error)
        if not error.fallback_allowed:  # the request itself was refused: try the next model
            self.skip_models.add(endpoint.model_id)

    def give_up(self) -> GatewayError:
        """Every attempt failed before output: record the request, return the error that ends it."""
        error = final_error(self.errors)
        self.record(
            Outcome(finish_reason="error", latency_ms=elapsed_ms(self.ctx.started), error=error)
        )
        return error

    def broke(self, endpoint: Endpoint | None) -> None:
        """A bug of the gateway's ended the request: recorded as an error, charged nothing
        (the failure is the gateway's); `endpoint` is the one whose output had begun."""
        self.record(
            Outcome(
                endpoint=endpoint,
                finish_reason="error",
                latency_ms=elapsed_ms(self.ctx.started),
                error=GatewayError(500, "Internal server error"),
            )
        )

    def abandon(self) -> None:
        """A request that ends before it was recorded (its stream never began): it is
        recorded as cancelled, charged nothing, and its admission holds are released."""
        if not self.recorded:
            self.record(Outcome(latency_ms=elapsed_ms(self.ctx.started), cancelled=True))

    def record(self, outcome: Outcome) -> None:
        """Charge the key and submit the generation record: once per request."""
        if self.recorded:
            return
        self.recorded = True
        billed = outcome.billed
        usage = billed.counts if billed else {}
        cost = billed.bill.total if billed else 0
        ctx, endpoint, request = self.ctx, outcome.endpoint, self.job.request
        provider = self.provider(endpoint) if endpoint else None
        model = endpoint.model_id if endpoint else self.job.plan.requested[0]
        tokens = billed.total_tokens if billed else 0
        charged = self.sinks.spend.settle(ctx.ticket, cost=cost, tokens=tokens)
        self.sinks.records.submit(
            GenerationRecord(
                id=ctx.generation_id,
                created_at=datetime.now(UTC),
                model=model,
                api_key_hash=ctx.api_key_hash,
                provider_slug=provider.slug if provider else None,
                provider_name=provider.name if provider else None,
                endpoint_tag=endpoint.tag if endpoint else None,
                upstream_id=_bounded(outcome.upstream_id, 200),
                streamed=self.streamed,
                cancelled=outcome.cancelled,
                latency_ms=outcome.latency_ms,
                generation_time_ms=outcome.generation_ms,
                finish_reason=outcome.finish_reason,
                native_finish_reason=_bounded(outcome.native_finish_reason, 64),
                tokens_prompt=usage.get("prompt_tokens"),
                tokens_completion=usage.get("completion_tokens"),
                tokens_reasoning=(usage.get("completion_tokens_details") or {}).get(
                    "reasoning_tokens"
                ),
                tokens_cached=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
                total_cost=to_usd(cost),
                http_referer=ctx.http_referer,
                app_title=ctx.app_title,
                user_agent=ctx.user_agent,
                external_user=request.user,
                session_id=request.session_id,
                attempts=[_attempt_dict(a) for a in self.attempts],
                error=outcome.error.error_object() if outcome.error else None,
                balance_charged=charged,
                moderation_latency_ms=ctx.moderation_ms,
                request_metadata=request.metadata,
                trace=request.trace,
            )
        )


def _bounded(value: str | None, limit: int) -> str | None:
    """A provider-supplied string as the record stores it: at most `limit` characters."""
    return value[:limit] if value else value


def _attempt_dict(a: Attempt) -> dict[str, Any]:
    return {
        "provider_slug": a.provider_slug,
        "provider_name": a.provider_name,
        "endpoint_tag": a.endpoint_tag,
        "model": a.model,
        "status": a.status,
        "latency_ms": a.latency_ms,
        "error": a.error,
    }
