"""Many processes: `serve --workers N` on one port, and two replicas behind a real HAProxy
(Debian's) on loopback, sharing the local PostgreSQL and a Redis of the test's own, the
topology of deploy/ without containers.

Through the load balancer: one key's limit holds across both replicas, a key disabled on
one is refused by both, both show the statistics of all the traffic, and a replica killed
(SIGKILL) under load loses no record: every answer a client received has its generation
record once that replica is back (its journal is in its data folder).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import yaml

from crossroads.accounting.money import to_pico
from harness import BIN, HTTP, RedisProcess, Server, Simulator, free_port
from limits_setup import CLEAN_ENV, ENV, SERVER, chat_body, management, paid_catalog, usage, waited

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
TOKEN = to_pico(100 / 1e6)  # pico-USD per completion token of acme/flat
TEN_WORDS = "one two three four five six seven eight nine ten"


def haproxy_config(port: int, backends: list[int]) -> str:
    """What deploy/haproxy.cfg says, on loopback: round robin, health-checked; a request
    is retried on another replica only when it could not be sent (never one that may have
    been served: that could run, and charge, it twice)."""
    servers = "\n".join(
        f"  server r{n} 127.0.0.1:{p} check inter 300ms fall 3 rise 1"
        for n, p in enumerate(backends)
    )
    return f"""global
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check 5s
  retries 3
  option redispatch
  retry-on conn-failure
frontend gateway
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /health
  http-check expect status 200
{servers}
"""


class Balancer:
    """An haproxy process in the foreground, in front of `backends`."""

    def __init__(self, tmp: Path, backends: list[int]) -> None:
        self.port = free_port()
        path = tmp / "haproxy.cfg"
        path.write_text(haproxy_config(self.port, backends))
        check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        waited(lambda: self.healthy(len(backends)), timeout=15, what="haproxy's backends up")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def healthy(self, count: int) -> bool:
        """Whether `count` distinct replicas answered /health through the balancer."""
        seen = set()
        for _ in range(4 * count):
            try:
                r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
            except httpx.HTTPError:
                return False
            if r.status_code != 200:
                return False
            seen.add(r.json()["pid"])
        return len(seen) >= count

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class Topology:
    replicas: list[Server]
    balancer: Balancer
    database: str
    config: dict[str, Any]
    redis: RedisProcess

    def chat(self, key: str, content: str = "hello", **body: Any) -> httpx.Response:
        return HTTP.post(
            self.balancer.base_url + "/chat/completions",
            json=chat_body("acme/flat", content, **body),
            headers={"Authorization": f"Bearer {key}"},
        )

    def restart(self, n: int) -> Server:
        """Replica `n` again, on its own data folder (what a restarted pod finds)."""
        old = self.replicas[n]
        self.replicas[n] = replica(old.tmp, self.config, self.database, self.redis.url)
        return self.replicas[n]


def yaml_text(value: Any) -> str:
    return str(yaml.safe_dump(value))


# records are written every second here: a replica killed holds the last second's in its
# journal only, which is what the kill test is about
WRITE_EVERY = {"CROSSROADS_RECORDER_INTERVAL_SECONDS": "1.0"}


def replica(tmp: Path, config: dict[str, Any], database: str, redis: str) -> Server:
    return Server(tmp, config, "--database", database, "--redis", redis, env=ENV | WRITE_EVERY)


@pytest.fixture
def topology(sims: dict[str, Simulator], tmp_path: Path, postgres_url: str) -> Iterator[Topology]:
    redis = RedisProcess()
    config = {"server": SERVER, **paid_catalog(sims)}
    servers = [replica(tmp_path / f"r{n}", config, postgres_url, redis.url) for n in range(2)]
    balancer = Balancer(tmp_path, [s.port for s in servers])
    made = Topology(servers, balancer, postgres_url, config, redis)
    try:
        yield made
    finally:
        balancer.stop()
        for server in made.replicas:
            server.stop()
        redis.stop()
        sims["alpha"].reset()


def new_key(server: Server, **fields: Any) -> tuple[str, str]:
    created = server.create_key("scale", **fields)
    return created["key"], created["data"]["hash"]


def written(server: Server) -> int:
    """The records this replica wrote to the database so far (its /health)."""
    return int(HTTP.get(server.url("/health")).json()["recorder"]["rows_written"])


def requests_seen(server: Server) -> int:
    """Attempts at acme/flat's endpoint in the last 5 minutes, as `server` shows them."""
    r = server.get("/stats/endpoints/acme/flat")
    assert r.status_code == 200, r.text
    (only,) = r.json()["data"]["endpoints"]
    return int(only["requests"]["5m"])


def refused(server: Server, key: str) -> bool:
    return server.post("/chat/completions", chat_body("acme/flat"), key).status_code == 401


@pytest.mark.postgres
def test_through_the_balancer_limits_revocations_and_statistics_are_shared(
    topology: Topology, sims: dict[str, Simulator]
) -> None:
    a, b = topology.replicas
    n = 4
    worst = 10 * TOKEN  # max_tokens 10, and every answer is 10 tokens: the worst case
    key, key_hash = new_key(a, limit=(n * worst + worst // 2) / 1e12)
    waited(lambda: b.get("/key", key=key).status_code == 200, what="the key on b")
    sims["alpha"].configure(latency_ms=1500)  # every admission while the first n are upstream
    with ThreadPoolExecutor(8 * n) as pool:
        answers = list(
            pool.map(lambda _: topology.chat(key, TEN_WORDS, max_tokens=10), range(8 * n))
        )
    sims["alpha"].reset()
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * n + [402] * (7 * n), statuses
    for server in (a, b):  # the one spend, read through either replica
        waited(partial(lambda s: usage(s, key_hash) == n * worst, server), what="the spend")
    # both replicas served: each wrote records of its own
    waited(lambda: written(a) > 0 and written(b) > 0, timeout=30, what="records from both replicas")
    # the statistics of every request, whichever replica served it, on both
    seen = n  # attempts that reached the provider: the n served (the refused never left)
    for server in (a, b):
        waited(partial(lambda s: requests_seen(s) >= seen, server), what="the merged statistics")
    assert requests_seen(a) == requests_seen(b)
    # a key disabled on one replica is refused by both, through the balancer too
    r = management(a, "PATCH", f"/keys/{key_hash}", json={"disabled": True})
    assert r.status_code == 200 and r.json()["data"]["disabled"] is True
    for server in (a, b):
        waited(partial(refused, server, key), timeout=5, what="the disabled key refused")
    assert all(topology.chat(key).status_code == 401 for _ in range(4))


@dataclass
class Reply:
    status: int
    generation_id: str | None


def ask(base_url: str, key: str, n: int) -> Reply:
    """One request from a client of its own; what came back (0: no answer at all)."""
    body = chat_body("acme/flat", f"request {n}", max_tokens=5, stream=n % 2 == 0)
    try:
        with httpx.Client(timeout=30) as client:
            r = client.post(
                base_url + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )
    except httpx.HTTPError:
        return Reply(0, None)
    if r.status_code != 200:
        return Reply(r.status_code, None)
    if body["stream"] and "[DONE]" not in r.text:  # cut off: not an answer received
        return Reply(0, None)
    return Reply(200, r.text.split('"id":"', 1)[1].split('"', 1)[0])


def journal_ids(root: Path) -> set[str]:
    """The generation ids in a replica's journal segments (telemetry/journal.py); a line
    being appended while it is read is left for the next look."""
    ids = set()
    for segment in root.glob("*/*.jsonl"):
        for line in segment.read_bytes().splitlines():
            try:
                ids.add(orjson.loads(line)["id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
    return ids


async def stored_ids(database: str) -> set[str]:
    conn = await asyncpg.connect(database)
    try:
        return {row["id"] for row in await conn.fetch("SELECT id FROM generations")}
    finally:
        await conn.close()


@pytest.mark.postgres
def test_a_replica_killed_under_load_loses_no_record(
    topology: Topology, sims: dict[str, Simulator]
) -> None:
    a, b = topology.replicas
    key, _ = new_key(a)
    waited(lambda: b.get("/key", key=key).status_code == 200, what="the key on b")
    sims["alpha"].configure(latency_ms=100)
    stop = threading.Event()
    replies: list[Reply] = []

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            replies.append(ask(topology.balancer.base_url, key, worker * 10_000 + n))
            n += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    waited(lambda: written(b) >= 5, what="b serving")
    journal = b.tmp / "data" / "journal"
    # kill it while answers it gave are in its journal only (not yet in the database)
    waited(lambda: journal_ids(journal), timeout=10, what="b's journal holding records")
    b.proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: mid-load
    b.proc.wait()
    time.sleep(1.5)  # the balancer sends everything to a meanwhile
    stop.set()
    for thread in threads:
        thread.join()
    sims["alpha"].reset()
    answered = {r.generation_id for r in replies if r.status == 200}
    assert len(answered) >= 20, replies
    assert all(r.status in (0, 200, 502, 503) for r in replies), {r.status for r in replies}
    # what b had answered but not yet written: only in its journal, in its data folder
    left = journal_ids(journal) - asyncio.run(stored_ids(topology.database))
    assert left, "b's journal held nothing unwritten: the kill tested nothing"
    # (a record may also be there of an answer the kill cut off: it was journaled before
    # the answer's last byte, and is written all the same)
    topology.restart(1)  # the same data folder: its journal is written at start
    waited(
        lambda: answered | left <= asyncio.run(stored_ids(topology.database)),
        timeout=20,
        what="a record for every answer",
    )


def test_workers_answer_on_one_port_and_stop_cleanly(
    sims: dict[str, Simulator], tmp_path: Path
) -> None:
    redis = RedisProcess()
    port = free_port()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml_text({"server": SERVER, **paid_catalog(sims)}))
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
        + ["--config", str(config_path), "--redis", redis.url, "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**CLEAN_ENV, "CROSSROADS_MANAGEMENT_KEY": "sk-cr-test-workers"},
    )
    try:
        pids: set[int] = set()

        def both() -> bool:
            try:  # a connection of its own each time: the kernel picks a worker per connection
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.HTTPError:
                return False
            pids.add(r.json()["pid"])
            return len(pids) == 2

        waited(both, timeout=30, what="two worker processes answering")
        assert proc.pid not in pids  # the parent supervises; the workers answer
        headers = {"Authorization": "Bearer sk-cr-test-workers"}
        made = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/keys", json={"name": "w"}, headers=headers
        )
        assert made.status_code in (200, 201), made.text
        token = made.json()["key"]
        for _ in range(6):  # every worker knows the key another one created
            r = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/chat/completions",
                json=chat_body("acme/paid", max_tokens=5),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        redis.stop()
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "2 workers" in out


def test_workers_without_redis_refuse(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(BIN),
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        timeout=30,
    )
    assert done.returncode != 0
    assert "--workers 2 needs --redis" in done.stderr, done.stderr
    assert not (tmp_path / "crossroads.db").exists()  # refused before touching anything


def test_sigterm_lets_the_streams_in_flight_finish_and_writes_their_records(
    sims: dict[str, Simulator], tmp_path: Path
) -> None:
    """Shutdown drains: the server stops taking connections, lets a stream in flight run
    to its end within the grace, writes its record, then exits."""
    config = {"server": SERVER, **paid_catalog(sims)}
    server = Server(tmp_path, config, env=ENV | WRITE_EVERY)
    sims["alpha"].configure(tokens_per_second=8, max_reply_tokens=16)  # a 2-second stream
    key = server.api_key
    assert key is not None
    lines: list[str] = []
    started = threading.Event()

    def stream() -> None:
        body = chat_body("acme/flat", "a long story", max_tokens=16, stream=True)
        with HTTP.stream(
            "POST", server.base_url + "/chat/completions", json=body, headers=server.headers()
        ) as r:
            for line in r.iter_lines():
                lines.append(line)
                if line.startswith("data: {") and '"content":"' in line:
                    started.set()

    reader = threading.Thread(target=stream)
    try:
        reader.start()
        assert started.wait(10), lines
        server.proc.send_signal(signal.SIGTERM)

        def closed() -> bool:  # the port closes at once: nothing new is taken
            try:
                httpx.get(server.url("/health/live"), timeout=2)
            except httpx.ConnectError:
                return True
            return False

        waited(closed, timeout=5, what="the port closed")
        assert reader.is_alive()  # ... while the stream is still being served
        reader.join(20)
        # uvicorn raises SIGTERM again once it has shut down: the status says how it ended
        assert server.proc.wait(20) in (0, -signal.SIGTERM), server.log()
    finally:
        sims["alpha"].reset()
    assert [x for x in lines if x][-1] == "data: [DONE]", lines[-3:]
    generation = next(x for x in lines if x.startswith("data: {")).split('"id":"')[1].split('"')[0]
    again = Server(tmp_path, config, env=ENV)
    try:  # written at the shutdown, not left to the next start's journal replay
        r = again.get(f"/generation?id={generation}", key=key)
        assert r.status_code == 200, r.text
        record = r.json()["data"]
        usage = [x for x in lines if '"usage":{' in x][-1]
        told = int(usage.split('"completion_tokens":')[1].split(",")[0].split("}")[0])
        assert record["streamed"] is True and record["tokens_completion"] == told > 0
        assert int(HTTP.get(again.url("/health")).json()["recorder"]["rows_written"]) == 0
    finally:
        again.stop()
