#!/usr/bin/env python3
"""Where a request's CPU goes: py-spy samples the gateway under load, everything on.

Starts a simulated provider and a gateway as `bench/run.py` does (the gateway alone on
core 1), with the account balance in force and a key with a daily limit, live
statistics, metrics, the journal and the records all on; drives it with wrk at 32
connections and samples the gateway with py-spy (`pip install -e '.[bench]'`) meanwhile. Prints
the functions that hold the most samples, by their own time and with what they call, and
the share of the samples each of our packages holds.

    python bench/profile.py [--seconds 15] [--stream] [--top 40] [--svg flame.svg]

`--svg` also writes py-spy's flame graph (keep it out of the tree).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, BODY, _config, _key, _start_gateway, _wrk, free_port, wait_until_up  # noqa: E402


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def _name(frame: str) -> str:
    """`function (path/to/file.py:12)` as `file-or-package: function`."""
    function, _, where = frame.partition(" (")
    path = where.split(":")[0]
    if "crossroads/" in path:
        path = "crossroads/" + path.split("crossroads/", 1)[1]
    elif "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    else:
        path = Path(path).name
    return f"{path}: {function}"


def _area(frame: str) -> str:
    """Which package a frame belongs to: ours by subpackage, others by distribution."""
    where = frame.partition(" (")[2]
    if "crossroads/" in where:
        parts = where.split("crossroads/", 1)[1].split("/")
        return "crossroads." + (parts[0] if len(parts) > 1 else parts[0].split(".")[0])
    if "site-packages/" in where:
        return where.split("site-packages/", 1)[1].split("/")[0]
    return "python"


def report(raw: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        samples += count
        own[_name(frames[-1])] += count
        areas[_area(frames[-1])] += count
        for name in {_name(f) for f in frames}:
            total[name] += count
    if not samples:
        raise SystemExit("py-spy took no samples")
    print(f"\n{samples} samples\n\n| own time | function |\n|---|---|")
    for name, count in own.most_common(top):
        print(f"| {count / samples:6.1%} | {name} |")
    print("\n| with callees | function |\n|---|---|")
    for name, count in total.most_common(top):
        print(f"| {count / samples:6.1%} | {name} |")
    print("\n| own time | package |\n|---|---|")
    for name, count in areas.most_common():
        print(f"| {count / samples:6.1%} | {name} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--svg", help="also write py-spy's flame graph here")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists() or not shutil.which("wrk"):
        raise SystemExit("needs py-spy (pip install py-spy) and wrk (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-profile-"))
    sim_port, port = free_port(), free_port()
    (workdir / "config.yaml").write_text(yaml.safe_dump(_config(sim_port)))
    sim = subprocess.Popen(
        ["taskset", "-c", "0", str(BIN), "simulate", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = None
    try:
        wait_until_up(f"http://127.0.0.1:{sim_port}/_sim")
        gateway = _start_gateway(workdir, port, True, limits=True)
        auth = {"Authorization": f"Bearer {_key(port, limit=1e6)}"}
        url = f"http://127.0.0.1:{port}/api/v1/chat/completions"
        body = {**BODY, "stream": args.stream}
        _wrk(url, auth, body, 2, args.connections, "0")  # warm up
        raw = workdir / "profile.txt"
        command = [spy, "record", "--pid", str(gateway.pid), "--rate", "500"]
        command += ["--duration", str(args.seconds), "--nonblocking"]
        recorders = [subprocess.Popen([*command, "--format", "raw", "-o", str(raw)])]
        if args.svg:
            recorders.append(subprocess.Popen([*command, "-o", args.svg]))
        loaded = _wrk(url, auth, body, args.seconds, args.connections, "0")
        for recorder in recorders:
            recorder.wait(60)
        print(f"{loaded['rps']:,.0f} requests/s under the profiler ({args.connections} conn.)")
        report(raw, args.top)
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(20)
        sim.terminate()
        sim.wait(20)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
