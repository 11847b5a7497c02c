"""Real processes for tests: simulated providers and Crossroads servers on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import yaml

BIN = Path(sys.executable).parent / "crossroads"
MANAGEMENT_KEY = "sk-cr-test-management"
HTTP = httpx.Client(timeout=30)  # one pooled client: building one per call costs ~30 ms
POSTGRES = os.environ.get("CROSSROADS_TEST_POSTGRES_URL")  # set by `make test`


async def temporary_postgres() -> tuple[str, str]:
    """A new, empty PostgreSQL database on the test server: (its URL, its name)."""
    assert POSTGRES
    name = f"crossroads_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return POSTGRES.rsplit("/", 1)[0] + "/" + name, name


async def drop_postgres(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connecting is refused."""
    return free_port()


class Blackhole:
    """A port on 127.0.0.1 that never accepts a connection: its listening socket's accept
    queue is full, so the kernel drops new connection attempts and a client waits for its
    connect timeout. (Never an address outside 127.0.0.0/8.)"""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(4):  # more than the queue holds: the rest hang in SYN-SENT
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)
        time.sleep(0.05)

    def url(self, path: str = "/v1") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        for s in [*self.fillers, self.listener]:
            s.close()


class Output:
    """A child process's output, read as it comes: a full pipe would block the process."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._drain, args=(proc,), daemon=True)
        self.thread.start()

    def _drain(self, proc: subprocess.Popen) -> None:
        if proc.stdout is None:  # written to a file instead: nothing to drain
            return
        for line in proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)


def _wait(url: str, proc: subprocess.Popen, output: Output, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output.thread.join(5)
            raise RuntimeError(f"process exited with {proc.returncode}: {output.text()}")
        try:
            if HTTP.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not come up")


def _stop(proc: subprocess.Popen, output: Output) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output.thread.join(5)
    return output.text()


class Simulator:
    """A `crossroads simulate` process."""

    def __init__(self, name: str, *args: str, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [str(BIN), "simulate", "--port", str(self.port), "--name", name, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = Output(self.proc)
        _wait(self.url("/_sim"), self.proc, self.output)

    def url(self, path: str = "/v1") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def configure(self, **behaviour: Any) -> None:
        """Change the behaviour (see `simulator.server.Behaviour`): latency, failures,
        `fault=` (`simulator.faults.FAULTS`), `usage=` / `finish_reason=` overrides, ..."""
        HTTP.post(self.url("/_sim"), json=behaviour).raise_for_status()

    def reset(self, **behaviour: Any) -> None:
        HTTP.post(self.url("/_sim/reset"), json=behaviour).raise_for_status()

    def state(self) -> dict[str, Any]:
        return HTTP.get(self.url("/_sim")).json()

    def last_body(self) -> dict[str, Any]:
        return self.state()["received"][-1]["body"]

    def stop(self) -> None:
        _stop(self.proc, self.output)


class Server:
    """A `crossroads serve` process with its own config, data folder and API key."""

    def __init__(
        self,
        tmp: Path,
        config: dict[str, Any] | str | None,
        *args: str,
        env: dict[str, str] | None = None,
        management_key: str | None = MANAGEMENT_KEY,
    ) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = tmp / "config.yaml"
        if config is not None:
            self.config_path.write_text(
                config if isinstance(config, str) else yaml.safe_dump(config)
            )
            args = ("--config", str(self.config_path), *args)
        self.port = free_port()
        self.management_key = management_key
        # nothing from the outside: no settings, and no provider keys that would make presets live
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CROSSROADS_") and not k.endswith("_API_KEY")
        }
        if management_key:
            environment["CROSSROADS_MANAGEMENT_KEY"] = management_key
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port), "--data-dir", str(tmp / "data"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        self.output = Output(self.proc)
        _wait(self.url("/api/v1/models/count"), self.proc, self.output)
        self.api_key = self.create_key("tests")["key"] if management_key else None
        self._sdk: openai.OpenAI | None = None

    @property
    def base_url(self) -> str:
        return self.url("/api/v1")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def create_key(self, name: str, **fields: Any) -> dict[str, Any]:
        r = HTTP.post(
            self.url("/api/v1/keys"),
            json={"name": name, **fields},
            headers={"Authorization": f"Bearer {self.management_key}"},
        )
        r.raise_for_status()
        return r.json()

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def post(self, path: str, body: Any, key: str | None = None, **kw: Any) -> httpx.Response:
        return HTTP.post(
            self.url("/api/v1" + path),
            json=body,
            headers={**self.headers(key), **kw.pop("headers", {})},
            **kw,
        )

    def get(self, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        return HTTP.get(self.url("/api/v1" + path), headers=self.headers(key), **kw)

    def chat(self, model: str, content: str = "hello", **body: Any) -> httpx.Response:
        return self.post(
            "/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": content}], **body},
        )

    def openai(self, **kw: Any) -> openai.OpenAI:
        if kw:
            return openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, **kw)
        if self._sdk is None:  # building a client costs ~30 ms; tests send hundreds of requests
            self._sdk = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0)
        return self._sdk

    def sdk_chat(self, model: str, content: str = "hello", **body: Any) -> Any:
        """A chat completion through the official openai SDK; OpenRouter fields go in extra_body."""
        typed = {
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "seed",
            "tools",
            "tool_choice",
            "response_format",
            "user",
            "stop",
        }
        return self.openai().chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],
            extra_body={k: v for k, v in body.items() if k not in typed} or None,
            **{k: v for k, v in body.items() if k in typed},
        )

    def generation(self, generation_id: str) -> dict[str, Any]:
        r = self.get(f"/generation?id={generation_id}")
        r.raise_for_status()
        return r.json()["data"]

    def log(self) -> str:
        """What the server wrote so far (its log)."""
        return self.output.text()

    def stop(self) -> str:
        return _stop(self.proc, self.output)


def provider(slug: str, sim: Simulator, **extra: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug.capitalize(),
        "api": "openai",
        "base_url": sim.url(),
        **extra,
    }


def endpoint(slug: str, prompt: float, completion: float, **extra: Any) -> dict[str, Any]:
    return {
        "provider": slug,
        "upstream_model": f"{slug}-model",
        "pricing": {"prompt": f"{prompt / 1e6:.10f}", "completion": f"{completion / 1e6:.10f}"},
        **extra,
    }


class RedisProcess:
    """A redis-server of the test's own on a free port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)

    def signal(self, number: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, number)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.kill()
