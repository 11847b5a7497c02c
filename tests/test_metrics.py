"""GET /metrics through a real server: counters equal the traffic sent; the overhead header.

The server here is this module's own (its counters see only this module's traffic), in
front of the session's simulators.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import HTTP, Server, Simulator, endpoint, provider

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server) -> Samples:
    """Every sample of GET /metrics, by (name, labels), parsed by Prometheus's own parser."""
    r = HTTP.get(server.url("/metrics"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def overhead(response: httpx.Response) -> float:
    """The overhead header as a number of milliseconds, checked to be a sane one."""
    ms = float(response.headers["x-crossroads-overhead-ms"])
    assert math.isfinite(ms) and 0 <= ms < 5000, ms
    return ms


def config(sims: dict[str, Simulator], **server: object) -> dict:
    return {
        "server": {"stream_keepalive_seconds": 0.2, **server},
        "providers": [provider(name, sims[name]) for name in ("alpha", "beta", "gamma")],
        "models": [
            {"id": "obs/one", "endpoints": [endpoint("alpha", 1, 2)]},
            {"id": "obs/pair", "endpoints": [endpoint("beta", 1, 1), endpoint("alpha", 2, 2)]},
            {"id": "obs/limited", "endpoints": [endpoint("gamma", 1, 1)]},
        ],
    }


@pytest.fixture(scope="module")
def observed(
    sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # failures never open a circuit here: the fallbacks below stay fallbacks
    srv = Server(tmp_path_factory.mktemp("metrics"), config(sims, circuit_failures=1000))
    yield srv
    srv.stop()


def chat(server: Server, model: str, **body: object) -> httpx.Response:
    return server.chat(model, "count these words", **body)


def stream(server: Server, model: str) -> tuple[httpx.Response, list[dict]]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=body, headers=server.headers()
    ) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    return r, events


def drained(server: Server) -> Samples:
    """A scrape once the recorder has written everything submitted so far."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(server)
        if not value(samples, "crossroads_recorder_queue_depth") or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_counters_match_the_traffic_sent(observed: Server, sims: dict[str, Simulator]) -> None:
    ids: list[str] = []
    for _ in range(3):  # served by alpha at once
        r = chat(observed, "obs/one")
        assert r.status_code == 200
        ids.append(r.json()["id"])
    r, events = stream(observed, "obs/one")
    assert r.status_code == 200 and events[-1]["usage"]["completion_tokens"] > 0
    ids.append(r.headers["x-generation-id"])

    sims["beta"].configure(fail_rate=1.0, status=500)  # beta first, alpha serves: fallbacks
    for _ in range(2):
        r = chat(observed, "obs/pair", provider={"order": ["beta", "alpha"]})
        assert r.status_code == 200 and r.json()["provider"] == "Alpha"
        ids.append(r.json()["id"])
    sims["alpha"].configure(fail_rate=1.0, status=502)  # both fail: alpha's 502 ends it
    r = chat(observed, "obs/pair", provider={"order": ["beta", "alpha"]})
    assert r.status_code == 502
    sims["alpha"].configure(fail_rate=1.0, status=400)  # the caller's request refused
    r = chat(observed, "obs/one")
    assert r.status_code == 400
    sims["gamma"].configure(fail_rate=1.0, status=429, retry_after="60")
    r = chat(observed, "obs/limited")
    assert r.status_code == 429

    m = drained(observed)
    req = "crossroads_requests_total"
    assert value(m, req, model="obs/one", provider="alpha", status="200") == 4
    assert value(m, req, model="obs/pair", provider="alpha", status="200") == 2
    assert value(m, req, model="obs/pair", provider="", status="502") == 1
    assert value(m, req, model="obs/one", provider="", status="400") == 1
    assert value(m, req, model="obs/limited", provider="", status="429") == 1
    assert sum(v for (name, _), v in m.items() if name == req) == 9
    err = "crossroads_errors_total"
    assert value(m, err, model="obs/pair", provider="alpha", status="502") == 1
    assert value(m, err, model="obs/one", provider="alpha", status="400") == 1
    assert value(m, err, model="obs/limited", provider="gamma", status="429") == 1
    assert sum(v for (name, _), v in m.items() if name == err) == 3

    att = "crossroads_attempts_total"
    assert value(m, att, provider="alpha", model="obs/one", outcome="ok") == 4
    assert value(m, att, provider="alpha", model="obs/one", outcome="refused") == 1
    assert value(m, att, provider="beta", model="obs/pair", outcome="failed") == 3
    assert value(m, att, provider="alpha", model="obs/pair", outcome="ok") == 2
    assert value(m, att, provider="alpha", model="obs/pair", outcome="failed") == 1
    assert value(m, att, provider="gamma", model="obs/limited", outcome="rate_limited") == 1
    assert sum(v for (name, _), v in m.items() if name == att) == 12
    assert value(m, "crossroads_fallbacks_total", provider="alpha", model="obs/pair") == 2
    latency = "crossroads_upstream_latency_seconds_count"
    assert value(m, latency, provider="alpha") == 8
    assert value(m, latency, provider="beta") == 3
    assert value(m, latency, provider="gamma") == 1

    # tokens and cost: what the served requests' records say they billed
    records = [observed.generation(i) for i in ids]
    for model in ("obs/one", "obs/pair"):
        mine = [g for g in records if g["model"] == model]
        for kind in ("prompt", "completion"):
            billed = sum(g[f"tokens_{kind}"] for g in mine)
            assert billed > 0
            assert value(m, "crossroads_tokens_total", model=model, kind=kind) == billed
        cost = sum(g["total_cost"] for g in mine)
        assert value(m, "crossroads_cost_usd_total", model=model) == pytest.approx(cost)

    # the recorder wrote every record; the 429 opened gamma's circuit for its Retry-After
    assert value(m, "crossroads_recorder_rows_written_total") == 9
    assert value(m, "crossroads_recorder_rows_dropped_total") == 0
    assert value(m, "crossroads_circuit_state", endpoint="obs/limited@gamma") == 2
    assert value(m, "crossroads_open_streams") == 0


def test_overhead_histogram_counts_each_request(observed: Server) -> None:
    name = "crossroads_gateway_overhead_seconds_count"
    first = value(scrape(observed), name)
    assert first > 0
    after = scrape(observed)  # counts the first scrape, observed once it had ended
    assert value(after, name) == first + 1
    assert value(after, "crossroads_gateway_overhead_seconds_sum") > 0


def test_open_streams_gauge(observed: Server, sims: dict[str, Simulator]) -> None:
    sims["alpha"].configure(tokens_per_second=10, max_reply_tokens=10)  # about a second
    body = {"model": "obs/one", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream(
        "POST", observed.base_url + "/chat/completions", json=body, headers=observed.headers()
    ) as r:
        lines = r.iter_lines()
        while not next(lines).startswith("data: {"):
            pass
        assert value(scrape(observed), "crossroads_open_streams") == 1
        for _ in lines:
            pass
    deadline = time.monotonic() + 5
    while value(scrape(observed), "crossroads_open_streams") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert value(scrape(observed), "crossroads_open_streams") == 0


def test_overhead_header_on_every_kind_of_response(observed: Server) -> None:
    overhead(chat(observed, "obs/one"))
    r, _ = stream(observed, "obs/one")
    overhead(r)
    overhead(observed.get("/models"))  # catalog
    overhead(HTTP.get(observed.url("/health")))
    overhead(HTTP.get(observed.url("/metrics")))
    bad = observed.post("/chat/completions", {"model": "obs/one"})  # no messages
    assert bad.status_code == 400
    overhead(bad)
    unknown = chat(observed, "obs/nothing-here")
    assert unknown.status_code in (400, 404)
    overhead(unknown)
    missing = observed.get("/no/such/path")
    assert missing.status_code == 404
    overhead(missing)
    unauthorised = observed.get("/models/count", key="sk-cr-v1-wrong")
    overhead(unauthorised)


def test_overhead_leaves_the_upstream_time_out(
    observed: Server, sims: dict[str, Simulator]
) -> None:
    sims["alpha"].configure(latency_ms=400)
    started = time.perf_counter()
    r = chat(observed, "obs/one")
    took = (time.perf_counter() - started) * 1000
    assert r.status_code == 200 and took >= 400
    assert overhead(r) < 200  # the 400 ms spent waiting for alpha is not the gateway's

    sims["alpha"].configure(latency_ms=0, headers_delay_ms=400)  # a slow stream, kept alive
    r, events = stream(observed, "obs/one")
    assert r.status_code == 200 and events
    assert overhead(r) < 200  # started by a keep-alive while the provider was still awaited


def test_telemetry_off_counts_nothing(
    sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory
) -> None:
    srv = Server(
        tmp_path_factory.mktemp("metrics-off"), config(sims), env={"CROSSROADS_TELEMETRY": "0"}
    )
    try:
        r = chat(srv, "obs/one")
        assert r.status_code == 200
        overhead(r)  # the header is there all the same
        m = drained(srv)
        assert not [name for name, _ in m if name == "crossroads_requests_total"]
        assert value(m, "crossroads_gateway_overhead_seconds_count") == 0
        assert value(m, "crossroads_recorder_rows_written_total") == 1  # read at scrape time
    finally:
        srv.stop()
