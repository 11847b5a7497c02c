"""The storage suite, on SQLite and on PostgreSQL (`CROSSROADS_TEST_POSTGRES_URL`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import shared_config
from crossroads.accounting.keys import KeyRing, period_starts
from crossroads.schema.generation import GenerationRecord
from crossroads.storage import GenerationStore, KeyStore, make_engine, migrate, tables
from crossroads.telemetry.recorder import Recorder
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


def record(
    n: int,
    *,
    key: str = "k" * 64,
    model: str = "acme/widget-1",
    cost: float = 0.001,
    at: datetime | None = None,
) -> GenerationRecord:
    return GenerationRecord(
        id=f"gen-test-{n}",
        created_at=at or datetime.now(UTC),
        model=model,
        api_key_hash=key,
        provider_slug="alpha",
        provider_name="Alpha",
        endpoint_tag="alpha",
        total_cost=cost,
        tokens_prompt=10,
        tokens_completion=n,
        finish_reason="stop",
        attempts=[
            {
                "provider_slug": "alpha",
                "provider_name": "Alpha",
                "endpoint_tag": "alpha",
                "model": model,
                "status": 200,
                "latency_ms": 1.5,
                "error": None,
            }
        ],
    )


async def count(engine: AsyncEngine) -> int:
    """How many generation records are stored."""
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(tables.generations)
        return int((await conn.execute(query)).scalar_one())


async def load(ring: KeyRing, store: GenerationStore) -> None:
    """What the gateway does at start: every key, with its spend from the records."""
    starts = period_starts(datetime.now(UTC))
    await ring.load(spend=await store.spend_by_key(starts), starts=starts)


async def test_migrations_are_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    await migrate(engine)
    assert await count(engine) == 0
    await engine.dispose()


async def test_recorder_loses_nothing_on_shutdown(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    store = GenerationStore(engine)
    recorder = Recorder(store, interval=60, batch_size=200)  # nothing flushes until close()
    await recorder.start()
    for n in range(1234):
        recorder.submit(record(n))
    # readable before it is written
    assert (await recorder.get("gen-test-7")).tokens_completion == 7
    await recorder.close()
    assert await count(engine) == 1234
    stored = await store.get("gen-test-1233")
    assert stored.tokens_completion == 1233 and stored.attempts[0]["status"] == 200
    assert stored.created_at.replace(tzinfo=UTC).year >= 2026
    await engine.dispose()


async def test_recorder_retries_a_failed_batch(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)

    class Flaky(GenerationStore):
        failures = 1

        async def insert_many(self, records: Sequence[GenerationRecord]) -> None:
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
    assert await count(engine) == 2 and store.failures == 0
    await engine.dispose()


async def test_records_survive_a_database_outage_at_shutdown(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    await migrate(engine)

    class Down(GenerationStore):
        async def insert_many(self, records: Sequence[GenerationRecord]) -> None:
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
    assert await count(engine) == 3 and not spool.exists()
    assert (await store.get("gen-test-2")).attempts[0]["provider_name"] == "Alpha"
    await restarted.close()
    await engine.dispose()


async def test_keys_and_spend(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    keys, generations = KeyStore(engine), GenerationStore(engine)
    ring = KeyRing(keys)
    await load(ring, generations)
    token, key = await ring.create("app", limit=10.0, limit_reset="daily")
    now = datetime.now(UTC)
    await generations.insert_many(
        [
            record(1, key=key.hash, cost=0.5, at=now),
            record(2, key=key.hash, cost=0.25, at=now - timedelta(days=40)),
            record(3, key=key.hash, cost=0.0, model="openai/gpt-oss-120b:free", at=now),
        ]
    )
    again = KeyRing(keys)
    await load(again, generations)
    loaded = again.authenticate(token)
    assert loaded is not None and loaded.limit == 10.0 and loaded.limit_reset == "daily"
    assert loaded.usage.total == pytest.approx(0.75)
    assert loaded.usage.periods["daily"] == pytest.approx(0.5)
    assert loaded.usage.free_requests_today == 1
    assert loaded.public()["limit_remaining"] == pytest.approx(9.5)
    await again.update(loaded, disabled=True)
    third = KeyRing(keys)
    await load(third, generations)
    assert third.authenticate(token) is None and third.get(key.hash).disabled
    await engine.dispose()


async def test_each_loaded_key_starts_its_own_day() -> None:
    """A key's new UTC day must not move another key's period starts."""

    class Rows:
        async def all(self) -> list[dict[str, Any]]:
            return [
                {"hash": h, "name": h, "label": h, "created_at": datetime.now(UTC)}
                for h in ("a", "b")
            ]

    ring = KeyRing(Rows())  # type: ignore[arg-type]  # only `all` is used by load()
    now = datetime.now(UTC)
    spent = {"total": 1.0, "daily": 1.0, "weekly": 1.0, "monthly": 1.0, "free_requests_today": 0}
    await ring.load(spend={"a": spent, "b": spent}, starts=period_starts(now))
    tomorrow = now + timedelta(days=1)
    ring.charge("a", 0.5, tomorrow)
    ring.charge("b", 0.25, tomorrow)
    assert ring.get("a").usage.periods["daily"] == pytest.approx(0.5)
    assert ring.get("b").usage.periods["daily"] == pytest.approx(0.25)


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
        # another key may not read it
        assert again.get(f"/generation?id={r['id']}").status_code == 404
        usage = again.get(f"/keys/{key_hash}", key=again.management_key).json()["data"]["usage"]
        assert usage == pytest.approx(r["usage"]["cost"])
    finally:
        again.stop()
