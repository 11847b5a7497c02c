"""Nothing lost, nothing leaked, no 500: records and spend survive `kill -9`, a row the
database refuses blocks nothing, and a damaged journal does not stop a start.

Every test runs real processes: a simulator (or, where the simulator cannot say it, a
small provider in this file that reports absurd usage) and `crossroads serve`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from harness import POSTGRES, Server, Simulator, endpoint, provider

MODEL = "acme/durable"


def config(sim: Simulator, **server: Any) -> dict[str, Any]:
    return {
        "server": {"stream_keepalive_seconds": 5.0, **server},
        "providers": [provider("alpha", sim)],
        "models": [{"id": MODEL, "endpoints": [endpoint("alpha", 1, 2)]}],
    }


@dataclass
class Reply:
    generation_id: str | None
    status: int | None
    complete: bool  # the whole answer arrived: the JSON body, or a stream up to [DONE]
    cost: float | None = None


def ask(base_url: str, key: str, n: int, *, stream: bool, title: str | None = None) -> Reply:
    """One request from its own client (requests run in threads)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "tell me " + "more " * (n % 7)}],
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {key}"}
    if title is not None:
        headers["X-Title"] = title
    reply = Reply(None, None, False)
    try:
        with httpx.Client(timeout=30) as client:
            url = base_url + "/chat/completions"
            with client.stream("POST", url, json=body, headers=headers) as r:
                reply.status, reply.generation_id = r.status_code, r.headers.get("x-generation-id")
                if r.status_code != 200:
                    return reply
                if not stream:
                    reply.cost = json.loads(r.read())["usage"]["cost"]
                    reply.complete = True
                    return reply
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        reply.complete = reply.cost is not None
                    elif line.startswith("data: "):
                        usage = json.loads(line[6:]).get("usage")
                        if usage:
                            reply.cost = usage["cost"]
    except httpx.HTTPError:
        pass  # the server died under this request
    return reply


DOWN = "unreachable"


def health(srv: Server, *, database: str = "ok") -> dict[str, Any]:
    """The recorder's counters, from /health; `database` is what it must say of it (the
    replica stays ready, 200, while its database is unreachable: "degraded")."""
    deadline = time.monotonic() + 5  # the check is made once a second at most
    while True:
        r = httpx.get(srv.url("/health"), timeout=10)  # no key
        assert r.status_code == 200
        body = r.json()
        if body["checks"]["database"] == database or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert body["checks"]["database"] == database
    assert body["status"] == ("ok" if database == "ok" else "degraded")
    return body["recorder"]


def kill(srv: Server) -> None:
    srv.proc.kill()  # SIGKILL: no shutdown, no flush
    srv.proc.wait()


def wait_written(srv: Server) -> dict[str, Any]:
    """The recorder's counters once its queue is empty (polled; the writer runs every 250 ms)."""
    deadline = time.monotonic() + 20
    while (stats := health(srv))["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats


def stored_spend(data: Path, key_hash: str) -> tuple[int, float]:
    """Records and their total cost for a key, read from the SQLite file itself."""
    with sqlite3.connect(data / "crossroads.db") as db:
        count, total = db.execute(
            "SELECT count(*), coalesce(sum(total_cost), 0) FROM generations WHERE api_key_hash = ?",
            (key_hash,),
        ).fetchone()
    return int(count), float(total)


def check_records(srv: Server, key: str, replies: list[Reply]) -> float:
    """Every complete answer has its record, with the cost the client was told; the sum."""
    total = 0.0
    for reply in replies:
        assert reply.generation_id is not None
        r = srv.get(f"/generation?id={reply.generation_id}", key=key)
        assert r.status_code == 200, (reply, r.text)
        record = r.json()["data"]
        assert record["total_cost"] == pytest.approx(reply.cost)
        total += record["total_cost"]
    return total


@pytest.fixture
def sim() -> Iterator[Simulator]:
    started = Simulator("durable")
    yield started
    started.stop()


def test_kill_9_after_the_answers_loses_no_record_and_no_spend(
    sim: Simulator, tmp_path: Path
) -> None:
    # the writer would wait a minute: every record is still unwritten when the process dies
    cfg = config(sim, recorder_interval_seconds=60)
    srv = Server(tmp_path, cfg)
    key = srv.api_key
    assert key is not None
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda n: ask(srv.base_url, key, n, stream=n % 2 == 0), range(30)))
    assert all(r.status == 200 and r.complete for r in replies), replies
    before = health(srv)
    assert before["rows_written"] == 0 and before["queue_depth"] == 30
    assert before["segments_pending"] == 1
    kill(srv)

    again = Server(tmp_path, cfg)
    try:
        total = check_records(again, key, replies)
        usage = again.get("/key", key=key).json()["data"]["usage"]
        assert usage == pytest.approx(total) and total > 0
        after = health(again)
        assert after["rows_written"] == 30 and after["rows_rejected"] == 0
        assert after["queue_depth"] == 0 and after["segments_pending"] == 0
    finally:
        again.stop()
    assert not list((tmp_path / "data" / "journal").glob("*/*.jsonl"))


def test_kill_9_with_requests_in_flight(sim: Simulator, tmp_path: Path) -> None:
    """Killed while answers are still coming: each answer the client got whole has its
    record, and the key's spend is exactly what the records hold."""
    sim.configure(latency_ms=300, tokens_per_second=40)
    cfg = config(sim)  # the writer runs as in production, every 250 ms
    srv = Server(tmp_path, cfg)
    key = srv.api_key
    assert key is not None
    key_hash = srv.get("/key").json()["data"]["hash"]
    done: list[Reply] = []

    def staggered(n: int) -> Reply:
        time.sleep(n * 0.04)
        reply = ask(srv.base_url, key, n, stream=n % 3 != 0)
        done.append(reply)
        return reply

    with ThreadPoolExecutor(30) as pool:
        futures = [pool.submit(staggered, n) for n in range(30)]
        deadline = time.monotonic() + 30
        while sum(r.complete for r in done) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        kill(srv)
        replies = [f.result() for f in futures]
    answered = [r for r in replies if r.complete]
    assert len(answered) >= 10 and len(answered) < 30  # some were cut by the kill

    again = Server(tmp_path, cfg)
    try:
        total = check_records(again, key, answered)
        count, stored = stored_spend(tmp_path / "data", key_hash)
        assert count >= len(answered)  # and any request recorded as its answer was cut
        usage = again.get("/key", key=key).json()["data"]["usage"]
        assert usage == pytest.approx(stored) and stored >= total - 1e-12
    finally:
        again.stop()


class AbsurdProvider:
    """An OpenAI-compatible provider that reports 2**63 prompt tokens: past SQLite's INTEGER
    (the simulator computes honest usage, so it cannot say this)."""

    PROMPT_TOKENS = 2**63

    def __init__(self) -> None:
        reply = {
            "id": "absurd-1",
            "object": "chat.completion",
            "created": 0,
            "model": "absurd",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "so many tokens"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": self.PROMPT_TOKENS,
                "completion_tokens": 3,
                "total_tokens": self.PROMPT_TOKENS + 3,
            },
        }
        payload = json.dumps(reply).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_absurd_usage_blocks_no_record(sim: Simulator, tmp_path: Path) -> None:
    """The SQLite report: a provider's `prompt_tokens` past the integer column. Whatever the
    router makes of it, its record is stored within the column, the records around it are
    written, nothing is rejected and the next start succeeds."""
    absurd = AbsurdProvider()
    cfg = config(sim)
    cfg["providers"].append({"slug": "absurd", "name": "Absurd", "api": "openai",
                             "base_url": absurd.url()})  # fmt: skip
    cfg["models"].append({"id": "acme/absurd", "endpoints": [endpoint("absurd", 1, 1)]})
    srv = Server(tmp_path, cfg)
    try:
        ids = []
        for n in range(6):
            model = "acme/absurd" if n in (1, 4) else MODEL
            r = srv.chat(model, f"request {n}")
            assert r.status_code < 500, r.text
            ids.append(r.headers["x-generation-id"])
        stats = wait_written(srv)
        assert stats["queue_depth"] == 0 and stats["rows_written"] == 6
        assert stats["rows_rejected"] == 0 and stats["write_failures"] == 0
    finally:
        srv.stop()
        absurd.stop()
    again = Server(tmp_path, cfg)
    try:
        records = [  # read back from the database
            again.get(f"/generation?id={i}", key=again.management_key).json()["data"] for i in ids
        ]
        for n in (1, 4):
            assert (records[n]["tokens_prompt"] or 0) <= 2**31 - 1
        assert all(rec["provider_name"] for n, rec in enumerate(records) if n not in (1, 4))
    finally:
        again.stop()


def test_a_damaged_journal_does_not_stop_a_start(sim: Simulator, tmp_path: Path) -> None:
    """What crashes and disks leave: garbage, a cut line, the old spool with a bad line.
    The server starts, writes the good records, and quarantines the rest with the error."""
    data = tmp_path / "data"
    orphan = data / "journal" / "99999-0badc0de"
    orphan.mkdir(parents=True)
    good = {
        "id": "gen-from-the-journal",
        "created_at": "2026-11-28T10:00:00+00:00",
        "model": MODEL,
        "api_type": "completions",
        "total_cost": 0.5,
        "attempts": [],
    }
    spooled = {**good, "id": "gen-from-the-old-spool"}
    (orphan / "00000001.jsonl").write_bytes(
        b"garbage\n" + orjson.dumps(good) + b"\n" + orjson.dumps(good)[:30]
    )
    (data / "unwritten-generations.jsonl").write_bytes(
        orjson.dumps(spooled) + b"\n" + b'{"id": "no-model"}\n'
    )
    srv = Server(tmp_path, config(sim))
    try:
        stats = health(srv)
        assert stats["rows_written"] == 2 and stats["rows_rejected"] == 3
        assert stats["queue_depth"] == 0 and stats["segments_pending"] == 0
        for generation_id in ("gen-from-the-journal", "gen-from-the-old-spool"):
            r = srv.get(f"/generation?id={generation_id}", key=srv.management_key)
            assert r.status_code == 200 and r.json()["data"]["total_cost"] == 0.5
        rejected = (data / "rejected-generations.jsonl").read_bytes().splitlines()
        assert len(rejected) == 3 and all(orjson.loads(line)["error"] for line in rejected)
        assert not orphan.exists() and not (data / "unwritten-generations.jsonl").exists()
    finally:
        srv.stop()


def test_health_needs_no_key(sim: Simulator, tmp_path: Path) -> None:
    srv = Server(tmp_path, config(sim))
    try:
        assert srv.chat(MODEL).status_code == 200
        stats = wait_written(srv)
        assert set(stats) == {
            "queue_depth",
            "rows_written",
            "rows_rejected",
            "rows_spilled",
            "rows_dropped",
            "journal_errors",
            "write_failures",
            "segments_pending",
        }
        assert stats["rows_written"] == 1 and stats["queue_depth"] == 0
    finally:
        srv.stop()
    journal = tmp_path / "data" / "journal"
    assert not list(journal.iterdir())  # a clean shutdown leaves no journal behind


@pytest.mark.postgres
def test_kill_9_on_postgresql_with_a_long_title(
    sim: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    """The PostgreSQL report: an X-Title past `String(200)` among other requests, then
    `kill -9`: every record arrives, the title cut to the column."""
    cfg = config(sim, recorder_interval_seconds=60)
    srv = Server(tmp_path, cfg, "--database", postgres_url)
    key = srv.api_key
    assert key is not None
    titles = [("t" * 201 if n == 3 else None) for n in range(8)]
    with ThreadPoolExecutor(4) as pool:
        replies = list(
            pool.map(
                lambda n: ask(srv.base_url, key, n, stream=n % 2 == 1, title=titles[n]), range(8)
            )
        )
    assert all(r.complete for r in replies), replies
    kill(srv)
    again = Server(tmp_path, cfg, "--database", postgres_url)
    try:
        total = check_records(again, key, replies)
        assert again.get("/key", key=key).json()["data"]["usage"] == pytest.approx(total)
        titled = again.get(f"/generation?id={replies[3].generation_id}", key=key).json()["data"]
        assert titled["app_title"] == "t" * 200
        stats = health(again)
        assert stats["rows_written"] == 8 and stats["rows_rejected"] == 0
    finally:
        again.stop()


async def _allow_connections(url: str, allowed: bool) -> None:
    """Open or close a PostgreSQL database to new connections; closing also ends the open
    ones: to the server, the database has gone away."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await conn.close()


@pytest.mark.postgres
def test_a_database_outage_on_postgresql(sim: Simulator, tmp_path: Path, postgres_url: str) -> None:
    """The database goes away: requests are still answered, records wait in the journal and
    are written when it is back; killed during the outage, the next start writes them."""
    cfg = config(sim)
    srv = Server(tmp_path, cfg, "--database", postgres_url)
    key = srv.api_key
    assert key is not None
    replies = [ask(srv.base_url, key, n, stream=n % 2 == 0) for n in range(4)]
    wait_written(srv)
    asyncio.run(_allow_connections(postgres_url, False))
    try:
        replies += [ask(srv.base_url, key, n, stream=n % 2 == 0) for n in range(10)]
        deadline = time.monotonic() + 20
        while not health(srv, database=DOWN)["write_failures"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = health(srv, database=DOWN)
        assert stats["write_failures"] > 0 and stats["queue_depth"] == 10
        assert stats["segments_pending"] >= 1
    finally:
        asyncio.run(_allow_connections(postgres_url, True))
    stats = wait_written(srv)
    assert stats["queue_depth"] == 0 and stats["rows_written"] == 14
    asyncio.run(_allow_connections(postgres_url, False))
    try:
        replies += [ask(srv.base_url, key, n, stream=n % 2 == 1) for n in range(10)]
        assert all(r.complete for r in replies), replies
        kill(srv)
    finally:
        asyncio.run(_allow_connections(postgres_url, True))
    again = Server(tmp_path, cfg, "--database", postgres_url)
    try:
        total = check_records(again, key, replies)
        assert again.get("/key", key=key).json()["data"]["usage"] == pytest.approx(total)
        assert health(again)["rows_written"] == 10
    finally:
        again.stop()
