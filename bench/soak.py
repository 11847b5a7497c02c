#!/usr/bin/env python3
"""Soak: a server under steady, imperfect load for a long time; nothing may leak or be lost.

Starts two simulated providers (a steady one with latency and a few failures, a faulty
one whose failures change every 30 s: 500s, 429s, streams that die after two chunks),
a Crossroads server in front of them, and a bounded load generator (`--clients`
concurrent clients, 4 by default: about half of what the gateway serves on one core
with these latencies): streamed and non-streamed requests, random keys among a few
created at start, random client disconnects. Every 10 s it samples the server's RSS
and open file descriptors (/proc/PID/status VmRSS, /proc/PID/fd) and its recorder
counters (GET /health).

At the end it stops the load, waits for the recorder's queue to drain, and checks that
every response that carried an X-Generation-Id (every 200, and the errors) has its
record in the database, reads a sample back through GET /generation, and compares each
key's spend (GET /key) with the sum of its records. Not part of `make test`.

    python bench/soak.py [--minutes 20] [--clients 4] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from run import free_port, wait_until_up  # bench/ is on the path when run as a script

BIN = Path(sys.executable).parent / "crossroads"
MANAGEMENT_KEY = "sk-cr-soak-management"
MODELS = ("soak/steady", "soak/flaky")


@dataclass
class Sample:
    at: float
    rss_kb: int
    fds: int
    cpu_s: float  # the server's user + system CPU time so far
    requests: int
    recorder: dict[str, Any]


@dataclass
class Tally:
    requests: int = 0
    ok: int = 0  # 200 received
    errors: int = 0  # another status received
    disconnects: int = 0  # the client went away on purpose
    transport_errors: int = 0  # the connection failed (should stay 0)
    ids: dict[str, str] = field(default_factory=dict)  # generation id -> key hash


def _proc_status(pid: int) -> tuple[int, int, float]:
    """RSS (kB), open file descriptors and CPU seconds of a process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return rss, len(os.listdir(f"/proc/{pid}/fd")), cpu


def _config(steady: int, faulty: int) -> dict[str, Any]:
    def prov(slug: str, port: int) -> dict[str, Any]:
        base = f"http://127.0.0.1:{port}/v1"
        return {"slug": slug, "name": slug.capitalize(), "api": "openai", "base_url": base}

    def ep(slug: str, price: float) -> dict[str, Any]:
        p = f"{price / 1e6:.10f}"
        return {
            "provider": slug,
            "upstream_model": "mock",
            "pricing": {"prompt": p, "completion": p},
        }

    return {
        "server": {"stream_keepalive_seconds": 1.0},
        "providers": [prov("steady", steady), prov("faulty", faulty)],
        "models": [
            {"id": "soak/steady", "endpoints": [ep("steady", 1)]},
            # the faulty provider is cheaper, so it is usually tried first; steady is the fallback
            {"id": "soak/flaky", "endpoints": [ep("faulty", 0.5), ep("steady", 2)]},
        ],
    }


async def _one(client: httpx.AsyncClient, keys: dict[str, str], tally: Tally) -> None:
    token = random.choice(list(keys))
    stream = random.random() < 0.5
    disconnect = random.random() < 0.05
    body = {
        "model": random.choice(MODELS),
        "messages": [{"role": "user", "content": "soak " * random.randint(1, 40)}],
        "stream": stream,
        "max_tokens": random.randint(4, 32),
    }
    headers = {"Authorization": f"Bearer {token}", "X-Title": "soak"}
    tally.requests += 1
    timeout = httpx.Timeout(30.0)
    if disconnect and not stream:
        timeout = httpx.Timeout(30.0, read=0.005)  # give up before the answer
    try:
        async with client.stream(
            "POST", "/api/v1/chat/completions", json=body, headers=headers, timeout=timeout
        ) as r:
            generation_id = r.headers.get("x-generation-id")
            if generation_id:
                tally.ids[generation_id] = keys[token]
            if r.status_code == 200:
                tally.ok += 1
            else:
                tally.errors += 1
            lines = 0
            async for _ in r.aiter_lines():
                lines += 1
                if disconnect and lines >= 2:
                    tally.disconnects += 1
                    return  # closing the response mid-stream
    except httpx.ReadTimeout:
        if disconnect:
            tally.disconnects += 1
        else:
            tally.transport_errors += 1
    except httpx.HTTPError:
        tally.transport_errors += 1


async def _client(base: str, keys: dict[str, str], tally: Tally, until: float) -> None:
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:
        while time.monotonic() < until:
            await _one(client, keys, tally)


async def _faults(faulty: str, until: float) -> None:
    """Change the faulty provider's failures every 30 s."""
    async with httpx.AsyncClient() as client:
        while time.monotonic() < until:
            behaviour = {
                "fail_rate": random.choice([0.05, 0.2, 0.5]),
                "status": random.choice([500, 502, 429, 503]),
                "die_after_chunks": random.choice([None, None, 2]),
                "latency_ms": random.choice([2, 5, 40]),
            }
            await client.post(f"{faulty}/_sim", json=behaviour)
            await asyncio.sleep(min(30.0, max(0.0, until - time.monotonic())))


async def _sampler(pid: int, base: str, tally: Tally, samples: list[Sample], until: float) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        while True:
            rss, fds, cpu = _proc_status(pid)
            recorder = (await client.get("/health")).json()["recorder"]
            samples.append(Sample(time.monotonic(), rss, fds, cpu, tally.requests, recorder))
            if time.monotonic() >= until:
                return
            await asyncio.sleep(min(10.0, max(0.0, until - time.monotonic())))


async def _load(args: argparse.Namespace, pid: int, base: str, faulty: str, keys: dict[str, str]):
    tally, samples = Tally(), []
    until = time.monotonic() + args.minutes * 60
    tasks = [_client(base, keys, tally, until) for _ in range(args.clients)]
    tasks += [_faults(faulty, until), _sampler(pid, base, tally, samples, until)]
    await asyncio.gather(*tasks)
    return tally, samples


def _drain(base: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        recorder = httpx.get(f"{base}/health").json()["recorder"]
        if recorder["queue_depth"] == 0 or time.monotonic() > deadline:
            return recorder
        time.sleep(0.2)


def _check(base: str, db: Path, tally: Tally, keys: dict[str, str]) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM generations")}
        spend = dict(
            conn.execute("SELECT api_key_hash, sum(total_cost) FROM generations GROUP BY 1")
        )
    missing = [i for i in tally.ids if i not in stored]
    auth = {"Authorization": f"Bearer {MANAGEMENT_KEY}"}
    sample = random.sample(list(tally.ids), min(500, len(tally.ids)))
    unreadable = sum(
        1
        for i in sample
        if httpx.get(f"{base}/api/v1/generation", params={"id": i}, headers=auth).status_code != 200
    )
    spend_mismatch = 0
    for token, key_hash in keys.items():
        usage = httpx.get(f"{base}/api/v1/key", headers={"Authorization": f"Bearer {token}"})
        if abs(usage.json()["data"]["usage"] - (spend.get(key_hash) or 0.0)) > 1e-9:
            spend_mismatch += 1
    return {
        "missing": len(missing),
        "missing_ids": missing[:10],
        "sample": len(sample),
        "unreadable": unreadable,
        "spend_mismatch": spend_mismatch,
    }


def _report(args: argparse.Namespace, tally: Tally, samples: list[Sample], check, recorder):
    first = samples[1] if len(samples) > 1 else samples[0]  # after 10 s of warm-up
    last = samples[-1]
    elapsed = last.at - samples[0].at or 1.0
    print(f"\nsoak: {args.minutes:g} min, {args.clients} clients\n")
    print("| t (s) | RSS (MB) | fds | server CPU | requests | queue depth | written | rejected |")
    print("|---|---|---|---|---|---|---|---|")
    previous = samples[0]
    for s in samples:
        r, span = s.recorder, s.at - previous.at
        cpu = f"{(s.cpu_s - previous.cpu_s) / span:.0%}" if span > 0 else "-"
        print(
            f"| {s.at - samples[0].at:.0f} | {s.rss_kb / 1024:.1f} | {s.fds} | {cpu} | "
            f"{s.requests} | {r['queue_depth']} | {r['rows_written']} | {r['rows_rejected']} |"
        )
        previous = s
    peak = max(s.rss_kb for s in samples)
    print("\n| measure | value |")
    print("|---|---|")
    rows = [
        (
            "RSS at 10 s / end / peak (MB)",
            f"{first.rss_kb / 1024:.1f} / {last.rss_kb / 1024:.1f} / {peak / 1024:.1f}",
        ),
        (
            "open fds at 10 s / end / max",
            f"{first.fds} / {last.fds} / {max(s.fds for s in samples)}",
        ),
        ("requests (per second)", f"{tally.requests} ({tally.requests / elapsed:.0f}/s)"),
        ("server CPU, mean", f"{(last.cpu_s - samples[0].cpu_s) / elapsed:.0%} of one core"),
        ("200 / other status / disconnects", f"{tally.ok} / {tally.errors} / {tally.disconnects}"),
        ("transport errors", str(tally.transport_errors)),
        ("responses with a generation id", str(len(tally.ids))),
        ("records missing", str(check["missing"])),
        (
            f"records unreadable by /generation (sample of {check['sample']})",
            str(check["unreadable"]),
        ),
        ("keys whose spend differs from their records", str(check["spend_mismatch"])),
        (
            "recorder: rejected / spilled / dropped / journal errors",
            f"{recorder['rows_rejected']} / {recorder['rows_spilled']} / {recorder['rows_dropped']}"
            f" / {recorder['journal_errors']}",
        ),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    if check["missing_ids"]:
        print("\nmissing, e.g.:", ", ".join(check["missing_ids"]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="crossroads-soak-"))
    steady_port, faulty_port, port = free_port(), free_port(), free_port()
    (workdir / "config.yaml").write_text(yaml.safe_dump(_config(steady_port, faulty_port)))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sims = [
        subprocess.Popen([str(BIN), "simulate", "--port", str(p), "--name", n], **quiet)
        for p, n in ((steady_port, "steady"), (faulty_port, "faulty"))
    ]
    log = (workdir / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(BIN),
            "serve",
            "--config",
            str(workdir / "config.yaml"),
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CROSSROADS_MANAGEMENT_KEY": MANAGEMENT_KEY},
    )
    base = f"http://127.0.0.1:{port}"
    steady, faulty = (f"http://127.0.0.1:{p}" for p in (steady_port, faulty_port))
    try:
        wait_until_up(f"{steady}/_sim", attempts=400)
        wait_until_up(f"{faulty}/_sim", attempts=400)
        wait_until_up(f"{base}/health", attempts=400)
        httpx.post(
            f"{steady}/_sim", json={"latency_ms": 5, "tokens_per_second": 1000, "fail_rate": 0.02}
        )
        keys = {}
        for n in range(args.keys):
            created = httpx.post(
                f"{base}/api/v1/keys",
                json={"name": f"soak {n}"},
                headers={"Authorization": f"Bearer {MANAGEMENT_KEY}"},
            ).json()
            keys[created["key"]] = created["data"]["hash"]
        tally, samples = asyncio.run(_load(args, server.pid, base, faulty, keys))
        time.sleep(1.0)  # the server notices the last disconnects and records them
        recorder = _drain(base)
        check = _check(base, workdir / "data" / "crossroads.db", tally, keys)
    finally:
        for proc in (server, *sims):
            proc.terminate()
            proc.wait(30)
        log.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"data kept in {workdir}")
    _report(args, tally, samples, check, recorder)
    if check["missing"] or check["unreadable"] or check["spend_mismatch"]:
        raise SystemExit("records are missing or spend is wrong")


if __name__ == "__main__":
    main()
