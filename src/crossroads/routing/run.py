"""Bookkeeping of one request across its attempts: statistics, usage, cost, the generation record.

The streaming and non-streaming paths share it: each failed attempt goes through
`failed()`, each answer through `succeeded()`, and the request ends with exactly one
`record()` of its `Outcome`. Every measured attempt becomes one `AttemptSample` for the
stats sink (live statistics and circuits); a stream the client cut off becomes none.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from crossroads.accounting.money import to_pico, to_usd
from crossroads.accounting.pricing import HARD_TOKEN_CAP, billable_output, usage_cost
from crossroads.errors import GatewayError
from crossroads.providers.base import Completion, UpstreamError
from crossroads.providers.reasoning import resolve_reasoning, strip_reasoning
from crossroads.routing.context import RequestContext, elapsed_ms
from crossroads.routing.plan import Plan
from crossroads.routing.tokens import estimate_text_tokens
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.schema.chat import ChatRequest
from crossroads.schema.generation import Attempt, GenerationRecord
from crossroads.schema.limits import Ticket
from crossroads.telemetry.sample import AttemptSample, Verdict


class StatsSink(Protocol):
    """Takes one `AttemptSample` per measured attempt (live statistics, circuits)."""

    def observe(self, sample: AttemptSample) -> None: ...


class SpendSink(Protocol):
    """Settles a request's admission ticket at its real cost in pico-USD (`limits.Limits`);
    whether the charge was drawn from the account balance (it then gets a ledger row)."""

    def settle(self, ticket: Ticket | None, *, cost: int, tokens: int) -> bool: ...


class RecordSink(Protocol):
    def submit(self, record: GenerationRecord) -> None: ...


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
    usage: dict[str, Any] | None = None
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

    def __init__(
        self,
        sinks: Sinks,
        plan: Plan,
        request: ChatRequest,
        body: dict[str, Any],
        ctx: RequestContext,
        *,
        streamed: bool,
    ) -> None:
        self.sinks, self.plan, self.request, self.ctx = sinks, plan, request, ctx
        self.streamed = streamed
        spec = resolve_reasoning(body)
        self.exclude_reasoning = (
            spec is not None and spec.exclude
        )  # reasoning.exclude: billed, not shown
        self.reasoning = spec is not None and spec.enabled
        self.attempts: list[Attempt] = []
        self.errors: list[UpstreamError] = []
        self.skip_models: set[str] = set()
        self.recorded = False  # `record` ran: the request is settled and its record submitted
        ctx.route = [e.id for e in plan.endpoints]  # the plan, for tracing

    def endpoints(self) -> Iterator[Endpoint]:
        """The plan's endpoints still worth trying (a model that refused the request is skipped)."""
        for endpoint in self.plan.endpoints:
            if endpoint.model_id not in self.skip_models:
                yield endpoint

    def billed_usage(
        self,
        reported: dict[str, Any] | None,
        completion_text: str,
        endpoint: Endpoint,
        finish: str | None,
    ) -> tuple[dict[str, Any], str | None]:
        """OpenRouter's usage object: the provider's counts (estimated where missing, clamped
        to what the endpoint and the request allow), with cost; and a note when clamped."""
        usage = dict(reported or {})
        if usage.get("prompt_tokens") is None:
            usage["prompt_tokens"] = self.plan.prompt_tokens
        if usage.get("completion_tokens") is None:
            usage["completion_tokens"] = estimate_text_tokens(completion_text)
        note = self._clamp(usage, endpoint)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        usage["cost"], usage["cost_details"] = usage_cost(usage, endpoint, finish)
        usage["is_byok"] = False
        ticket = self.ctx.ticket
        held = ticket is not None and (ticket.key_hold or ticket.balance)
        if ticket is not None and held and to_pico(usage["cost"]) > ticket.reserved:
            # never more than admission held: a limit or balance is never overdrawn
            capped = f"cost {usage['cost']} capped at the {to_usd(ticket.reserved)} reserved"
            usage["cost"] = to_usd(ticket.reserved)
            note = f"{note}; {capped}" if note else capped
        return usage, note

    def _clamp(self, usage: dict[str, Any], endpoint: Endpoint) -> str | None:
        """Bound the counts a provider reported (checked non-negative integers by the
        adapters) by what could have happened: the prompt by the context, the completion by
        the endpoint's and the request's limits, each detail by its total."""
        clamped: list[str] = []

        def bound(holder: dict[str, Any], name: str, cap: int) -> int:
            value = int(holder.get(name) or 0)
            if value > cap:
                clamped.append(f"{name} {value} > {cap}")
                holder[name] = value = cap
            return value

        limits = (endpoint.max_completion_tokens, endpoint.context_length, HARD_TOKEN_CAP)
        hard = min(c for c in limits if c)
        prompt_cap = min(endpoint.context_length or HARD_TOKEN_CAP, HARD_TOKEN_CAP)
        prompt = bound(usage, "prompt_tokens", prompt_cap)
        prompt_details = usage.get("prompt_tokens_details")
        if isinstance(prompt_details, dict):
            prompt_details = usage["prompt_tokens_details"] = dict(prompt_details)
            cached = bound(prompt_details, "cached_tokens", prompt)
            if "cache_write_tokens" in prompt_details:
                bound(prompt_details, "cache_write_tokens", prompt - cached)
        completion_details = usage.get("completion_tokens_details")
        reasoning = 0
        if isinstance(completion_details, dict):
            completion_details = usage["completion_tokens_details"] = dict(completion_details)
            reasoning = bound(completion_details, "reasoning_tokens", hard)
        cap = billable_output(
            endpoint,
            prompt_tokens=prompt,
            requested=self.request.completion_limit,
            reasoning=self.reasoning,
        )
        completion = bound(usage, "completion_tokens", cap)
        if isinstance(completion_details, dict) and reasoning > completion:
            bound(completion_details, "reasoning_tokens", completion)
        return f"usage clamped: {', '.join(clamped)}" if clamped else None

    def header(self, endpoint: Endpoint, obj: str) -> dict[str, Any]:
        return {
            "id": self.ctx.generation_id,
            "provider": self.sinks.providers[endpoint.provider].name,
            "model": endpoint.model_id,
            "object": obj,
            "created": self.ctx.created,
        }

    def _note(
        self, endpoint: Endpoint, status: int | None, latency_ms: float, error: str | None = None
    ) -> None:
        provider = self.sinks.providers[endpoint.provider]
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
        usage: dict[str, Any],
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
        tokens = usage.get("completion_tokens") or 0
        throughput = tokens / generation_s if generation_s > 0 and tokens > 1 else None
        costs = usage.get("cost_details") or {}
        self.sinks.stats.observe(
            AttemptSample(
                endpoint_id=endpoint.id,
                provider=endpoint.provider,
                model=endpoint.model_id,
                verdict=Verdict.OK,
                latency_ms=first_token_ms,
                throughput=throughput,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(tokens),
                prompt_cost=float(costs.get("upstream_inference_prompt_cost") or 0.0),
                completion_cost=float(costs.get("upstream_inference_completions_cost") or 0.0),
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

    def served(
        self, endpoint: Endpoint, completion: Completion, latency_ms: float
    ) -> dict[str, Any]:
        """A non-streamed answer: account for it and render OpenRouter's chat completion."""
        choice = completion.choices[0] if completion.choices else {}
        finish, native = choice.get("finish_reason"), choice.get("native_finish_reason")
        reported = (completion.usage or {}).get("completion_tokens") is not None
        text = "" if reported else _completion_text(choice.get("message") or {})  # only to estimate
        usage, note = self.billed_usage(completion.usage, text, endpoint, finish)
        if self.exclude_reasoning:
            for c in completion.choices:
                strip_reasoning(c.get("message") or {})
        self.succeeded(endpoint, usage, first_token_ms=latency_ms, total_ms=latency_ms, note=note)
        self.record(
            Outcome(
                endpoint=endpoint,
                usage=usage,
                finish_reason=finish,
                native_finish_reason=native,
                upstream_id=completion.upstream_id,
                latency_ms=latency_ms,
                generation_ms=latency_ms,
            )
        )
        body = self.header(endpoint, "chat.completion")
        body.update(
            system_fingerprint=completion.system_fingerprint,
            choices=completion.choices,
            usage=usage,
        )
        if completion.service_tier is not None:
            body["service_tier"] = completion.service_tier
        return body

    def give_up(self) -> GatewayError:
        """Every attempt failed before output: record the request, return the error that ends it."""
        error = final_error(self.errors)
        self.record(
            Outcome(finish_reason="error", latency_ms=elapsed_ms(self.ctx.started), error=error)
        )
        return error

    def abandon(self) -> None:
        """A request that ends before it was recorded (its stream never began, a bug): it
        is recorded as cancelled, charged nothing, and its admission holds are released."""
        if not self.recorded:
            self.record(Outcome(latency_ms=elapsed_ms(self.ctx.started), cancelled=True))

    def record(self, outcome: Outcome) -> None:
        """Charge the key and submit the generation record: once per request."""
        if self.recorded:
            return
        self.recorded = True
        usage = outcome.usage or {}
        cost = float(usage.get("cost") or 0.0)
        now = datetime.now(UTC)
        ctx, endpoint = self.ctx, outcome.endpoint
        provider = self.sinks.providers[endpoint.provider] if endpoint else None
        model = endpoint.model_id if endpoint else self.plan.requested[0]
        tokens = int(usage.get("total_tokens") or 0)
        charged = self.sinks.spend.settle(ctx.ticket, cost=to_pico(cost), tokens=tokens)
        self.sinks.records.submit(
            GenerationRecord(
                id=ctx.generation_id,
                created_at=now,
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
                total_cost=cost,
                http_referer=ctx.http_referer,
                app_title=ctx.app_title,
                user_agent=ctx.user_agent,
                external_user=self.request.user,
                session_id=self.request.session_id,
                attempts=[_attempt_dict(a) for a in self.attempts],
                error=outcome.error.error_object() if outcome.error else None,
                balance_charged=charged,
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


def _completion_text(message: dict[str, Any]) -> str:
    parts = [
        message.get("content") if isinstance(message.get("content"), str) else "",
        message.get("reasoning") or "",
    ]
    parts += [
        str((c.get("function") or {}).get("arguments") or "")
        for c in message.get("tool_calls") or []
    ]
    return "".join(p for p in parts if p)
