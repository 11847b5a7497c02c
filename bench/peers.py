#!/usr/bin/env python3
"""Side by side: Crossroads, LiteLLM's proxy and Portkey's gateway on the same load.

Each gateway sits in front of the same simulated OpenAI-compatible provider
(`crossroads simulate`) and runs alone on core 1 (`taskset -c 1`); the simulator and wrk
share core 0, as in bench/run.py. Every gateway gets non-streaming chat completions
(run.py's body, its model name adapted), one unloaded run (1 connection) and one loaded
run (`--connections`, 32), after a 2 s warm-up; the simulator alone is measured the same
way, as the ceiling. A round starts and measures every participant once, in an order
that rotates from round to round; the table gives the medians over `--rounds` of
requests/s, p50 and p99, and of the gateway's CPU time per request under load (its
process tree, from /proc). Requires `wrk` (Debian: wrk), and node and npm for Portkey.

    python bench/peers.py [--rounds 3] [--seconds 5] [--connections 32]
                          [--skip litellm,portkey]

The peers are installed on first use into a cache folder, never into the project's
environment, and reused after that (`--cache`, default ~/.cache/crossroads/bench-peers):

- LiteLLM: a venv made with the system `python3 -m venv` in CACHE/litellm and
  `pip install 'litellm[proxy]==LITELLM_VERSION'`, started as
  `litellm --config CONFIG --host 127.0.0.1 --port P --num_workers 1` with a model_list
  mapping `bench-model` to `openai/mock` at the simulator's /v1 URL, a dummy api_key, no
  database, a random master key (it refuses to start without one; the requests carry
  it), telemetry off (LITELLM_TELEMETRY=False, `telemetry: false`),
  the bundled model cost map instead of fetching one (LITELLM_LOCAL_MODEL_COST_MAP=True)
  and errors-only logging (LITELLM_LOG=ERROR).
- Portkey: `npm install --prefix CACHE/portkey @portkey-ai/gateway@PORTKEY_VERSION`,
  started as `node CACHE/portkey/node_modules/@portkey-ai/gateway/build/start-server.js
  --port=P --headless` with NODE_ENV=production, and called with `x-portkey-provider:
  openai`, `x-portkey-custom-host: http://127.0.0.1:SIM/v1` (127.0.0.1 is in its
  default trusted hosts) and a dummy bearer key.
- Crossroads: `crossroads serve` from this environment (telemetry on), a fresh key.

A peer that cannot be installed or does not answer correctly (status 200 and the
simulator's "says:" reply) is reported and left out; the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from run import BIN, BODY, _config, _key, _start_gateway, _wrk, free_port, wait_until_up

LITELLM_VERSION = "1.106.12"  # newer ones need a litellm-proxy(-extras) release not served here
PORTKEY_VERSION = "1.15.2"
DEFAULT_CACHE = Path.home() / ".cache" / "crossroads" / "bench-peers"
PEERS = ("crossroads", "litellm", "portkey")


class Unavailable(Exception):
    """A peer that could not be installed or started."""


@dataclass
class Peer:
    name: str
    version: str
    # Starts the gateway (sim port, own port, work folder, log file): process, url, headers.
    start: Callable[[int, int, Path, Path], tuple[subprocess.Popen | None, str, dict[str, str]]]
    model: str
    command: list[str] = field(default_factory=list)  # as shown in the report


def _run(cmd: list[str], log: Path, **kwargs: object) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    if done.returncode:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise Unavailable(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{tail}")


def _terminate(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _wait(proc: subprocess.Popen, url: str, log: Path, seconds: float = 90) -> None:
    """Until `url` answers anything; a process that exits first is reported with its log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise Unavailable(f"exited with {proc.returncode} before answering:\n{tail}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise Unavailable(f"{url} did not answer within {seconds:.0f} s")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _tree_cpu(pid: int) -> float:
    """User and system CPU seconds of a process and its descendants so far."""
    total = 0.0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# --- installation -------------------------------------------------------------------


def install_litellm(cache: Path) -> str:
    venv = cache / "litellm"
    marker = venv / f".installed-{LITELLM_VERSION}"
    if marker.exists() and (venv / "bin" / "litellm").exists():
        return LITELLM_VERSION
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3")
    if python is None:
        raise Unavailable("no system python3")
    log = cache / "litellm-install.log"
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} (log: {log})", flush=True)
    if not (venv / "bin" / "pip").exists():
        _run([python, "-m", "venv", str(venv)], log)
    _run([str(venv / "bin" / "pip"), "install", f"litellm[proxy]=={LITELLM_VERSION}"], log)
    marker.touch()
    return LITELLM_VERSION


def install_portkey(cache: Path) -> str:
    prefix = cache / "portkey"
    package = prefix / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    if package.exists() and json.loads(package.read_text())["version"] == PORTKEY_VERSION:
        return PORTKEY_VERSION
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise Unavailable(f"{tool} is not installed")
    prefix.mkdir(parents=True, exist_ok=True)
    log = cache / "portkey-install.log"
    print(
        f"installing @portkey-ai/gateway@{PORTKEY_VERSION} into {prefix} (log: {log})", flush=True
    )
    _run(
        [
            "npm",
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            f"@portkey-ai/gateway@{PORTKEY_VERSION}",
        ],
        log,
    )
    return json.loads(package.read_text())["version"]


def _portkey_entry(cache: Path) -> Path:
    """The file its package.json names as `bin` (a string, or the one entry of a dict)."""
    root = cache / "portkey" / "node_modules" / "@portkey-ai" / "gateway"
    meta = json.loads((root / "package.json").read_text())
    entry = meta.get("bin") or meta.get("main") or "build/start-server.js"
    if isinstance(entry, dict):
        entry = next(iter(entry.values()))
    return root / entry


# --- starting each gateway ----------------------------------------------------------


def _crossroads(version: str) -> Peer:
    def start(sim_port: int, port: int, workdir: Path, log: Path):
        (workdir / "config.yaml").write_text(yaml.safe_dump(_config(sim_port)))
        proc = _start_gateway(workdir, port, True)
        key = _key(port)
        url = f"http://127.0.0.1:{port}/api/v1/chat/completions"
        return proc, url, {"Authorization": f"Bearer {key}"}

    command = [
        "taskset -c 1",
        str(BIN),
        "serve --config CONFIG --port P --data-dir DATA",
        "(CROSSROADS_TELEMETRY=1)",
    ]
    return Peer("Crossroads", version, start, BODY["model"], command)


def _litellm(version: str, cache: Path) -> Peer:
    exe = cache / "litellm" / "bin" / "litellm"

    def start(sim_port: int, port: int, workdir: Path, log: Path):
        master_key = f"sk-{secrets.token_hex(32)}"
        config = workdir / f"litellm-{port}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "model_list": [
                        {
                            "model_name": "bench-model",
                            "litellm_params": {
                                "model": "openai/mock",
                                "api_base": f"http://127.0.0.1:{sim_port}/v1",
                                "api_key": "sk-dummy",
                            },
                        }
                    ],
                    "litellm_settings": {"telemetry": False},
                    # Required to start; with no database, the only key there is.
                    "general_settings": {"master_key": master_key},
                }
            )
        )
        env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY")
        }
        env.update(
            LITELLM_TELEMETRY="False",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOG="ERROR",
        )
        cmd = [
            "taskset",
            "-c",
            "1",
            str(exe),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ]
        with log.open("a") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        try:
            _wait(proc, f"http://127.0.0.1:{port}/health/liveliness", log)
        except Unavailable:
            _terminate(proc)
            raise
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        return proc, url, {"Authorization": f"Bearer {master_key}"}

    command = [
        "taskset -c 1",
        str(exe),
        "--config CONFIG --host 127.0.0.1 --port P --num_workers 1",
        "(LITELLM_TELEMETRY=False LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR)",
    ]
    return Peer("LiteLLM proxy", version, start, "bench-model", command)


def _portkey(version: str, cache: Path) -> Peer:
    node = shutil.which("node") or "node"
    entry = _portkey_entry(cache)

    def start(sim_port: int, port: int, workdir: Path, log: Path):
        env = {**os.environ, "NODE_ENV": "production"}
        cmd = ["taskset", "-c", "1", node, str(entry), f"--port={port}", "--headless"]
        with log.open("a") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        try:
            _wait(proc, f"http://127.0.0.1:{port}/", log)
        except Unavailable:
            _terminate(proc)
            raise
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        headers = {
            "Authorization": "Bearer sk-dummy",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"http://127.0.0.1:{sim_port}/v1",
        }
        return proc, url, headers

    command = ["taskset -c 1", node, str(entry), "--port=P --headless", "(NODE_ENV=production)"]
    return Peer("Portkey gateway", version, start, "mock", command)


def _simulator() -> Peer:
    def start(sim_port: int, port: int, workdir: Path, log: Path):
        return None, f"http://127.0.0.1:{sim_port}/v1/chat/completions", {}

    return Peer("simulator alone", "-", start, "mock", ["(wrk straight at the simulator)"])


def _check(url: str, headers: dict[str, str], body: dict) -> None:
    """One request answered 200 with the simulator's reply, or Unavailable."""
    try:
        r = httpx.post(url, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise Unavailable(f"check request failed: {exc!r}") from exc
    text = ""
    if r.status_code == 200:
        try:
            text = r.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            text = ""
    if r.status_code != 200 or "says:" not in text:
        raise Unavailable(f"check request answered {r.status_code}: {r.text[:300]}")


# --- measuring ----------------------------------------------------------------------


def measure(peer: Peer, sim_port: int, workdir: Path, args: argparse.Namespace) -> dict:
    port = free_port()
    log = workdir / f"{peer.name.split()[0]}-{port}.log"
    proc, url, headers = peer.start(sim_port, port, workdir, log)
    try:
        body = {**BODY, "model": peer.model}
        _check(url, headers, body)
        _wrk(url, headers, body, 2, args.connections, "0")  # warm up
        unloaded = _wrk(url, headers, body, args.seconds, 1, "0")
        cpu = _tree_cpu(proc.pid) if proc else 0.0
        loaded = _wrk(url, headers, body, args.seconds, args.connections, "0")
        cpu_us = (_tree_cpu(proc.pid) - cpu) / max(loaded["requests"], 1) * 1e6 if proc else None
    finally:
        _terminate(proc)
    return {"unloaded": unloaded, "loaded": loaded, "cpu_us": cpu_us}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="of the loaded run")
    parser.add_argument("--rounds", type=int, default=3, help="every gateway once per round")
    parser.add_argument(
        "--skip", default="", help="comma-separated gateways to leave out: " + ",".join(PEERS)
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="install folder")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(PEERS):
        parser.error(f"--skip takes {','.join(PEERS)}, not {','.join(sorted(skip - set(PEERS)))}")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    args.cache.mkdir(parents=True, exist_ok=True)

    problems: dict[str, str] = {}
    peers: list[Peer] = [_simulator()]
    if "crossroads" not in skip:
        from importlib.metadata import version

        peers.append(_crossroads(version("crossroads")))
    for name, install, make in (
        ("litellm", install_litellm, _litellm),
        ("portkey", install_portkey, _portkey),
    ):
        if name in skip:
            continue
        try:
            installed = install(args.cache)
        except (Unavailable, OSError) as exc:
            problems[name] = f"install failed: {exc}"
            print(f"{name}: {problems[name]}", file=sys.stderr)
            continue
        peers.append(make(installed, args.cache))

    workdir = Path(tempfile.mkdtemp(prefix="crossroads-peers-"))
    sim_port = free_port()
    sim = subprocess.Popen(
        ["taskset", "-c", "0", str(BIN), "simulate", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, list[dict]] = {p.name: [] for p in peers}
    orders: list[list[str]] = []
    try:
        wait_until_up(f"http://127.0.0.1:{sim_port}/_sim")
        for round_ in range(args.rounds):
            shift = round_ % len(peers)
            order = peers[shift:] + peers[:shift]
            orders.append([p.name for p in order])
            for peer in order:
                if peer.name in problems:
                    continue
                print(f"round {round_ + 1}: {peer.name} ...", flush=True)
                try:
                    results[peer.name].append(measure(peer, sim_port, workdir, args))
                except Unavailable as exc:
                    problems[peer.name] = str(exc)
                    print(f"{peer.name}: left out: {exc}", file=sys.stderr)
    finally:
        _terminate(sim)
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\nnon-streaming chat completions, each gateway alone on core 1, simulator and wrk on"
        f" core 0, {args.seconds} s per run, medians of {args.rounds} rounds\n"
    )
    for i, order in enumerate(orders, 1):
        print(f"round {i} order: {', '.join(order)}")
    print()
    c = args.connections
    print(
        f"| gateway | version | requests/s (1 conn.) | p50 (1 conn.) | p99 (1 conn.) "
        f"| requests/s ({c} conn.) | p50 ({c} conn.) | p99 ({c} conn.) "
        f"| CPU per request ({c} conn.) | non-2xx |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = False
    for peer in peers:
        runs = results[peer.name]
        if not runs:
            continue

        def med(load: str, key: str, runs: list[dict] = runs) -> float:
            return statistics.median(r[load][key] for r in runs)

        cpus = [r["cpu_us"] for r in runs if r["cpu_us"] is not None]
        cpu = f"{statistics.median(cpus):,.0f} µs" if cpus else "-"
        non_2xx = sum(r[load]["non_2xx"] for r in runs for load in ("unloaded", "loaded"))
        failed |= bool(non_2xx)
        print(
            f"| {peer.name} | {peer.version} "
            f"| {med('unloaded', 'rps'):,.0f} | {med('unloaded', 'p50_ms'):.2f} ms "
            f"| {med('unloaded', 'p99_ms'):.2f} ms "
            f"| {med('loaded', 'rps'):,.0f} | {med('loaded', 'p50_ms'):.2f} ms "
            f"| {med('loaded', 'p99_ms'):.2f} ms | {cpu} | {non_2xx} |"
        )
    print(f"\nrequests/s at {c} connections, each round:")
    for peer in peers:
        if results[peer.name]:
            shown = " / ".join(f"{r['loaded']['rps']:,.0f}" for r in results[peer.name])
            print(f"- {peer.name}: {shown}")
    print("\nstarted as:")
    for peer in peers[1:]:
        if peer.name not in problems or results[peer.name]:
            print(f"- {peer.name}: {' '.join(peer.command)}")
    for name, problem in problems.items():
        print(f"\n{name} left out: {problem}")
    if failed:
        raise SystemExit("some requests failed")


if __name__ == "__main__":
    main()
