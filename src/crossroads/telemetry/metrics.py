"""Prometheus metrics of one gateway, served at `GET /metrics` (`api/metrics.py`).

Each `Metrics` owns its `CollectorRegistry` (never prometheus_client's global one), so
two apps in one process count apart. Every name starts with `crossroads_`. The figures
are plain floats in dicts, turned into metric families by a collector when scraped: on
the request path a count is a dict update (prometheus_client's own metric objects take
a lock per update; here everything, the scrape too, runs on the event loop).

Counted from each finished `GenerationRecord` (`RecordFanout` hands it over after the
recorder; `status` is "200" for a served request, "499" for one the client cancelled,
else the error code the request ended with, also for a stream that failed midway):
- `requests_total{model, provider, status}`: one per request that reached the router
  (`provider` is the one that served, empty when none did);
- `errors_total{model, provider, status}`: requests that ended in an error (not
  cancellations; provider: the last one tried);
- `attempts_total{provider, model, outcome}`: one per upstream attempt; `outcome` is
  ok, failed (5xx, timeout, connection, unreadable reply, a stream cut midway),
  rate_limited (429), refused (the caller's request was refused: a 4xx after which no
  other endpoint is tried, as `UpstreamError.fallback_allowed` decides) or cancelled;
- `fallbacks_total{provider, model}`: requests served by other than their first attempt;
- `upstream_latency_seconds{provider}` (histogram): each attempt's latency, to the first
  token (to the whole answer when not streamed), or to its failure;
- `tokens_total{model, kind}` (kind: prompt, completion, reasoning) and
  `cost_usd_total{model}`: what was billed.
Measured by the API layer: `gateway_overhead_seconds` (histogram: each request's wall
time minus the time spent awaiting providers, see `api/observe.py`) and `open_streams`.
Read at scrape time: `circuit_state{endpoint}` (0 closed, 1 half-open, 2 open; an
endpoint appears once its circuit first left closed) and the generation recorder's
counters (`recorder_queue_depth`, `recorder_segments_pending`,
`recorder_rows_{written,rejected,spilled,dropped}_total`,
`recorder_journal_errors_total`, `recorder_write_failures_total`).

With `enabled` False (`settings.telemetry` off, to measure what telemetry costs) nothing
is counted; the scrape-time figures are still served.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from crossroads.schema.generation import GenerationRecord, RecordSink
from crossroads.telemetry.recorder import RecorderStats

log = logging.getLogger("crossroads.metrics")

UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
# statuses after which the router tries another endpoint (as `UpstreamError.fallback_allowed`):
# any other 4xx refused the caller's request itself
_PROVIDER_FAULTS = frozenset({401, 402, 403, 404, 408, 409, 425, 429})


def attempt_outcome(attempt: Mapping[str, Any], *, last: bool, record: GenerationRecord) -> str:
    """How one attempt of `record` ended: ok, failed, rate_limited, refused or cancelled."""
    status = attempt.get("status")
    if status == 200:  # an answer began; the last one may still have failed or been cut
        if last and record.cancelled:
            return "cancelled"
        return "failed" if last and record.error is not None else "ok"
    if status == 429:
        return "rate_limited"
    if isinstance(status, int) and 400 <= status < 500 and status not in _PROVIDER_FAULTS:
        return "refused"
    return "failed"


def request_status(record: GenerationRecord) -> str:
    """A finished request's status label: 200 served, 499 cancelled, else its error code."""
    if record.cancelled:
        return "499"
    if record.error is not None:
        return str(record.error.get("code") or 500)
    return "200"


class _Counter:
    """A counter per label values, as plain floats: everything runs on the event loop (the
    scrape too), so no lock is needed, and an increment is one dict update."""

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in sorted(self.values.items()):
            family.add_metric(list(key), value)
        return family


class _Histogram:
    """A histogram per label values: a count per bucket (the last one: above every bound)
    and the sum, cumulated when scraped."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], bounds: Sequence[float]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = list(bounds)
        self.series: dict[tuple[str, ...], list[float]] = {}  # counts..., then the sum
        if not self.labels:  # one series, shown from the start
            self.series[()] = [0.0] * (len(self.bounds) + 2)

    def observe(self, key: tuple[str, ...], value: float) -> None:
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        for key, counts in sorted(self.series.items()):
            total, buckets = 0.0, []
            for edge, count in zip(edges, counts[:-1], strict=True):
                total += count
                buckets.append((edge, total))
            family.add_metric(list(key), buckets, counts[-1])
        return family


class Metrics:
    """One gateway's metrics and their registry."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        recorder_stats: Callable[[], RecorderStats] | None = None,
        circuit_states: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.enabled = enabled
        # read at each scrape; the gateway may set them after building
        self.recorder_stats = recorder_stats
        self.circuit_states = circuit_states
        self.requests = _Counter(
            "crossroads_requests", "Requests routed", ["model", "provider", "status"]
        )
        self.errors = _Counter(
            "crossroads_errors",
            "Requests that ended in an error (provider: the last one tried)",
            ["model", "provider", "status"],
        )
        self.attempts = _Counter(
            "crossroads_attempts", "Upstream attempts", ["provider", "model", "outcome"]
        )
        self.fallbacks = _Counter(
            "crossroads_fallbacks",
            "Requests served by other than their first attempt",
            ["provider", "model"],
        )
        self.upstream_latency = _Histogram(
            "crossroads_upstream_latency_seconds",
            "Upstream attempts: time to the first token (to the whole answer unstreamed)",
            ["provider"],
            UPSTREAM_BUCKETS,
        )
        self.tokens = _Counter("crossroads_tokens", "Tokens billed", ["model", "kind"])
        self.cost = _Counter("crossroads_cost_usd", "USD billed", ["model"])
        self.overhead = _Histogram(
            "crossroads_gateway_overhead_seconds",
            "Time spent in the gateway per request, upstream waits excluded",
            [],
            OVERHEAD_BUCKETS,
        )
        self.open_streams = 0
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def submit(self, record: GenerationRecord) -> None:
        """Count one finished request (a `RecordSink`)."""
        if not self.enabled:
            return
        model, provider = record.model, record.provider_slug or ""
        status = request_status(record)
        self.requests.inc((model, provider, status))
        attempts = record.attempts
        if record.error is not None and not record.cancelled:
            last_tried = str(attempts[-1].get("provider_slug") or "") if attempts else ""
            self.errors.inc((model, last_tried, status))
        last = len(attempts) - 1
        for i, attempt in enumerate(attempts):
            slug = str(attempt.get("provider_slug") or "")
            outcome = attempt_outcome(attempt, last=i == last, record=record)
            self.attempts.inc((slug, str(attempt.get("model")), outcome))
            latency = attempt.get("latency_ms")
            if isinstance(latency, int | float):
                self.upstream_latency.observe((slug,), latency / 1000)
        if status == "200" and last > 0:
            self.fallbacks.inc((provider, model))
        if record.tokens_prompt:
            self.tokens.inc((model, "prompt"), record.tokens_prompt)
        if record.tokens_completion:
            self.tokens.inc((model, "completion"), record.tokens_completion)
        if record.tokens_reasoning:
            self.tokens.inc((model, "reasoning"), record.tokens_reasoning)
        if record.total_cost > 0:
            self.cost.inc((model,), record.total_cost)

    def observe_overhead(self, seconds: float) -> None:
        if self.enabled:
            self.overhead.observe((), seconds)

    def stream_opened(self) -> None:
        if self.enabled:
            self.open_streams += 1

    def stream_closed(self) -> None:
        if self.enabled:
            self.open_streams -= 1

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _Collector:
    """Every family, read when scraped; circuit states and the recorder's counters too."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.seen: set[str] = set()  # endpoints whose circuit left closed once: kept at 0

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        for counter in (m.requests, m.errors, m.attempts, m.fallbacks):
            yield counter.family()
        yield m.upstream_latency.family()
        yield m.tokens.family()
        yield m.cost.family()
        yield m.overhead.family()
        yield GaugeMetricFamily(
            "crossroads_open_streams", "Streamed responses being sent", value=m.open_streams
        )
        yield from self._circuits()
        yield from self._recorder()

    def _circuits(self) -> Iterable[Metric]:
        states = self.metrics.circuit_states
        if states is None:
            return
        gauge = GaugeMetricFamily(
            "crossroads_circuit_state",
            "Circuit per endpoint: 0 closed, 1 half-open, 2 open",
            labels=["endpoint"],
        )
        current = states()
        self.seen.update(current)
        for endpoint in sorted(self.seen):
            state = str(current.get(endpoint, "closed"))
            gauge.add_metric([endpoint], CIRCUIT_VALUES.get(state, 0))
        yield gauge

    def _recorder(self) -> Iterable[Metric]:
        read = self.metrics.recorder_stats
        if read is None:
            return
        stats = read()
        yield GaugeMetricFamily(
            "crossroads_recorder_queue_depth",
            "Generation records not yet written to the database",
            value=stats.queue_depth,
        )
        yield GaugeMetricFamily(
            "crossroads_recorder_segments_pending",
            "Journal files not yet written to the database",
            value=stats.segments_pending,
        )
        for name, value, text in (
            ("rows_written", stats.rows_written, "Generation records written"),
            ("rows_rejected", stats.rows_rejected, "Records refused by the database"),
            ("rows_spilled", stats.rows_spilled, "Records kept in the journal only (queue full)"),
            ("rows_dropped", stats.rows_dropped, "Records lost (no journal, queue full)"),
            ("journal_errors", stats.journal_errors, "Failed journal appends or syncs"),
            ("write_failures", stats.write_failures, "Inserts failed for want of the database"),
        ):
            yield CounterMetricFamily(f"crossroads_recorder_{name}", text, value=value)


class RecordFanout:
    """The router's record sink: each finished record goes to the recorder, then to metrics.

    With `hold`, the record is also kept (at most `limit`, oldest dropped) until the
    request's middleware claims it by generation id, for the access log and the request's
    span: a record is submitted before its response ends, so the claim finds it."""

    def __init__(
        self, recorder: RecordSink, metrics: Metrics, *, hold: bool = False, limit: int = 1024
    ) -> None:
        self.recorder, self.metrics = recorder, metrics
        self.hold = hold
        self.limit = limit
        self._held: OrderedDict[str, GenerationRecord] = OrderedDict()

    def submit(self, record: GenerationRecord) -> None:
        self.recorder.submit(record)
        try:
            self.metrics.submit(record)
        except Exception:  # a bug in counting must not fail a request
            log.exception("cannot count generation record %s", record.id)
        if self.hold:
            self._held[record.id] = record
            if len(self._held) > self.limit:
                self._held.popitem(last=False)

    def claim(self, generation_id: str) -> GenerationRecord | None:
        """The record of `generation_id`, once (None if there is none, or not held)."""
        return self._held.pop(generation_id, None)
