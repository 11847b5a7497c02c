"""Shared by the end-to-end tests of credits, limits, the free tier and guardrails: small
catalogs with known prices, the operator's calls, and waits for what the server writes
in the background (generation records, the ledger, the keys it re-reads)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import httpx

from crossroads.accounting.money import to_pico
from crossroads.storage import LedgerStore, make_engine
from harness import BIN, HTTP, Server, Simulator, endpoint, provider

T = TypeVar("T")
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith("CROSSROADS_") and "_API_KEY" not in k
}
# what the servers of these tests share: fast re-reads of keys and credits, fast records
SERVER = {
    "stream_keepalive_seconds": 0.2,
    "keys_refresh_seconds": 0.2,
    "recorder_interval_seconds": 0.05,
}
ENV = {"CROSSROADS_CIRCUIT_FAILURES": "0"}  # one test's failures must not reroute the next


def mgmt(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.management_key}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def waited(check: Callable[[], T | None], *, timeout: float = 10.0, what: str = "") -> T:
    """`check()`'s first truthy answer, asked every 20 ms until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


def recorded(server: Server, generation_id: str, key: str | None = None) -> dict[str, Any]:
    """The generation record, once the recorder wrote it."""

    def get() -> dict[str, Any] | None:
        r = server.get(f"/generation?id={generation_id}", key=key)
        return r.json()["data"] if r.status_code == 200 else None

    return waited(get, what=f"the record of {generation_id}")


def fresh_minute(margin: float = 8.0) -> None:
    """Wait for the next minute when less than `margin` seconds are left of this one: a
    per-minute window must not turn over in the middle of a test."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


def key_data(server: Server, key_hash: str) -> dict[str, Any]:
    r = HTTP.get(server.base_url + f"/keys/{key_hash}", headers=mgmt(server))
    assert r.status_code == 200, r.text
    return r.json()["data"]


def credits(server: Server) -> dict[str, Any]:
    r = HTTP.get(server.base_url + "/credits", headers=mgmt(server))
    assert r.status_code == 200, r.text
    return r.json()["data"]


def add_credits(server: Server, usd: str, *, cli: bool = False) -> None:
    """Credits for the server's account, written to its database by `crossroads credits add`
    (`cli`) or by `LedgerStore.add_credit` from here; returns once the server shows them."""
    before = to_pico(credits(server)["total_credits"])
    if cli:
        out = subprocess.run(
            [str(BIN), "credits", "add", usd, "--note", "tests"]
            + ["--data-dir", str(server.tmp / "data")],
            capture_output=True,
            text=True,
            timeout=60,
            env=CLEAN_ENV,
        )
        assert out.returncode == 0, out.stderr
    else:
        asyncio.run(_add_credit(server, to_pico(usd)))
    wanted = before + to_pico(usd)
    waited(lambda: to_pico(credits(server)["total_credits"]) == wanted, what="the credits to show")


async def _add_credit(server: Server, amount: int) -> None:
    engine = make_engine(f"sqlite:///{server.tmp / 'data' / 'crossroads.db'}")
    try:
        await LedgerStore(engine).add_credit(amount, note="tests")
    finally:
        await engine.dispose()


def message(body: dict[str, Any]) -> str:
    return str(body["error"]["message"])


def chat_body(model: str, content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def paid_catalog(sims: dict[str, Simulator]) -> dict[str, Any]:
    """Prices (USD per million tokens, prompt/completion) that make costs exact:
    - acme/paid: alpha 1/2, 1000 tokens of context;
    - acme/flat: alpha 0/100 (no prompt price: a request's worst case is max_tokens x 1e-4);
    - acme/duo: alpha 1/2 and beta 1/2;
    - acme/paid:free: alpha, free."""
    return {
        "providers": [
            provider(
                "alpha", sims["alpha"], data_policy={"training": False, "retains_prompts": False}
            ),
            provider("beta", sims["beta"], data_policy={"training": True, "retains_prompts": True}),
        ],
        "models": [
            {
                "id": "acme/paid",
                "name": "Acme: Paid",
                "context_length": 1000,
                "endpoints": [endpoint("alpha", 1, 2, context_length=1000)],
            },
            {
                "id": "acme/flat",
                "name": "Acme: Flat",
                "endpoints": [endpoint("alpha", 0, 100, context_length=1000)],
            },
            {
                "id": "acme/duo",
                "name": "Acme: Duo",
                "endpoints": [endpoint("alpha", 1, 2), endpoint("beta", 1, 2)],
            },
            {
                "id": "acme/paid:free",
                "name": "Acme: Paid (free)",
                "endpoints": [endpoint("alpha", 0, 0)],
            },
        ],
    }


def start(tmp: Path, config: dict[str, Any]) -> Server:
    return Server(tmp, config, env=ENV)


def stored(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on the server's SQLite database, as the server wrote them."""
    with closing(sqlite3.connect(server.tmp / "data" / "crossroads.db", timeout=30)) as db:
        return db.execute(sql, args).fetchall()


def ledger_charges(server: Server) -> dict[str, int]:
    """The ledger's charges: pico-USD by generation id."""
    rows = stored(server, "SELECT generation_id, amount FROM ledger WHERE kind = 'charge'")
    return {str(g): int(a) for g, a in rows}


def requests_of(sim: Simulator) -> int:
    """How many requests a simulated provider received since its last reset."""
    return int(sim.state()["counters"]["requests"])


def management(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    """A request to the API with the server's management key."""
    headers = {"Authorization": f"Bearer {server.management_key}"}
    return HTTP.request(method, server.url("/api/v1" + path), headers=headers, **kw)


def usage(server: Server, key_hash: str) -> int:
    """The key's total spend as `GET /keys/{hash}` shows it, pico-USD."""
    r = management(server, "GET", f"/keys/{key_hash}")
    assert r.status_code == 200, r.text
    spent: int = to_pico(r.json()["data"]["usage"])
    return spent
