"""Carry out a routing plan: try endpoints in order, fall back, account, record.

Provider-level fallback happens on failures of the provider (5xx, 429, timeouts,
connection errors, auth or model faults of the provider's own), only before the first
byte reaches the client; a request error (400, 413, 422) moves on to the next model of
`models` instead. Every attempt feeds the live statistics; every request, served or
not, leaves one generation record.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from crossroads.accounting.keys import KeyRing
from crossroads.accounting.pricing import usage_cost
from crossroads.catalog import Catalog
from crossroads.errors import GatewayError
from crossroads.providers.base import Adapter, Completion, UpstreamError
from crossroads.providers.http import UpstreamClient
from crossroads.routing.plan import Plan, plan_request
from crossroads.routing.tokens import estimate_text_tokens
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.schema.chat import ChatRequest
from crossroads.telemetry.records import Attempt, GenerationRecord
from crossroads.telemetry.recorder import Recorder
from crossroads.telemetry.stats import LiveStats


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


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def final_error(errors: list[UpstreamError]) -> GatewayError:
    """The error that ends a request after every attempt failed."""
    if errors and all(e.status == 429 for e in errors):
        hints = [e.retry_after for e in errors if e.retry_after]
        retry = min(hints) if hints else None
        last = errors[-1]
        error = GatewayError(
            429,
            "Every provider for this request is rate limited; retry later",
            metadata={"provider_name": last.provider.name, "raw": last.raw,
                      "previous_errors": [e.summary() for e in errors],
                      "availability": {"code": "capacity_exhausted", "retryable": True, "retry_after": retry}},
            headers={"Retry-After": str(int(retry))} if retry else None,
        )
        return error
    return errors[-1].to_gateway_error(previous=errors[:-1])


class Executor:
    def __init__(
        self,
        catalog: Catalog,
        adapters: Mapping[str, Adapter],
        client: UpstreamClient,
        stats: LiveStats,
        recorder: Recorder,
        keys: KeyRing,
        rng: random.Random,
    ) -> None:
        self.catalog = catalog
        self.adapters = adapters
        self.client = client
        self.stats = stats
        self.recorder = recorder
        self.keys = keys
        self.rng = rng

    def plan(self, request: ChatRequest, body: dict[str, Any]) -> Plan:
        return plan_request(request, body, self.catalog, self.stats, self.rng)

    def _target(self, endpoint: Endpoint) -> tuple[Provider, Adapter]:
        provider = self.catalog.providers[endpoint.provider]
        return provider, self.adapters[provider.api or ""]

    @staticmethod
    def _http_error(adapter: Adapter, provider: Provider, status: int, raw: bytes, retry: float | None) -> UpstreamError:
        try:
            payload: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = raw.decode("utf-8", "replace")[:2000]
        return UpstreamError(provider, "http", adapter.error_message(payload), status=status, raw=payload,
                             retry_after=retry)

    def _failed(self, run: _Run, endpoint: Endpoint, error: UpstreamError, since: float) -> None:
        self.stats.record_failure(endpoint.id, rate_limited=error.status == 429)
        run.attempts.append(Attempt(endpoint.provider, error.provider.name, endpoint.tag, endpoint.model_id,
                                    error.status, _ms(since), error.message))
        run.errors.append(error)
        if not error.fallback_allowed:  # the request itself was refused: try the next model
            run.skip_models.add(endpoint.model_id)

    # -- non-streaming -------------------------------------------------------------------

    async def complete(self, request: ChatRequest, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        plan = self.plan(request, body)
        run = _Run(self, plan, request, ctx, streamed=False)
        for endpoint in plan.endpoints:
            if endpoint.model_id in run.skip_models:
                continue
            provider, adapter = self._target(endpoint)
            since = time.perf_counter()
            try:
                upstream = adapter.build_chat_request(body, endpoint, provider, stream=False)
                async with self.client.open(upstream, provider) as response:
                    raw = await response.read()
                    if response.status != 200:
                        retry = self.client.retry_after(response)
                        raise self._http_error(adapter, provider, response.status, raw, retry)
                try:
                    completion = adapter.parse_chat_response(orjson.loads(raw))
                except (ValueError, TypeError, KeyError) as exc:
                    raise UpstreamError(provider, "invalid_response", f"Invalid response from provider: {exc}") from None
            except UpstreamError as error:
                self._failed(run, endpoint, error, since)
                continue
            return run.served(endpoint, completion, _ms(since))
        raise run.give_up()

    # -- streaming -----------------------------------------------------------------------

    def stream(self, request: ChatRequest, body: dict[str, Any], ctx: RequestContext) -> ChatStream:
        return ChatStream(self, self.plan(request, body), request, body, ctx)


class _Run:
    """Bookkeeping shared by the streaming and non-streaming paths of one request."""

    def __init__(self, ex: Executor, plan: Plan, request: ChatRequest, ctx: RequestContext, *, streamed: bool) -> None:
        self.ex, self.plan, self.request, self.ctx = ex, plan, request, ctx
        self.streamed = streamed
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
        text = _completion_text((choice.get("message") or {}))
        usage = self.usage(completion.usage, text, endpoint, finish)
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
        now = datetime.now(timezone.utc)
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

    def give_up(self) -> GatewayError:
        error = final_error(self.errors)
        self.record(None, None, "error", None, None, _ms(self.ctx.started), None, error=error)
        return error


def _attempt_dict(a: Attempt) -> dict[str, Any]:
    return {"provider_slug": a.provider_slug, "provider_name": a.provider_name, "endpoint_tag": a.endpoint_tag,
            "model": a.model, "status": a.status, "latency_ms": a.latency_ms, "error": a.error}


def _completion_text(message: dict[str, Any]) -> str:
    parts = [message.get("content") if isinstance(message.get("content"), str) else "", message.get("reasoning") or ""]
    parts += [str((c.get("function") or {}).get("arguments") or "") for c in message.get("tool_calls") or []]
    return "".join(p for p in parts if p)


class ChatStream:
    """One streamed chat completion: `chunks()` yields OpenAI-shaped chunks.

    Until the first chunk is yielded, a failing endpoint falls back to the next one and
    the client has seen nothing. Once chunks flow, a failure ends the stream with an
    error chunk. If every endpoint fails first, `chunks()` raises the GatewayError.
    """

    def __init__(self, ex: Executor, plan: Plan, request: ChatRequest, body: dict[str, Any], ctx: RequestContext):
        self.run = _Run(ex, plan, request, ctx, streamed=True)
        self.ex, self.body = ex, body
        self.started = False

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        run = self.run
        for endpoint in run.plan.endpoints:
            if endpoint.model_id in run.skip_models:
                continue
            relay = _Relay(run, endpoint)
            held: list[dict[str, Any]] = []
            provider, adapter = self.ex._target(endpoint)
            since = time.perf_counter()
            try:
                upstream = adapter.build_chat_request(self.body, endpoint, provider, stream=True)
                async with self.ex.client.open(upstream, provider) as response:
                    if response.status != 200:
                        raw = await response.read()
                        raise self.ex._http_error(adapter, provider, response.status, raw,
                                                  self.ex.client.retry_after(response))
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
                    self.ex._failed(run, endpoint, error, since)
                    continue
                yield relay.fail(error, since)
                return
            except BaseException:  # the client went away (cancellation) or the consumer closed us
                if self.started:
                    relay.cancel(since)
                else:
                    run.record(endpoint, None, None, None, None, _ms(run.ctx.started), None, cancelled=True)
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

    def __init__(self, run: _Run, endpoint: Endpoint) -> None:
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
        if not self.first_at:
            self.first_at = time.perf_counter()
        chunk = self.run.header(self.endpoint, "chat.completion.chunk")
        chunk["choices"] = choices
        return chunk

    def _close(self, since: float, usage: dict[str, Any], *, ok: bool, **extra: Any) -> None:
        ttft = round((self.first_at - since) * 1000, 3) if self.first_at else _ms(since)
        generation = _ms(self.first_at) if self.first_at else None
        ex = self.run.ex
        if ok:
            seconds = (generation or 0) / 1000
            tokens = usage.get("completion_tokens") or 0
            ex.stats.record_success(self.endpoint.id, ttft, tokens / seconds if seconds and tokens > 1 else None)
        provider = ex.catalog.providers[self.endpoint.provider]
        self.run.attempts.append(Attempt(self.endpoint.provider, provider.name, self.endpoint.tag,
                                         self.endpoint.model_id, 200, ttft, extra.get("note")))
        self.run.record(self.endpoint, usage, self.finish_reason, self.native, self.upstream_id, _ms(self.run.ctx.started),
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
