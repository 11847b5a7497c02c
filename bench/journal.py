#!/usr/bin/env python3
"""The journal's cost on the request path: `Recorder.submit()` with and without it.

`submit()` is what a request pays for its record, before the last byte of its response:
fitting the row to the table, and with the journal one JSON line appended with
`os.write`. This times it in process, on a real SQLite store with the background writer
running (every 250 ms, as in production), on one core (`taskset -c 1` by default), so the
figure does not drown in the noise of a whole-server run on a shared machine.

    python bench/journal.py [--records 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from crossroads.schema.generation import GenerationRecord
from crossroads.storage import GenerationStore, make_engine, migrate
from crossroads.telemetry.journal import Journal
from crossroads.telemetry.recorder import Recorder


def _record(n: int) -> GenerationRecord:
    """A record as the router writes it for a plain chat completion."""
    return GenerationRecord(
        id=f"gen-{n}-{os.getpid()}",
        created_at=datetime.now(UTC),
        model="bench/model",
        api_key_hash="k" * 64,
        provider_slug="sim",
        provider_name="Simulator",
        endpoint_tag="sim",
        upstream_id=f"sim-{n}",
        latency_ms=1.25,
        generation_time_ms=1.25,
        finish_reason="stop",
        native_finish_reason="stop",
        tokens_prompt=12,
        tokens_completion=16,
        total_cost=4.4e-05,
        user_agent="wrk",
        attempts=[
            {
                "provider_slug": "sim",
                "provider_name": "Simulator",
                "endpoint_tag": "sim",
                "model": "bench/model",
                "status": 200,
                "latency_ms": 1.25,
                "error": None,
            }
        ],
    )


async def _run(directory: Path, records: int, *, journal: bool) -> float:
    """Microseconds per submit(), in batches of 100 spread like requests (the writer runs
    between them)."""
    engine = make_engine(f"sqlite:///{directory / 'bench.db'}")
    await migrate(engine)
    recorder = Recorder(
        GenerationStore(engine), journal=Journal(directory / "journal") if journal else None
    )
    await recorder.start()
    rows = [_record(n) for n in range(records)]
    spent = 0.0
    for start in range(0, records, 100):
        began = time.perf_counter()
        for record in rows[start : start + 100]:
            recorder.submit(record)
        spent += time.perf_counter() - began
        await asyncio.sleep(0.001)  # let the writer and the fsync thread run, as under load
    await recorder.close()
    await engine.dispose()
    return spent / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--core", type=int, default=1)
    args = parser.parse_args()
    if args.core >= 0:
        os.sched_setaffinity(0, {args.core})
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for journal in (False, True):  # alternated, so drift hits both
            with tempfile.TemporaryDirectory(prefix="crossroads-journal-") as tmp:
                results[journal].append(asyncio.run(_run(Path(tmp), args.records, journal=journal)))
    without, with_journal = (statistics.median(results[j]) for j in (False, True))
    print(f"\nRecorder.submit(), median of {args.rounds} rounds of {args.records:,} records\n")
    print("| journal | µs per record | runs |")
    print("|---|---|---|")
    for journal, label in ((False, "off"), (True, "on")):
        runs = ", ".join(f"{v:.1f}" for v in results[journal])
        print(f"| {label} | {statistics.median(results[journal]):.1f} | {runs} |")
    print(f"\nthe journal adds {with_journal - without:.1f} µs per request")


if __name__ == "__main__":
    main()
