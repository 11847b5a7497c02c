#!/usr/bin/env python3
"""Many slow streams at once: the delay the gateway adds between chunks, and its memory.

A simulated provider streams a chunk every 50 ms (`--tokens-per-second 20`); `--streams`
clients (1,000 by default) each open one stream of `--chunks` chunks, all at once (spread
over the first second), first straight to the simulator, then through a gateway that runs
alone on core 1 (the simulator and this client share core 0). For every stream the gap
between consecutive content chunks is measured where the client receives them; the
gateway's added delay is the through-the-gateway gap minus the provider's own pace, read
at the same percentile of the direct run. The gateway's RSS is sampled idle and every
100 ms while the streams are open.

    python bench/slow_streams.py [--streams 1000] [--chunks 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import yaml
from run import BIN, _config, _key, _start_gateway, free_port, wait_until_up

PACE_MS = 50.0  # the simulator's gap between chunks at 20 tokens per second


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(x for x in status if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


async def one_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict, delay: float
) -> list[float]:
    """The gaps (ms) between the content chunks of one stream."""
    await asyncio.sleep(delay)
    arrivals: list[float] = []
    async with session.post(url, json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data: {") and b'"content":"' in line:
                arrivals.append(time.monotonic())
    return [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)]


async def streams(url: str, headers: dict[str, str], body: dict, count: int) -> list[float]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        runs = [one_stream(session, url, headers, body, i / count) for i in range(count)]
        gaps = await asyncio.gather(*runs)
    return sorted(g for one in gaps for g in one)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))]


async def sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak.append(rss_mb(pid))
        await asyncio.sleep(0.1)


async def through(url: str, headers: dict[str, str], body: dict, count: int, pid: int) -> tuple:
    stop, seen = asyncio.Event(), []
    sampler = asyncio.create_task(sample_rss(pid, seen, stop))
    gaps = await streams(url, headers, body, count)
    stop.set()
    await sampler
    return gaps, max(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=40)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # this client beside the simulator, off the gateway's core
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-slow-"))
    sim_port, gw_port = free_port(), free_port()
    (workdir / "config.yaml").write_text(yaml.safe_dump(_config(sim_port)))
    sim = subprocess.Popen(
        ["taskset", "-c", "0", str(BIN), "simulate", "--port", str(sim_port)]
        + ["--tokens-per-second", str(1000 / PACE_MS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = None
    try:
        wait_until_up(f"http://127.0.0.1:{sim_port}/_sim")
        # the reply is "simulator says: <the user's words>": as many chunks as words asked
        httpx.post(f"http://127.0.0.1:{sim_port}/_sim", json={"max_reply_tokens": args.chunks})
        words = " ".join(f"w{i}" for i in range(args.chunks))
        body = {
            "model": "bench/model",
            "messages": [{"role": "user", "content": words}],
            "max_tokens": args.chunks + 8,
            "stream": True,
        }
        gateway = _start_gateway(workdir, gw_port, True)
        key = _key(gw_port)
        time.sleep(2)
        idle = rss_mb(gateway.pid)
        direct = asyncio.run(
            streams(
                f"http://127.0.0.1:{sim_port}/v1/chat/completions",
                {},
                {**body, "model": "mock"},
                args.streams,
            )
        )
        gaps, peak = asyncio.run(
            through(
                f"http://127.0.0.1:{gw_port}/api/v1/chat/completions",
                {"Authorization": f"Bearer {key}"},
                body,
                args.streams,
                gateway.pid,
            )
        )
        after = rss_mb(gateway.pid)
    finally:
        for proc in (gateway, sim):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\n{args.streams} concurrent streams of {args.chunks} chunks, a chunk every "
        f"{PACE_MS:.0f} ms; gateway on one core\n"
    )
    print("| run | gaps | p50 | p90 | p99 | max |")
    print("|---|---|---|---|---|---|")
    for name, values in (("direct", direct), ("through the gateway", gaps)):
        print(
            f"| {name} | {len(values):,} | {pct(values, 50):.1f} ms | {pct(values, 90):.1f} ms"
            f" | {pct(values, 99):.1f} ms | {values[-1]:.1f} ms |"
        )
    print(
        f"\nadded between chunks: p50 {pct(gaps, 50) - pct(direct, 50):.2f} ms, "
        f"p99 {pct(gaps, 99) - pct(direct, 99):.2f} ms"
    )
    print(
        f"gateway RSS: idle {idle:.0f} MB, peak with the streams open {peak:.0f} MB, "
        f"after {after:.0f} MB"
    )


if __name__ == "__main__":
    main()
