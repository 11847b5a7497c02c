#!/usr/bin/env python3
"""Gateway overhead: wrk against a simulated provider directly, then through Crossroads.

The gateway runs alone on one core (`taskset -c 1`); the simulator and wrk share the
other. Added latency is measured unloaded (one connection, p50 and p99 of the
difference); throughput under load (many connections). Requires `wrk` (Debian: wrk).

    python bench/run.py [--seconds 10] [--connections 32] [--stream]

What live statistics and metrics cost: `--telemetry both` runs the same loaded and
unloaded gateway runs against a gateway with telemetry on and one with it off
(`CROSSROADS_TELEMETRY=0`: no live statistics, no metrics; circuits, records and the
overhead header stay), alternating, `--rounds` times each, and prints both.

    python bench/run.py --telemetry both [--rounds 3] [--seconds 8]

What admission costs: `--limits both` compares a gateway whose key has a spend limit and
whose account balance is in force (credits added with `crossroads credits add`) against
one with neither, the same way.

    python bench/run.py --limits both [--rounds 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent / "crossroads"
MANAGEMENT_KEY = "sk-cr-bench-management"
BODY = {
    "model": "bench/model",
    "messages": [{"role": "user", "content": "Say hello to the benchmark"}],
    "max_tokens": 16,
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, attempts: int = 200) -> None:
    for _ in range(attempts):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def _wrk(
    url: str, headers: dict[str, str], body: dict, seconds: int, connections: int, core: str
) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write('wrk.method = "POST"\n')
    script.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
    for name, value in {"Content-Type": "application/json", **headers}.items():
        script.write(f'wrk.headers["{name}"] = "{value}"\n')
    script.close()
    out = subprocess.run(
        [
            "taskset",
            "-c",
            core,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def _recorder(base: str) -> dict | None:
    """The recorder's counters once its queue has drained (None before GET /health existed)."""
    for _ in range(100):
        r = httpx.get(f"{base}/health", timeout=5)
        if r.status_code != 200:
            return None
        recorder = r.json()["recorder"]
        if not recorder["queue_depth"]:
            break
        time.sleep(0.1)
    return recorder


def _config(sim_port: int) -> dict:
    return {
        "providers": [
            {
                "slug": "sim",
                "name": "Simulator",
                "api": "openai",
                "base_url": f"http://127.0.0.1:{sim_port}/v1",
            }
        ],
        "models": [
            {
                "id": "bench/model",
                "endpoints": [
                    {
                        "provider": "sim",
                        "upstream_model": "mock",
                        "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                    }
                ],
            }
        ],
    }


def _start_gateway(
    workdir: Path, port: int, telemetry: bool, *, limits: bool = False
) -> subprocess.Popen:
    """A gateway on core 1 with its own data folder, up and answering; with `limits`, its
    account balance is in force (a million USD of credits, added before it starts)."""
    data = workdir / f"data-{port}"
    env = {
        **os.environ,
        "CROSSROADS_MANAGEMENT_KEY": MANAGEMENT_KEY,
        "CROSSROADS_TELEMETRY": "1" if telemetry else "0",
    }
    if limits:
        subprocess.run(
            [str(BIN), "credits", "add", "1000000", "--note", "bench", "--data-dir", str(data)],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
    gateway = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            str(BIN),
            "serve",
            "--config",
            str(workdir / "config.yaml"),
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    wait_until_up(f"http://127.0.0.1:{port}/api/v1/models/count")
    return gateway


def _key(port: int, *, limit: float | None = None) -> str:
    return httpx.post(
        f"http://127.0.0.1:{port}/api/v1/keys",
        json={"name": "bench", "limit": limit, "limit_reset": "daily" if limit else None},
        headers={"Authorization": f"Bearer {MANAGEMENT_KEY}"},
    ).json()["key"]


def _overhead_ms(port: int) -> float | None:
    """The mean of the gateway's own overhead metric (None with telemetry off)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = dict(
        re.findall(r"^crossroads_gateway_overhead_seconds_(sum|count) ([\d.e+-]+)$", text, re.M)
    )
    count = float(found.get("count", 0))
    return float(found["sum"]) / count * 1000 if count else None


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(args: argparse.Namespace, feature: str) -> None:
    """A feature (`telemetry` or `limits`) on and off, alternating (which goes first
    alternates too), `args.rounds` times each: the same load. Besides requests/s, which
    other work on the machine disturbs, the gateway's CPU time per request under load
    (from /proc), which it disturbs much less."""
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-bench-"))
    sim_port = free_port()
    (workdir / "config.yaml").write_text(yaml.safe_dump(_config(sim_port)))
    sim = subprocess.Popen(
        ["taskset", "-c", "0", str(BIN), "simulate", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    body = {**BODY, "stream": args.stream}
    rows: list[tuple[int, str, dict, dict, float | None, float]] = []
    try:
        wait_until_up(f"http://127.0.0.1:{sim_port}/_sim")
        for round_ in range(1, args.rounds + 1):
            for on in (True, False) if round_ % 2 else (False, True):
                port = free_port()
                limits = on and feature == "limits"
                telemetry = on or feature != "telemetry"
                gateway = _start_gateway(workdir, port, telemetry, limits=limits)
                try:
                    key = _key(port, limit=1e6 if limits else None)
                    auth = {"Authorization": f"Bearer {key}"}
                    through = f"http://127.0.0.1:{port}/api/v1/chat/completions"
                    _wrk(through, auth, body, 2, args.connections, "0")  # warm up
                    unloaded = _wrk(through, auth, body, args.seconds, 1, "0")
                    cpu = _cpu_seconds(gateway.pid)
                    loaded = _wrk(through, auth, body, args.seconds, args.connections, "0")
                    cpu_us = (_cpu_seconds(gateway.pid) - cpu) / loaded["requests"] * 1e6
                    mean = _overhead_ms(port)
                finally:
                    gateway.terminate()
                    gateway.wait(20)
                mode = "on" if on else "off"
                rows.append((round_, mode, unloaded, loaded, mean, cpu_us))
    finally:
        sim.terminate()
        sim.wait(20)
        shutil.rmtree(workdir, ignore_errors=True)

    kind = "streamed" if args.stream else "non-streaming"
    print(f"\n{kind} chat completions, {feature} on and off, {args.seconds} s per run\n")
    print(
        f"| round | {feature} | requests/s (32 conn.) | CPU per request (32 conn.) "
        "| p50 unloaded | overhead metric mean |"
    )
    print("|---|---|---|---|---|---|")
    for round_, mode, unloaded, loaded, mean, cpu_us in rows:
        shown = f"{mean:.3f} ms" if mean is not None else "-"
        print(
            f"| {round_} | {mode} | {loaded['rps']:,.0f} | {cpu_us:,.0f} µs "
            f"| {unloaded['p50_ms']:.2f} ms | {shown} |"
        )
    means = {}
    for mode in ("on", "off"):
        mine = [r for r in rows if r[1] == mode]
        rps = sum(r[3]["rps"] for r in mine) / len(mine)
        cpu = sum(r[5] for r in mine) / len(mine)
        means[mode] = (rps, cpu)
        print(f"{feature} {mode}: {rps:,.0f} requests/s, {cpu:,.0f} µs CPU per request (mean)")
    print(
        f"{feature} on / off: requests/s {means['on'][0] / means['off'][0]:.3f}, "
        f"CPU per request {means['on'][1] / means['off'][1]:.3f}"
    )
    if any(r[2]["non_2xx"] or r[3]["non_2xx"] for r in rows):
        raise SystemExit("some requests failed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--stream", action="store_true", help="measure streamed completions instead"
    )
    parser.add_argument(
        "--telemetry",
        choices=["on", "off", "both"],
        default="on",
        help="live statistics and metrics (CROSSROADS_TELEMETRY); both: compare them",
    )
    parser.add_argument(
        "--limits",
        choices=["off", "both"],
        default="off",
        help="both: compare a key limit and an enforced balance against neither",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --telemetry/--limits both")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if args.telemetry == "both" or args.limits == "both":
        compare(args, "telemetry" if args.telemetry == "both" else "limits")
        return

    workdir = Path(tempfile.mkdtemp(prefix="crossroads-bench-"))
    sim_port, gw_port = free_port(), free_port()
    (workdir / "config.yaml").write_text(yaml.safe_dump(_config(sim_port)))
    sim = subprocess.Popen(
        ["taskset", "-c", "0", str(BIN), "simulate", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = None
    try:
        wait_until_up(f"http://127.0.0.1:{sim_port}/_sim")
        gateway = _start_gateway(workdir, gw_port, args.telemetry == "on")
        key = _key(gw_port)
        body = {**BODY, "stream": args.stream}
        direct = f"http://127.0.0.1:{sim_port}/v1/chat/completions"
        through = f"http://127.0.0.1:{gw_port}/api/v1/chat/completions"
        auth = {"Authorization": f"Bearer {key}"}
        _wrk(through, auth, body, 2, args.connections, "0")  # warm up pools and caches
        results = {
            "direct_unloaded": _wrk(direct, {}, {**body, "model": "mock"}, args.seconds, 1, "0"),
            "gateway_unloaded": _wrk(through, auth, body, args.seconds, 1, "0"),
            "direct_loaded": _wrk(
                direct, {}, {**body, "model": "mock"}, args.seconds, args.connections, "0"
            ),
            "gateway_loaded": _wrk(through, auth, body, args.seconds, args.connections, "0"),
        }
        recorder = _recorder(f"http://127.0.0.1:{gw_port}")
    finally:
        for proc in (gateway, sim):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        shutil.rmtree(workdir, ignore_errors=True)

    added_p50 = results["gateway_unloaded"]["p50_ms"] - results["direct_unloaded"]["p50_ms"]
    added_p99 = results["gateway_unloaded"]["p99_ms"] - results["direct_unloaded"]["p99_ms"]
    kind = "streamed" if args.stream else "non-streaming"
    print(
        f"\n{kind} chat completions, gateway on one core, telemetry {args.telemetry}, "
        f"{args.seconds} s per run\n"
    )
    print("| run | connections | requests/s | p50 | p99 | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        conns = 1 if "unloaded" in name else args.connections
        print(
            f"| {name.replace('_', ' ')} | {conns} | {r['rps']:,.0f} | {r['p50_ms']:.2f} ms | "
            f"{r['p99_ms']:.2f} ms | {r['non_2xx']} |"
        )
    print(f"\nadded latency (unloaded): p50 {added_p50:.2f} ms, p99 {added_p99:.2f} ms")
    print(f"gateway throughput: {results['gateway_loaded']['rps']:,.0f} requests/s")
    if recorder is not None:
        print(
            f"records: {recorder['rows_written']:,} written, {recorder['rows_rejected']} rejected,"
            f" {recorder['rows_dropped']} dropped, {recorder['queue_depth']} still queued"
        )
    if any(r["non_2xx"] for r in results.values()):
        raise SystemExit("some requests failed")


if __name__ == "__main__":
    main()
