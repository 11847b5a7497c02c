"""OpenTelemetry spans, collected in memory: the app is built in this process with a
`Tracing` whose exporter is the SDK's `InMemorySpanExporter`, in front of the session's
simulators. Also here, since it needs the app in process: a crash's 500 carries the
overhead header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from crossroads.app import create_app
from crossroads.gateway import Gateway
from crossroads.settings import Settings
from crossroads.telemetry.tracing import Tracing
from harness import Simulator, endpoint, free_port, provider

MANAGEMENT = "sk-cr-tracing-management"


class Traced:
    """An in-process app, its HTTP client and the spans it exported."""

    def __init__(
        self, gateway: Gateway, client: httpx.AsyncClient, exporter: InMemorySpanExporter, key: str
    ) -> None:
        self.gateway, self.client, self.exporter, self.key = gateway, client, exporter, key

    def flush(self) -> None:
        self.gateway.tracing.force_flush()

    async def chat(self, model: str, **body: object) -> httpx.Response:
        return await self.client.post(
            "/api/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body},
            headers={"Authorization": f"Bearer {self.key}"},
        )


@pytest.fixture
async def traced(sims: dict[str, Simulator], tmp_path: Path) -> AsyncIterator[Traced]:
    config = {
        "providers": [provider(name, sims[name]) for name in ("alpha", "beta")],
        "models": [
            {"id": "traced/one", "endpoints": [endpoint("alpha", 1, 2)]},
            {"id": "traced/pair", "endpoints": [endpoint("beta", 1, 1), endpoint("alpha", 2, 2)]},
        ],
    }
    settings = Settings.load(
        {"data_dir": str(tmp_path / "data"), "port": free_port(), "management_key": MANAGEMENT},
        env={},
    )
    exporter = InMemorySpanExporter()
    gateway = Gateway.build(settings, config, tracing=Tracing(exporter=exporter))
    app = create_app(settings, gateway)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a crash: a 500
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://traced") as client:
            created = await client.post(
                "/api/v1/keys",
                json={"name": "traced"},
                headers={"Authorization": f"Bearer {MANAGEMENT}"},
            )
            yield Traced(gateway, client, exporter, created.json()["key"])


def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        s
        for s in finished(exporter, "crossroads.attempt")
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def request_span(exporter: InMemorySpanExporter, generation_id: str) -> ReadableSpan:
    found = [
        s
        for s in finished(exporter, "crossroads.request")
        if (s.attributes or {}).get("crossroads.generation_id") == generation_id
    ]
    assert len(found) == 1
    return found[0]


async def test_one_request_span_with_its_attempt(traced: Traced) -> None:
    r = await traced.chat("traced/one")
    assert r.status_code == 200
    traced.flush()
    span = request_span(traced.exporter, r.headers["x-generation-id"])
    attributes = dict(span.attributes or {})
    [key] = [k for k in traced.gateway.keys.list() if k.name == "traced"]
    assert span.kind == SpanKind.SERVER
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/api/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200
    assert attributes["crossroads.model"] == "traced/one"
    assert attributes["crossroads.provider"] == "alpha"
    assert attributes["crossroads.key"] == key.label
    assert attributes["crossroads.route"] == ("traced/one@alpha",)
    [attempt] = children(traced.exporter, span)
    assert attempt.kind == SpanKind.CLIENT
    assert dict(attempt.attributes or {}) == {
        "crossroads.provider": "alpha",
        "crossroads.model": "traced/one",
        "crossroads.endpoint": "traced/one@alpha",
        "http.response.status_code": 200,
    }
    assert attempt.context is not None and span.context is not None
    assert attempt.context.trace_id == span.context.trace_id


async def test_a_fallback_has_two_attempt_spans(traced: Traced, sims: dict[str, Simulator]) -> None:
    sims["beta"].configure(fail_rate=1.0, status=503)
    r = await traced.chat("traced/pair", provider={"order": ["beta", "alpha"]})
    assert r.status_code == 200 and r.json()["provider"] == "Alpha"
    traced.flush()
    span = request_span(traced.exporter, r.headers["x-generation-id"])
    attributes = dict(span.attributes or {})
    assert attributes["crossroads.route"] == ("traced/pair@beta", "traced/pair@alpha")
    assert attributes["crossroads.provider"] == "alpha"
    failed, served = sorted(children(traced.exporter, span), key=lambda s: s.start_time or 0)
    assert failed.attributes is not None and served.attributes is not None
    assert failed.attributes["crossroads.endpoint"] == "traced/pair@beta"
    assert failed.attributes["http.response.status_code"] == 503
    assert str(failed.attributes["crossroads.error"]).startswith("http: ")
    assert failed.status.status_code == StatusCode.ERROR
    assert served.attributes["crossroads.endpoint"] == "traced/pair@alpha"
    assert served.attributes["http.response.status_code"] == 200
    assert served.status.status_code == StatusCode.UNSET


async def test_spans_outside_inference_and_errors(traced: Traced) -> None:
    missing = await traced.client.get("/api/v1/no/such/path")
    assert missing.status_code == 404
    r = await traced.chat("traced/one", temperature="hot")  # refused before routing
    assert r.status_code == 400
    traced.flush()
    by_path = {
        (s.attributes or {}).get("url.path"): s
        for s in finished(traced.exporter, "crossroads.request")
    }
    lost = by_path["/api/v1/no/such/path"]
    assert (lost.attributes or {})["http.response.status_code"] == 404
    assert not children(traced.exporter, lost)
    refused = by_path["/api/v1/chat/completions"]
    assert (refused.attributes or {})["http.response.status_code"] == 400
    assert "crossroads.generation_id" not in (refused.attributes or {})
    assert not finished(traced.exporter, "crossroads.attempt")


async def test_a_crash_is_a_500_with_the_overhead_header_and_a_span(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(*args: object) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(traced.gateway.inference, "complete", crash)
    r = await traced.chat("traced/one")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == 500 and error["message"] == "Internal Server Error"
    assert 0 <= float(r.headers["x-crossroads-overhead-ms"]) < 5000
    traced.flush()
    [span] = [
        s
        for s in finished(traced.exporter, "crossroads.request")
        if (s.attributes or {})["url.path"] == "/api/v1/chat/completions"
    ]
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert span.status.status_code == StatusCode.ERROR


def test_without_an_exporter_tracing_is_a_no_op() -> None:
    tracing = Tracing.from_environment({})
    assert not tracing.enabled
    assert tracing.start_request("GET", "/") is None
    assert tracing.start_attempt(provider="p", model="m", endpoint="m@p") is None
    tracing.shutdown()  # nothing to flush
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    assert not Tracing.from_environment({**endpoint, "OTEL_SDK_DISABLED": "true"}).enabled
    exporting = Tracing.from_environment(endpoint)
    assert exporting.enabled
    exporting.shutdown()
    assert not exporting.enabled
