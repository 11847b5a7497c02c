#!/usr/bin/env python3
"""How long the server takes to render a model page: every tab of a model with 50
endpoints and a day of live statistics for each, in process (no network, no browser).

    .venv/bin/python bench/model_page.py [--rounds 20]

The app is built as `crossroads serve` builds it (a temporary SQLite database, the
lifespan run); the statistics are fed through `LiveStats.observe` with a clock that walks
through the past 24 hours, one sample per endpoint every 10 minutes. Each tab is
requested `--rounds` times through Starlette's test client; the first request (charts
drawn), the median and the slowest are printed in milliseconds. Charts are drawn at most
once a minute per tab, so the first request is the one that draws them. Target: under
50 ms for every tab, the first request included.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from starlette.testclient import TestClient

from crossroads.app import create_app
from crossroads.gateway import Gateway
from crossroads.settings import Settings
from crossroads.telemetry.sample import AttemptSample, Verdict
from crossroads.telemetry.stats import LiveStats

MODEL = "bench/big"
ENDPOINTS = 50
TABS = (
    "",
    "/providers",
    "/performance",
    "/pricing",
    "/benchmarks",
    "/apps",
    "/activity",
    "/uptime",
    "/api",
    "/playground",
)


def config() -> dict[str, object]:
    providers = [
        {
            "slug": f"p{i:02d}",
            "name": f"Provider {i:02d}",
            "api": "openai",
            "base_url": f"http://127.0.0.1:9/{i}",  # never called: nothing is sent
        }
        for i in range(ENDPOINTS)
    ]
    endpoints = [
        {
            "provider": f"p{i:02d}",
            "upstream_model": "big",
            "context_length": 131072,
            "pricing": {"prompt": f"{(i + 1) / 1e7:.10f}", "completion": f"{(i + 2) / 1e7:.10f}"},
        }
        for i in range(ENDPOINTS)
    ]
    model = {"id": MODEL, "name": "Bench: Big", "endpoints": endpoints}
    return {"providers": providers, "models": [model]}


def feed(stats: LiveStats, clock: list[float]) -> None:
    """A day of samples for every endpoint, the clock walking through it."""
    now = time.time()
    for step in range(24 * 6, 0, -1):
        clock[0] = now - step * 600
        for i in range(ENDPOINTS):
            ok = (step + i) % 17 != 0
            stats.observe(
                AttemptSample(
                    endpoint_id=f"{MODEL}@p{i:02d}",
                    provider=f"p{i:02d}",
                    model=MODEL,
                    verdict=Verdict.OK if ok else Verdict.FAILED,
                    latency_ms=200 + 5 * i + step % 50 if ok else None,
                    throughput=40 + i + step % 20 if ok else None,
                    prompt_tokens=500,
                    completion_tokens=200,
                    prompt_cost=0.0005,
                    completion_cost=0.0004,
                )
            )
    clock[0] = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.load({"data_dir": folder, "management_key": "sk-bench-mk"}, env={})
        gateway = Gateway.build(settings, config())
        clock = [time.time()]
        gateway.stats._clock = lambda: clock[0]  # noqa: SLF001 - the bench walks the clock
        app = create_app(settings, gateway)
        with TestClient(app) as client:
            feed(gateway.stats, clock)
            gateway.stats._clock = time.time  # noqa: SLF001
            print(f"model page of {MODEL}: {ENDPOINTS} endpoints, a day of statistics")
            print("| tab | first (charts drawn) | median | slowest |")
            print("|---|---|---|---|")
            for tab in TABS:
                path = f"/{MODEL}{tab}"
                started = time.perf_counter()
                assert client.get(path).status_code == 200, path
                first = (time.perf_counter() - started) * 1000
                times = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
                name = tab.strip("/") or "overview"
                median, slowest = statistics.median(times), max(times)
                print(f"| {name} | {first:.1f} ms | {median:.1f} ms | {slowest:.1f} ms |")


if __name__ == "__main__":
    main()
