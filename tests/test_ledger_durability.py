"""The ledger holds up: with the balance in force, a mixed load (paid, free, streamed,
failing, cancelled) from several threads, with and without `kill -9` in the middle of it,
leaves a ledger where the balance the server shows is exactly credits minus charges, every
charge belongs to its generation (charged to the balance, at the same cost), every answer a
client was told cost something has its charge, and no generation counts twice.

Real processes: simulators as providers and `crossroads serve`, on SQLite and on
PostgreSQL. Credits are added with `crossroads credits add`, as an operator would. Money is
compared in pico-USD (`accounting.money.to_pico`), read from the tables themselves.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from crossroads.accounting.money import to_pico
from harness import BIN, HTTP, Server, Simulator, endpoint, provider

PAID = "acme/ledger"
FREE = "acme/ledger:free"
BROKEN = "acme/broken"
SLOW = "acme/slow"
CREDITS = "25"  # USD
# a request's worst case (what admission holds against the balance) stays small
CAPS = {"context_length": 4096, "max_completion_tokens": 256}
KINDS = ("paid", "paid-stream", "free", "failing", "cancelled")


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, Simulator]]:
    """A provider that answers (a little slowly: requests are in flight when the server
    dies), one that always fails, one that streams slowly (its streams get cancelled)."""
    started = {name: Simulator(name) for name in ("paid", "broken", "slow")}
    try:
        started["paid"].configure(latency_ms=150, tokens_per_second=100)
        started["broken"].configure(fail_rate=1.0, status=500)
        started["slow"].configure(tokens_per_second=20, max_reply_tokens=40)
        yield started
    finally:
        for sim in started.values():
            sim.stop()


def config(providers: dict[str, Simulator]) -> dict[str, Any]:
    # prices with odd digits: costs are many small amounts, not round ones
    return {
        "server": {
            "stream_keepalive_seconds": 5.0,
            "free_requests_per_minute": 1000,
            "free_requests_per_day": 1000,
        },
        "providers": [provider(name, sim) for name, sim in providers.items()],
        "models": [
            {"id": PAID, "endpoints": [endpoint("paid", 0.0137, 0.0291, **CAPS)]},
            {"id": FREE, "endpoints": [endpoint("paid", 0, 0, **CAPS)]},
            {"id": BROKEN, "endpoints": [endpoint("broken", 1, 1, **CAPS)]},
            {"id": SLOW, "endpoints": [endpoint("slow", 0.53, 1.71, **CAPS)]},
        ],
    }


@dataclass
class Store:
    """Where a server keeps its records: `--database` flags, and how to read the tables."""

    args: tuple[str, ...]
    sqlite_file: Path | None = None
    postgres_url: str | None = None

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.sqlite_file is not None:
            with sqlite3.connect(self.sqlite_file) as db:
                return [tuple(row) for row in db.execute(query).fetchall()]
        assert self.postgres_url is not None
        url = self.postgres_url

        async def fetch() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(url)
            try:
                return [tuple(row) for row in await conn.fetch(query)]
            finally:
                await conn.close()

        return asyncio.run(fetch())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store((), sqlite_file=tmp_path / "data" / "crossroads.db")
    url = request.getfixturevalue("postgres_url")
    return Store(("--database", url), postgres_url=url)


@dataclass
class Reply:
    kind: str
    generation_id: str | None = None
    status: int | None = None
    complete: bool = False  # the whole answer arrived: the JSON body, or a stream to [DONE]
    cost: float | None = None  # the usage's cost the client was told


def ask(srv: Server, key: str, n: int) -> Reply:
    """Request `n` of the mixed load, from a client of its own (requests run in threads)."""
    kind = KINDS[n % len(KINDS)]
    reply = Reply(kind)
    model = {"free": FREE, "failing": BROKEN, "cancelled": SLOW}.get(kind, PAID)
    stream = kind in ("paid-stream", "cancelled") or (kind == "free" and n % 2 == 1)
    words = "more " * (30 if kind == "cancelled" else n % 7)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"tell me {words}"}],
        "stream": stream,
    }
    try:
        with httpx.Client(timeout=30) as client:
            url = srv.base_url + "/chat/completions"
            headers = {"Authorization": f"Bearer {key}"}
            with client.stream("POST", url, json=body, headers=headers) as r:
                reply.status, reply.generation_id = r.status_code, r.headers.get("x-generation-id")
                if r.status_code != 200:
                    return reply
                if not stream:
                    reply.cost = json.loads(r.read())["usage"]["cost"]
                    reply.complete = True
                    return reply
                chunks = 0
                for line in r.iter_lines():
                    if line == "data: [DONE]":
                        reply.complete = reply.cost is not None
                    elif line.startswith("data: "):
                        chunks += 1
                        usage = json.loads(line[6:]).get("usage")
                        if usage:
                            reply.cost = usage["cost"]
                    if kind == "cancelled" and chunks == 3:
                        return reply  # leaves mid-answer: the connection is closed
    except httpx.HTTPError:
        pass  # the server died under this request
    return reply


def add_credits(srv: Server, store: Store) -> None:
    """`crossroads credits add`, on the server's database, while it runs; the server
    enforces the balance once it read the ledger again (within about a second)."""
    done = subprocess.run(
        [str(BIN), "credits", "add", CREDITS, "--note", "durability test"]
        + ["--data-dir", str(srv.tmp / "data"), *store.args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    deadline = time.monotonic() + 5
    while balance(srv)[0] != to_pico(CREDITS):
        assert time.monotonic() < deadline, "the server never read the credits"
        time.sleep(0.05)


def balance(srv: Server) -> tuple[int, int]:
    """(total_credits, total_usage) of `GET /credits`, pico-USD."""
    r = srv.get("/credits", key=srv.management_key)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return to_pico(data["total_credits"]), to_pico(data["total_usage"])


def recorder(srv: Server) -> dict[str, Any]:
    """The recorder's counters (`GET /health`, no key)."""
    r = HTTP.get(srv.url("/health"), timeout=10)
    assert r.status_code == 200
    stats: dict[str, Any] = r.json()["recorder"]
    return stats


def wait_written(srv: Server) -> None:
    """Until the recorder's queue is empty (it writes every 250 ms)."""
    deadline = time.monotonic() + 20
    while recorder(srv)["queue_depth"]:
        assert time.monotonic() < deadline, "the recorder never caught up"
        time.sleep(0.05)


def check_ledger(srv: Server, store: Store, replies: list[Reply]) -> dict[str, int]:
    """Every property of the ledger this file is about; the charges by generation id."""
    ledger = store.rows("SELECT kind, amount, generation_id FROM ledger")
    generations = {
        row[0]: row[1:]
        for row in store.rows("SELECT id, total_cost, balance_charged, model FROM generations")
    }
    credits = sum(amount for kind, amount, _ in ledger if kind == "credit")
    charges = {gid: amount for kind, amount, gid in ledger if kind == "charge"}
    assert all(kind in ("credit", "charge") for kind, _, _ in ledger)
    assert credits == to_pico(CREDITS)
    # the balance the server shows is the ledger's, exactly
    total_credits, total_usage = balance(srv)
    assert total_credits - total_usage == credits - sum(charges.values())
    assert (total_credits, total_usage) == (credits, sum(charges.values()))
    # no generation counts twice
    charged_ids = [gid for kind, _, gid in ledger if kind == "charge"]
    assert all(charged_ids) and not [g for g, n in Counter(charged_ids).items() if n > 1]
    assert len(store.rows("SELECT id FROM generations")) == len(generations)
    seen = [r.generation_id for r in replies if r.generation_id is not None]
    assert not [g for g, n in Counter(seen).items() if n > 1]
    # every charge has its generation, charged to the balance, at the same cost
    for gid, amount in charges.items():
        assert gid in generations, gid
        total_cost, charged, model = generations[gid]
        assert charged and amount > 0 and to_pico(float(total_cost)) == amount, (gid, model)
        assert model in (PAID, SLOW)
    # ... and every generation charged to the balance with a cost has its charge
    for gid, (total_cost, charged, _) in generations.items():
        if charged and to_pico(float(total_cost)) > 0:
            assert gid in charges, gid
    # every answer a client was told cost something has its charge, at that cost
    for reply in replies:
        if reply.cost is not None and to_pico(reply.cost) > 0:
            assert reply.generation_id in charges, reply
            assert charges[reply.generation_id] == to_pico(reply.cost), reply
        if reply.kind in ("free", "failing"):
            assert reply.generation_id not in charges, reply
    return charges


def kill(srv: Server) -> None:
    srv.proc.kill()  # SIGKILL: no shutdown, no flush
    srv.proc.wait()


def test_the_ledger_balances_after_kill_9_mid_load(
    providers: dict[str, Simulator], store: Store, tmp_path: Path
) -> None:
    cfg = config(providers)
    # the writer would wait a minute: what was answered before the kill is in the journal only
    first = {**cfg, "server": {**cfg["server"], "recorder_interval_seconds": 60}}
    srv = Server(tmp_path, first, *store.args)
    key = srv.api_key
    assert key is not None
    add_credits(srv, store)
    done: list[Reply] = []

    def staggered(n: int) -> Reply:
        time.sleep(n * 0.03)
        reply = ask(srv, key, n)
        done.append(reply)
        return reply

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(staggered, n) for n in range(60)]
        deadline = time.monotonic() + 30
        while sum(r.complete for r in done) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        kill(srv)
        replies = [f.result() for f in futures]
    answered = [r for r in replies if r.complete]
    assert 15 <= len(answered) < 60  # some were cut by the kill
    assert any(r.kind == "paid-stream" and r.complete for r in replies)
    assert any(r.kind == "cancelled" and r.status == 200 for r in replies)
    assert any(r.kind == "failing" and r.status is not None and r.status >= 500 for r in replies)

    again = Server(tmp_path, cfg, *store.args)  # replays the journal before it answers
    try:
        wait_written(again)
        replayed = recorder(again)["rows_written"]  # at the start, from the journal
        assert replayed >= len(answered)
        charges = check_ledger(again, store, replies)
        assert len(charges) >= sum(1 for r in answered if r.cost and to_pico(r.cost) > 0)
        # and on: the restarted server's own charges join those it read back
        with ThreadPoolExecutor(8) as pool:
            more = list(pool.map(lambda n: ask(again, key, n), range(25)))
        assert all(r.status == 200 for r in more if r.kind != "failing"), [
            r for r in more if r.status != 200 and r.kind != "failing"
        ]
        wait_written(again)
        check_ledger(again, store, replies + more)
    finally:
        again.stop()


def test_the_ledger_balances_exactly_after_a_normal_load(
    providers: dict[str, Simulator], store: Store, tmp_path: Path
) -> None:
    srv = Server(tmp_path, config(providers), *store.args)
    try:
        key = srv.api_key
        assert key is not None
        add_credits(srv, store)
        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda n: ask(srv, key, n), range(150)))
        for reply in replies:
            if reply.kind == "failing":
                assert reply.status is not None and reply.status >= 500, reply
            else:
                assert reply.status == 200, reply
                assert reply.complete or reply.kind == "cancelled", reply
        wait_written(srv)
        charges = check_ledger(srv, store, replies)
        paid = [r for r in replies if r.kind in ("paid", "paid-stream")]
        assert all(r.generation_id in charges for r in paid)
        cancelled = [r for r in replies if r.kind == "cancelled"]
        assert all(charges.get(r.generation_id or "", 0) > 0 for r in cancelled), cancelled
        _, usage = balance(srv)
        assert usage >= sum(to_pico(r.cost or 0.0) for r in paid)
    finally:
        srv.stop()
