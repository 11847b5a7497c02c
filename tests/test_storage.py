"""The storage suite, on SQLite and on PostgreSQL (`CROSSROADS_TEST_POSTGRES_URL`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from conftest import shared_config
from crossroads.accounting.keys import KeyRing
from crossroads.storage import GenerationStore, KeyStore, make_engine, migrate
from crossroads.telemetry.recorder import Recorder
from crossroads.telemetry.records import GenerationRecord
from harness import Server

POSTGRES = os.environ.get("CROSSROADS_TEST_POSTGRES_URL")


async def _temporary_postgres() -> tuple[str, str]:
    name = f"crossroads_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return POSTGRES.rsplit("/", 1)[0] + "/" + name, name


async def _drop_postgres(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not POSTGRES:
        pytest.skip("CROSSROADS_TEST_POSTGRES_URL is not set (make test sets it)")
    url, name = await _temporary_postgres()
    yield url
    await _drop_postgres(name)


def record(n: int, *, key: str = "k" * 64, model: str = "acme/widget-1", cost: float = 0.001,
           at: datetime | None = None) -> GenerationRecord:
    return GenerationRecord(
        id=f"gen-test-{n}", created_at=at or datetime.now(UTC), model=model, api_key_hash=key,
        provider_slug="alpha", provider_name="Alpha", endpoint_tag="alpha", total_cost=cost,
        tokens_prompt=10, tokens_completion=n, finish_reason="stop",
        attempts=[{"provider_slug": "alpha", "provider_name": "Alpha", "endpoint_tag": "alpha",
                   "model": model, "status": 200, "latency_ms": 1.5, "error": None}],
    )


async def test_migrations_are_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    await migrate(engine)
    assert await GenerationStore(engine).count() == 0
    await engine.dispose()


async def test_recorder_loses_nothing_on_shutdown(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    store = GenerationStore(engine)
    recorder = Recorder(store, interval=60, batch_size=200)  # nothing flushes until close()
    await recorder.start()
    for n in range(1234):
        recorder.submit(record(n))
    assert (await recorder.get("gen-test-7")).tokens_completion == 7  # readable before it is written
    await recorder.close()
    assert await store.count() == 1234
    stored = await store.get("gen-test-1233")
    assert stored.tokens_completion == 1233 and stored.attempts[0]["status"] == 200
    assert stored.created_at.replace(tzinfo=UTC).year >= 2026
    await engine.dispose()


async def test_recorder_retries_a_failed_batch(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)

    class Flaky(GenerationStore):
        failures = 1

        async def insert_many(self, records):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database went away")
            await super().insert_many(records)

    store = Flaky(engine)
    recorder = Recorder(store, interval=0.01)
    await recorder.start()
    recorder.submit(record(1))
    recorder.submit(record(2))
    await recorder.close()
    assert await store.count() == 2 and store.failures == 0
    await engine.dispose()


async def test_records_survive_a_database_outage_at_shutdown(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    await migrate(engine)

    class Down(GenerationStore):
        async def insert_many(self, records):  # type: ignore[no-untyped-def]
            raise ConnectionError("database is down")

    spool = tmp_path / "spool.jsonl"
    recorder = Recorder(Down(engine), interval=60, spool=spool)
    await recorder.start()
    for n in range(3):
        recorder.submit(record(n))
    await recorder.close(retries=1)
    assert len(spool.read_bytes().splitlines()) == 3

    store = GenerationStore(engine)
    restarted = Recorder(store, interval=60, spool=spool)
    await restarted.start()
    assert await store.count() == 3 and not spool.exists()
    assert (await store.get("gen-test-2")).attempts[0]["provider_name"] == "Alpha"
    await restarted.close()
    await engine.dispose()


async def test_keys_and_spend(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    keys, generations = KeyStore(engine), GenerationStore(engine)
    ring = KeyRing(keys)
    await ring.load(generations)
    token, key = await ring.create("app", limit=10.0, limit_reset="daily")
    now = datetime.now(UTC)
    await generations.insert_many([
        record(1, key=key.hash, cost=0.5, at=now),
        record(2, key=key.hash, cost=0.25, at=now - timedelta(days=40)),
        record(3, key=key.hash, cost=0.0, model="openai/gpt-oss-120b:free", at=now),
    ])
    again = KeyRing(keys)
    await again.load(generations)
    loaded = again.authenticate(token)
    assert loaded is not None and loaded.limit == 10.0 and loaded.limit_reset == "daily"
    assert loaded.usage.total == pytest.approx(0.75) and loaded.usage.periods["daily"] == pytest.approx(0.5)
    assert loaded.usage.free_requests_today == 1
    assert loaded.public()["limit_remaining"] == pytest.approx(9.5)
    await again.update(loaded, disabled=True)
    third = KeyRing(keys)
    await third.load(generations)
    assert third.authenticate(token) is None and third.get(key.hash).disabled
    await engine.dispose()


@pytest.fixture
def postgres_server(sims, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    import asyncio

    if not POSTGRES:
        pytest.skip("CROSSROADS_TEST_POSTGRES_URL is not set (make test sets it)")
    url, name = asyncio.run(_temporary_postgres())
    yield tmp_path, url
    asyncio.run(_drop_postgres(name))


@pytest.mark.postgres
def test_server_on_postgresql(postgres_server, sims) -> None:
    tmp_path, url = postgres_server
    config = shared_config(sims)
    srv = Server(tmp_path, config, "--database", url)
    try:
        r = srv.chat("acme/widget-1", "on postgres").json()
        assert srv.generation(r["id"])["provider_name"] == "Alpha"
        key_hash = srv.get("/key").json()["data"]["hash"]
    finally:
        output = srv.stop()
    assert "postgresql" in output and "crossroads.db" not in output
    again = Server(tmp_path, config, "--database", url)
    try:
        stored = again.get(f"/generation?id={r['id']}", key=again.management_key).json()["data"]
        assert stored["total_cost"] == r["usage"]["cost"]  # read back from PostgreSQL
        assert again.get(f"/generation?id={r['id']}").status_code == 404  # another key may not read it
        usage = again.get(f"/keys/{key_hash}", key=again.management_key).json()["data"]["usage"]
        assert usage == pytest.approx(r["usage"]["cost"])
    finally:
        again.stop()
