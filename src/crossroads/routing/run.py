"""Bookkeeping of one request across its attempts: usage, cost, the generation record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crossroads.accounting.pricing import usage_cost
from crossroads.errors import GatewayError
from crossroads.providers.base import Completion, UpstreamError
from crossroads.providers.reasoning import resolve_reasoning, strip_reasoning
from crossroads.routing.plan import Plan
from crossroads.routing.tokens import estimate_text_tokens
from crossroads.schema.catalog import Endpoint
from crossroads.schema.chat import ChatRequest
from crossroads.telemetry.records import Attempt, GenerationRecord

if TYPE_CHECKING:
    from crossroads.routing.executor import Executor


@dataclass(slots=True)
class RequestContext:
    """Who asks, from where; set by the API layer before routing."""

    generation_id: str
    api_key_hash: str | None
    http_referer: str | None = None
    app_title: str | None = None
    user_agent: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def final_error(errors: list[UpstreamError]) -> GatewayError:
    """The error that ends a request after every attempt failed."""
    if errors and all(e.status == 429 for e in errors):
        hints = [e.retry_after for e in errors if e.retry_after]
        retry = min(hints) if hints else None
        last = errors[-1]
        return GatewayError(
            429,
            "Every provider for this request is rate limited; retry later",
            metadata={"provider_name": last.provider.name, "raw": last.raw,
                      "previous_errors": [e.summary() for e in errors],
                      "availability": {"code": "capacity_exhausted", "retryable": True, "retry_after": retry}},
            headers={"Retry-After": str(int(retry))} if retry else None,
        )
    return errors[-1].to_gateway_error(previous=errors[:-1])


class Run:
    """Bookkeeping shared by the streaming and non-streaming paths of one request."""

    def __init__(self, ex: Executor, plan: Plan, request: ChatRequest, body: dict[str, Any], ctx: RequestContext, *,
                 streamed: bool) -> None:
        self.ex, self.plan, self.request, self.ctx = ex, plan, request, ctx
        self.streamed = streamed
        spec = resolve_reasoning(body)
        self.exclude_reasoning = spec is not None and spec.exclude  # reasoning.exclude: billed, not shown
        self.attempts: list[Attempt] = []
        self.errors: list[UpstreamError] = []
        self.skip_models: set[str] = set()

    def usage(self, raw: dict[str, Any] | None, completion_text: str, endpoint: Endpoint, finish: str | None) -> dict:
        usage = dict(raw or {})
        if usage.get("prompt_tokens") is None:
            usage["prompt_tokens"] = self.plan.prompt_tokens
        if usage.get("completion_tokens") is None:
            usage["completion_tokens"] = estimate_text_tokens(completion_text)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        usage["cost"], usage["cost_details"] = usage_cost(usage, endpoint, finish)
        usage["is_byok"] = False
        return usage

    def header(self, endpoint: Endpoint, obj: str) -> dict[str, Any]:
        return {
            "id": self.ctx.generation_id,
            "provider": self.ex.catalog.providers[endpoint.provider].name,
            "model": endpoint.model_id,
            "object": obj,
            "created": self.ctx.created,
        }

    def served(self, endpoint: Endpoint, completion: Completion, latency_ms: float) -> dict[str, Any]:
        choice = completion.choices[0] if completion.choices else {}
        finish, native = choice.get("finish_reason"), choice.get("native_finish_reason")
        reported = (completion.usage or {}).get("completion_tokens") is not None
        text = "" if reported else _completion_text(choice.get("message") or {})  # only to estimate
        usage = self.usage(completion.usage, text, endpoint, finish)
        if self.exclude_reasoning:
            for c in completion.choices:
                strip_reasoning(c.get("message") or {})
        seconds = latency_ms / 1000
        self.ex.stats.record_success(endpoint.id, latency_ms, usage["completion_tokens"] / seconds if seconds else None)
        self.attempts.append(Attempt(endpoint.provider, self.ex.catalog.providers[endpoint.provider].name,
                                     endpoint.tag, endpoint.model_id, 200, latency_ms))
        self.record(endpoint, usage, finish, native, completion.upstream_id, latency_ms, latency_ms)
        body = self.header(endpoint, "chat.completion")
        body.update(system_fingerprint=completion.system_fingerprint, choices=completion.choices, usage=usage)
        if completion.service_tier is not None:
            body["service_tier"] = completion.service_tier
        return body

    def record(
        self,
        endpoint: Endpoint | None,
        usage: dict[str, Any] | None,
        finish: str | None,
        native: str | None,
        upstream_id: str | None,
        latency_ms: float | None,
        generation_ms: float | None,
        *,
        cancelled: bool = False,
        error: GatewayError | None = None,
    ) -> None:
        usage = usage or {}
        cost = float(usage.get("cost") or 0.0)
        now = datetime.now(UTC)
        ctx = self.ctx
        provider = self.ex.catalog.providers[endpoint.provider] if endpoint else None
        model = endpoint.model_id if endpoint else self.plan.requested[0]
        self.ex.keys.charge(ctx.api_key_hash, cost, now, free_model=model.endswith(":free"))
        self.ex.recorder.submit(GenerationRecord(
            id=ctx.generation_id,
            created_at=now,
            model=model,
            api_key_hash=ctx.api_key_hash,
            provider_slug=provider.slug if provider else None,
            provider_name=provider.name if provider else None,
            endpoint_tag=endpoint.tag if endpoint else None,
            upstream_id=upstream_id,
            streamed=self.streamed,
            cancelled=cancelled,
            latency_ms=latency_ms,
            generation_time_ms=generation_ms,
            finish_reason=finish,
            native_finish_reason=native,
            tokens_prompt=usage.get("prompt_tokens"),
            tokens_completion=usage.get("completion_tokens"),
            tokens_reasoning=(usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
            tokens_cached=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
            total_cost=cost,
            http_referer=ctx.http_referer,
            app_title=ctx.app_title,
            user_agent=ctx.user_agent,
            external_user=self.request.user,
            session_id=self.request.session_id,
            attempts=[_attempt_dict(a) for a in self.attempts],
            error=error.envelope()["error"] if error else None,
        ))

    def failed(self, endpoint: Endpoint, error: UpstreamError, since: float) -> None:
        """One attempt failed before any output reached the client."""
        self.ex.stats.record_failure(endpoint.id, rate_limited=error.status == 429)
        self.attempts.append(Attempt(endpoint.provider, error.provider.name, endpoint.tag, endpoint.model_id,
                                     error.status, elapsed_ms(since), error.message))
        self.errors.append(error)
        if not error.fallback_allowed:  # the request itself was refused: try the next model
            self.skip_models.add(endpoint.model_id)

    def give_up(self) -> GatewayError:
        error = final_error(self.errors)
        self.record(None, None, "error", None, None, elapsed_ms(self.ctx.started), None, error=error)
        return error


def _attempt_dict(a: Attempt) -> dict[str, Any]:
    return {"provider_slug": a.provider_slug, "provider_name": a.provider_name, "endpoint_tag": a.endpoint_tag,
            "model": a.model, "status": a.status, "latency_ms": a.latency_ms, "error": a.error}


def _completion_text(message: dict[str, Any]) -> str:
    parts = [message.get("content") if isinstance(message.get("content"), str) else "", message.get("reasoning") or ""]
    parts += [str((c.get("function") or {}).get("arguments") or "") for c in message.get("tool_calls") or []]
    return "".join(p for p in parts if p)
