"""OpenTelemetry traces: one span per request, one child span per upstream attempt.

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and the optional extra `otel`
(`opentelemetry-sdk`, `opentelemetry-exporter-otlp-proto-http`) is installed; spans are
exported over OTLP/HTTP by a `BatchSpanProcessor` (the standard `OTEL_*` variables apply:
endpoint, headers, `OTEL_SERVICE_NAME`, default "crossroads"). The `TracerProvider` is
this gateway's own, never the process-wide one, so two apps in one process do not mix.
Tests hand in an exporter (the SDK's `InMemorySpanExporter`).

- "crossroads.request" (kind SERVER), opened by the ASGI middleware (`api/observe.py`) and
  made the current span while the request runs: `http.request.method`, `url.path`,
  `http.route`, `http.response.status_code`, and for inference `crossroads.model`,
  `crossroads.key` (the key's label), `crossroads.generation_id`, `crossroads.route` (the
  planned endpoint ids, in order) and `crossroads.provider` (the one that served).
- "crossroads.attempt" (kind CLIENT), opened by `routing.attempt.Upstream.call` as a child
  of the current span: `crossroads.provider`, `crossroads.model`, `crossroads.endpoint`,
  `http.response.status_code` and, when it failed, `crossroads.error` and an error status.

Without tracing `Tracing.enabled` is False, nothing of OpenTelemetry is imported, and every
method returns at once (callers check `enabled` first on the request path).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the optional extra: imported at run time only when tracing is on
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("crossroads.tracing")

Attribute = str | int | float | bool | Sequence[str]


@dataclass(slots=True)
class RequestSpan:
    """A request's span, current while the request runs (`token` restores the context)."""

    span: Span
    token: Token[Context]


class Tracing:
    """This gateway's tracer; a no-op unless built with an exporter."""

    def __init__(self, *, exporter: SpanExporter | None = None, service: str = "crossroads"):
        self.enabled = exporter is not None
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        if exporter is None:
            return
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
        self._provider = TracerProvider(resource=Resource.create(named))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("crossroads")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Tracing:
        """Tracing to the OTLP endpoint the environment names; a no-op without one, with
        `OTEL_SDK_DISABLED=true`, or without the `otel` extra (logged once, at start)."""
        if environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or not (
            environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            return cls()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
                "(pip install 'crossroads[otel]'): no traces"
            )
            return cls()
        return cls(exporter=OTLPSpanExporter())

    def start_request(self, method: str, path: str) -> RequestSpan | None:
        """Open the request's span and make it current (attempt spans become its children)."""
        if self._tracer is None:
            return None
        from opentelemetry import context, trace

        span = self._tracer.start_span(
            "crossroads.request",
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        return RequestSpan(span, context.attach(trace.set_span_in_context(span)))

    def end_request(
        self, handle: RequestSpan, *, status: int, attributes: Mapping[str, Attribute]
    ) -> None:
        """Close the request's span with its status and what routing decided."""
        from opentelemetry import context, trace

        span = handle.span
        span.set_attribute("http.response.status_code", status)
        for name, value in attributes.items():
            span.set_attribute(name, value)
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        span.end()
        context.detach(handle.token)

    def start_attempt(self, *, provider: str, model: str, endpoint: str) -> Span | None:
        """Open an attempt's span, a child of the current (request) span."""
        if self._tracer is None:
            return None
        from opentelemetry import trace

        return self._tracer.start_span(  # parent: the current context's (request) span
            "crossroads.attempt",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "crossroads.provider": provider,
                "crossroads.model": model,
                "crossroads.endpoint": endpoint,
            },
        )

    @staticmethod
    def end_attempt(span: Span, *, status: int | None, error: str | None = None) -> None:
        from opentelemetry import trace

        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.set_attribute("crossroads.error", error)
            span.set_status(trace.StatusCode.ERROR, error[:200])
        span.end()

    def force_flush(self) -> None:
        """Export the spans ended so far (blocking)."""
        if self._provider is not None:
            self._provider.force_flush()

    def shutdown(self) -> None:
        """Flush and stop the exporter (blocking: the gateway calls it in a thread at stop)."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = self._tracer = None
            self.enabled = False

    def __repr__(self) -> str:
        return f"Tracing(enabled={self.enabled})"
