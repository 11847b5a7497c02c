"""The storage suite, on SQLite and on PostgreSQL (`CROSSROADS_TEST_POSTGRES_URL`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import shared_config
from crossroads.accounting.keys import KeyRing, period_starts
from crossroads.schema.generation import GenerationRecord
from crossroads.schema.stats import BucketRow
from crossroads.storage import (
    BucketStore,
    GenerationStore,
    KeyStore,
    RollupStore,
    Usage,
    make_engine,
    migrate,
    tables,
)
from crossroads.telemetry.journal import Journal
from crossroads.telemetry.recorder import Recorder
from harness import POSTGRES, Server, drop_postgres, temporary_postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not POSTGRES:
        pytest.skip("CROSSROADS_TEST_POSTGRES_URL is not set (make test sets it)")
    url, name = await temporary_postgres()
    yield url
    await drop_postgres(name)


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

        async def insert_many(self, rows: Sequence[Mapping[str, Any]], *, fitted: bool) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database went away")
            await super().insert_many(rows, fitted=fitted)

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
        async def insert_many(self, rows: Sequence[Mapping[str, Any]], *, fitted: bool) -> None:
            raise ConnectionError("database is down")

    root = tmp_path / "journal"
    recorder = Recorder(Down(engine), journal=Journal(root), interval=60)
    await recorder.start()
    for n in range(3):
        recorder.submit(record(n))
    await recorder.close(retries=1)
    left = list(root.glob("*/*.jsonl"))
    assert sum(len(p.read_bytes().splitlines()) for p in left) == 3

    store = GenerationStore(engine)
    restarted = Recorder(store, journal=Journal(root), interval=60)
    await restarted.start()
    assert await count(engine) == 3 and not any(p.exists() for p in left)
    assert (await store.get("gen-test-2")).attempts[0]["provider_name"] == "Alpha"
    await restarted.close()
    assert list(root.iterdir()) == []  # nothing pending: the directory is gone
    await engine.dispose()


async def test_the_old_shutdown_spool_is_replayed(database_url: str, tmp_path: Path) -> None:
    """A spool file written by the previous version is written at start, then removed."""
    engine = make_engine(database_url)
    await migrate(engine)
    spool = tmp_path / "unwritten-generations.jsonl"
    spool.write_bytes(b"".join(orjson.dumps(record(n).to_row()) + b"\n" for n in range(4)))
    recorder = Recorder(
        GenerationStore(engine), journal=Journal(tmp_path / "journal", adopt=[spool])
    )
    await recorder.start()
    assert await count(engine) == 4 and not spool.exists()
    await recorder.close()
    await engine.dispose()


class Unfitted(GenerationStore):
    """Inserts rows as they come, the way the recorder did before rows were fitted: the
    database's own refusals reach the recorder."""

    def prepare(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return dict(row)


def refused_by(database_url: str) -> dict[str, Any]:
    """A value this database refuses: the two failures found in testing."""
    if database_url.startswith("postgresql"):
        return {"app_title": "t" * 201}  # String(200)
    return {"tokens_prompt": 18446744073709551615}  # past SQLite's 64-bit INTEGER


async def test_a_refused_row_is_quarantined_and_the_rest_written(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    quarantine = tmp_path / "rejected.jsonl"
    recorder = Recorder(Unfitted(engine), quarantine=quarantine, interval=60, batch_size=100)
    await recorder.start()
    for n in range(250):
        row = record(n)
        if n == 137:
            for name, value in refused_by(database_url).items():
                setattr(row, name, value)
        recorder.submit(row)
    assert await recorder.flush()
    assert await count(engine) == 249
    stats = recorder.stats()
    assert stats.rows_rejected == 1 and stats.rows_written == 249 and stats.queue_depth == 0
    (entry,) = [orjson.loads(line) for line in quarantine.read_bytes().splitlines()]
    assert entry["row"]["id"] == "gen-test-137" and entry["error"]
    # the writer is not stuck: later records go through
    recorder.submit(record(1000))
    assert await recorder.flush() and await count(engine) == 250
    await recorder.close()
    await engine.dispose()


async def test_rows_are_fitted_to_their_columns(database_url: str, tmp_path: Path) -> None:
    """The same values through the real store: stored within the columns' limits."""
    engine = make_engine(database_url)
    await migrate(engine)
    store = GenerationStore(engine)
    recorder = Recorder(store, quarantine=tmp_path / "rejected.jsonl", interval=60)
    await recorder.start()
    row = record(1)
    row.app_title, row.tokens_prompt = "t" * 201 + "\x00", 18446744073709551615
    row.tokens_completion = -(2**70)
    recorder.submit(row)
    assert (await recorder.get("gen-test-1")).tokens_prompt == 2**31 - 1  # as it will be stored
    assert await recorder.flush()
    stored = await store.get("gen-test-1")
    assert stored.app_title == "t" * 200
    assert (stored.tokens_prompt, stored.tokens_completion) == (2**31 - 1, -(2**31))
    assert recorder.stats().rows_rejected == 0 and not (tmp_path / "rejected.jsonl").exists()
    await recorder.close()
    await engine.dispose()


async def test_a_row_refused_even_when_fitted_is_quarantined(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    quarantine = tmp_path / "rejected.jsonl"
    recorder = Recorder(GenerationStore(engine), quarantine=quarantine, interval=60)
    await recorder.start()
    broken = record(2)
    broken.model = None  # NOT NULL
    for row in (record(1), broken, record(3)):
        recorder.submit(row)
    assert await recorder.flush()
    assert await count(engine) == 2 and recorder.stats().rows_rejected == 1
    (entry,) = [orjson.loads(line) for line in quarantine.read_bytes().splitlines()]
    assert entry["row"]["id"] == "gen-test-2" and "model" in entry["error"]
    await recorder.close()
    await engine.dispose()


async def test_a_full_queue_spills_to_the_journal(database_url: str, tmp_path: Path) -> None:
    """While the database is away, memory holds at most `max_pending` rows; the rest wait in
    the journal, and all of them are written when the database is back."""
    engine = make_engine(database_url)
    await migrate(engine)

    class Away(GenerationStore):
        down = True

        async def insert_many(self, rows: Sequence[Mapping[str, Any]], *, fitted: bool) -> None:
            if self.down:
                raise ConnectionRefusedError("database is away")
            await super().insert_many(rows, fitted=fitted)

    store = Away(engine)
    recorder = Recorder(store, journal=Journal(tmp_path / "journal"), interval=60, max_pending=50)
    await recorder.start()
    for n in range(120):
        recorder.submit(record(n))
        if n % 40 == 39:
            assert not await recorder.flush()
    stats = recorder.stats()
    assert stats.queue_depth == 120 and stats.rows_spilled >= 70 and stats.write_failures >= 3
    assert stats.segments_pending >= 1
    store.down = False
    assert await recorder.flush()
    assert await count(engine) == 120 and recorder.stats().queue_depth == 0
    assert recorder.stats().segments_pending == 0
    assert not list((tmp_path / "journal").glob("*/*.jsonl"))
    await recorder.close()
    await engine.dispose()


async def test_unreadable_journal_lines_do_not_stop_the_replay(
    database_url: str, tmp_path: Path
) -> None:
    """What a crash or a disk left behind: a cut line, garbage, a line that is not an
    object; the good lines are written (one with a field of another version too), the
    others quarantined."""
    engine = make_engine(database_url)
    await migrate(engine)
    orphan = tmp_path / "journal" / "4242-deadbeef"
    orphan.mkdir(parents=True)
    good = [orjson.dumps(record(n).to_row()) for n in range(5)]
    unknown = orjson.dumps({**record(9).to_row(), "surprise": 1})
    lines = [good[0], b"\xff\xfe not json", good[1], b"[1, 2]", unknown, good[2], good[3]]
    (orphan / "00000001.jsonl").write_bytes(b"\n".join(lines) + b"\n" + good[4][:40])
    quarantine = tmp_path / "rejected.jsonl"
    recorder = Recorder(
        GenerationStore(engine), journal=Journal(tmp_path / "journal"), quarantine=quarantine
    )
    await recorder.start()
    assert await count(engine) == 5 and not orphan.exists()
    stats = recorder.stats()
    assert stats.rows_rejected == 3 and stats.rows_written == 5 and stats.queue_depth == 0
    rejected = [orjson.loads(line) for line in quarantine.read_bytes().splitlines()]
    assert len(rejected) == 3 and all(entry["line"] and entry["error"] for entry in rejected)
    await recorder.close()
    await engine.dispose()


def test_a_record_of_another_version_is_read() -> None:
    """Unknown keys are ignored and missing optional fields keep their defaults; the
    fields without a default are still required."""
    row = {**record(1).to_row(), "surprise": 1}
    del row["session_id"], row["attempts"]
    read = GenerationRecord.from_row(orjson.loads(orjson.dumps(row)))
    assert read.id == "gen-test-1" and read.session_id is None and read.attempts == []
    assert read.created_at.tzinfo is not None
    for required in ("id", "created_at", "model"):
        partial = dict(row)
        del partial[required]
        with pytest.raises(TypeError):
            GenerationRecord.from_row(partial)


async def test_a_database_outage_is_retried_with_backoff(tmp_path: Path) -> None:
    """While the database is down, the writer tries once per round, backing off: not once
    per request once a batch's worth of records is waiting."""
    engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    await migrate(engine)

    class Down(GenerationStore):
        down, attempts = True, 0

        async def insert_many(self, rows: Sequence[Mapping[str, Any]], *, fitted: bool) -> None:
            self.attempts += 1
            if self.down:
                raise ConnectionRefusedError("database is down")
            await super().insert_many(rows, fitted=fitted)

    store = Down(engine)
    recorder = Recorder(store, journal=Journal(tmp_path / "journal"), interval=0.01)
    await recorder.start()
    for n in range(5000):  # ten batches' worth
        recorder.submit(record(n))
        await asyncio.sleep(0)  # the writer may run between requests
    assert 1 <= store.attempts <= 30, store.attempts
    store.down = False
    assert await recorder.flush()
    assert await count(engine) == 5000 and recorder.stats().rows_written == 5000
    await recorder.close()
    await engine.dispose()


@pytest.mark.parametrize("max_pending", [10_000, 0], ids=["in-memory", "from-the-journal"])
async def test_a_retried_batch_quarantines_and_counts_each_row_once(
    database_url: str, tmp_path: Path, max_pending: int
) -> None:
    """A batch is bisected around a refused row, then a later half fails for want of the
    database: the retry neither quarantines the refused row again nor counts rows twice."""
    engine = make_engine(database_url)
    await migrate(engine)

    class Refusing(GenerationStore):
        cut = True  # the connection drops once, at the batch holding gen-test-7

        async def insert_many(self, rows: Sequence[Mapping[str, Any]], *, fitted: bool) -> None:
            ids = {row["id"] for row in rows}
            if "gen-test-3" in ids:
                raise ValueError("refused")
            if self.cut and "gen-test-7" in ids and len(ids) < 10:
                self.cut = False
                raise ConnectionError("connection lost")
            await super().insert_many(rows, fitted=fitted)

        def refused(self, error: BaseException) -> bool:
            return isinstance(error, ValueError)

    quarantine = tmp_path / "rejected.jsonl"
    recorder = Recorder(
        Refusing(engine),
        journal=Journal(tmp_path / "journal"),
        quarantine=quarantine,
        interval=60,
        batch_size=10,
        max_pending=max_pending,
    )
    await recorder.start()
    for n in range(10):
        recorder.submit(record(n))
    assert not await recorder.flush()  # 0-4 settled (3 quarantined), then 5-9 cut off
    assert recorder.stats().rows_rejected == 1 and len(quarantine.read_bytes().splitlines()) == 1
    assert await recorder.flush()
    stats = recorder.stats()
    assert stats.rows_rejected == 1 and stats.rows_written == 9 and stats.queue_depth == 0
    (entry,) = [orjson.loads(line) for line in quarantine.read_bytes().splitlines()]
    assert (entry.get("row") or orjson.loads(entry["line"]))["id"] == "gen-test-3"
    assert await count(engine) == 9
    await recorder.close()
    await engine.dispose()


def test_a_live_journal_is_not_adopted(tmp_path: Path) -> None:
    """Two processes on one data folder: each replays only what a dead process left."""
    live = Journal(tmp_path)
    assert live.open() == []
    live.append(b'{"id": "x"}\n')
    other = Journal(tmp_path)
    assert other.open() == []  # the live directory is locked
    assert live.directory is not None and len(list(live.directory.glob("*.jsonl"))) == 1
    other.close()
    live.close()  # a segment is left: the directory stays for the next start
    third = Journal(tmp_path)
    (adopted,) = third.open()
    assert adopted.read_bytes() == b'{"id": "x"}\n'
    third.close()


async def test_keys_and_spend(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    keys, generations = KeyStore(engine), GenerationStore(engine)
    ring = KeyRing(keys)
    await load(ring, generations)
    token, key = await ring.create("app", limit=10.0, limit_reset="daily")
    now = datetime.now(UTC)
    rows = [
        record(1, key=key.hash, cost=0.5, at=now).to_row(),
        record(2, key=key.hash, cost=0.25, at=now - timedelta(days=40)).to_row(),
        record(3, key=key.hash, cost=0.0, model="openai/gpt-oss-120b:free", at=now).to_row(),
    ]
    await generations.insert_many(rows)
    await generations.insert_many(rows)  # written twice (a replayed journal): counted once
    again = KeyRing(keys)
    await load(again, generations)
    loaded = again.authenticate(token)
    assert loaded is not None and loaded.limit == 10.0 and loaded.limit_reset == "daily"
    assert loaded.usage.total == 750 * 10**9  # pico-USD
    assert loaded.usage.periods["daily"] == 500 * 10**9
    assert loaded.public()["limit_remaining"] == pytest.approx(9.5)
    await again.update(loaded, disabled=True)
    third = KeyRing(keys)
    await load(third, generations)
    assert third.authenticate(token) is None and third.get(key.hash).disabled
    await engine.dispose()


@pytest.mark.postgres
def test_server_on_postgresql(tmp_path: Path, postgres_url: str, sims) -> None:
    url = postgres_url
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


# -- usage rollups and statistics buckets (migration 0002) --------------------------------


async def usage_rows(engine: AsyncEngine) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """usage_daily as {(day, model, app): (requests, prompt, completion, reasoning, cost)}."""
    u = tables.usage_daily
    async with engine.connect() as conn:
        rows = (await conn.execute(u.select())).all()
    return {
        (r.day, r.model, r.app): (
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.reasoning_tokens,
            round(r.cost, 9),
        )
        for r in rows
    }


def attributed(n: int, **fields: Any) -> GenerationRecord:
    """A record with reasoning tokens and the attribution headers in `fields`."""
    row = record(n, **{k: v for k, v in fields.items() if k in ("model", "cost", "at")})
    row.tokens_reasoning = 3
    row.http_referer = fields.get("referer")
    row.app_title = fields.get("title")
    return row


def usage_batch() -> list[GenerationRecord]:
    day = datetime(2026, 3, 9, 23, 59, 30, tzinfo=UTC)  # a Monday, late: the next is a new day
    return [
        attributed(1, at=day, referer="https://a.example", title="A"),
        attributed(2, at=day, title="Only a title", cost=0.25),
        attributed(3, at=day),
        attributed(4, at=day + timedelta(minutes=1), referer="https://a.example"),
        attributed(5, at=day, model="acme/other", referer="https://a.example"),
        # a time in another zone counts on its UTC day
        attributed(6, at=datetime(2026, 3, 10, 1, 0, tzinfo=timezone(timedelta(hours=5)))),
    ]


EXPECTED_USAGE = {  # requests, prompt, completion (record(n): n), reasoning, cost
    (date(2026, 3, 9), "acme/widget-1", "https://a.example"): (1, 10, 1, 3, 0.001),
    (date(2026, 3, 9), "acme/widget-1", "Only a title"): (1, 10, 2, 3, 0.25),
    (date(2026, 3, 9), "acme/widget-1", ""): (2, 20, 9, 6, 0.002),  # 3, and 6 (UTC the 9th)
    (date(2026, 3, 10), "acme/widget-1", "https://a.example"): (1, 10, 4, 3, 0.001),
    (date(2026, 3, 9), "acme/other", "https://a.example"): (1, 10, 5, 3, 0.001),
}


async def test_usage_rollups_count_each_inserted_record_once(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    store = GenerationStore(engine)
    batch = [r.to_row() for r in usage_batch()]
    await store.insert_many(batch[:4])
    await store.insert_many(batch)  # a replayed journal: only 5 and 6 are new
    await store.insert_many(batch[::-1])
    assert await count(engine) == 6
    assert await usage_rows(engine) == EXPECTED_USAGE
    await engine.dispose()


async def test_a_refused_batch_adds_no_usage(database_url: str) -> None:
    """The rollups are kept in the insert's transaction: a batch refused for one row adds
    nothing (the recorder then bisects it); the rows written on their own count once."""
    engine = make_engine(database_url)
    await migrate(engine)
    store = Unfitted(engine)
    good = record(1).to_row()
    bad = {**record(2).to_row(), **refused_by(database_url)}
    with pytest.raises(Exception) as refusal:
        await store.insert_many([good, bad])
    assert store.refused(refusal.value)
    assert await count(engine) == 0 and await usage_rows(engine) == {}
    await store.insert_many([good])
    (usage,) = (await usage_rows(engine)).values()
    assert usage[:3] == (1, 10, 1)
    await engine.dispose()


def _alembic(connection: sa.Connection, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(tables.__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def test_migration_0002_fills_the_rollups_from_stored_records(database_url: str) -> None:
    """Records stored before 0002 are rolled up by the migration exactly as insert_many
    rolls up new ones; downgrading drops the new tables."""
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "upgrade", "0001")
    store = GenerationStore(engine)
    async with engine.begin() as conn:  # as version 0001 wrote them
        rows = [store.prepare(r.to_row()) for r in usage_batch()]
        for row in rows:  # columns of later revisions
            for later in (
                "app_id",
                "balance_charged",
                "moderation_latency_ms",
                "request_metadata",
                "trace",
            ):
                del row[later]
        await conn.execute(tables.generations.insert(), rows)
    await migrate(engine)
    assert await usage_rows(engine) == EXPECTED_USAGE
    await store.insert_many([r.to_row() for r in usage_batch()])  # already there: no change
    assert await usage_rows(engine) == EXPECTED_USAGE
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0001")
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    assert "usage_daily" not in names and "endpoint_buckets" not in names
    assert "generations" in names and await count(engine) == 6
    await migrate(engine)  # and up again
    assert await usage_rows(engine) == EXPECTED_USAGE
    await engine.dispose()


async def test_bucket_store_replaces_loads_and_prunes(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    buckets = BucketStore(engine)
    rows = [
        BucketRow("a", "acme/trio@alpha", "minute", 600, b'{"v":1,"ok":1}'),
        BucketRow("a", "acme/trio@alpha", "minute", 660, b'{"v":1,"ok":2}'),
        BucketRow("a", "acme/trio@alpha", "day", 0, b'{"v":1,"ok":3}'),
        BucketRow("b", "acme/trio@alpha", "minute", 600, b'{"v":1,"ok":4}'),
    ]
    await buckets.save(rows)
    replaced = BucketRow("a", "acme/trio@alpha", "minute", 600, b'{"v":1,"ok":9}')
    await buckets.save([replaced])
    assert sorted(await buckets.load(0), key=repr) == sorted([replaced, *rows[1:]], key=repr)
    assert {r.data for r in await buckets.load(650)} == {b'{"v":1,"ok":2}'}
    # per grain: minutes from 660 on, days from 0 on, hours not at all
    loaded = await buckets.load({"minute": 660, "day": 0})
    assert sorted((r.grain, r.start) for r in loaded) == [("day", 0), ("minute", 660)]
    assert await buckets.prune({"minute": 660}) == 2  # both replicas' 600
    assert await buckets.prune(1) == 1  # the day row
    assert await buckets.load(0) == [rows[1]]
    # a key too long for its column would fail the whole batch every round: skipped
    long = BucketRow("a", "acme/" + "x" * 400, "minute", 720, b"{}")
    await buckets.save([long, BucketRow("a", "acme/trio@alpha", "minute", 720, b"{}")])
    assert sorted(r.start for r in await buckets.load(0)) == [660, 720]
    await engine.dispose()


async def test_rollup_reads(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    await GenerationStore(engine).insert_many([r.to_row() for r in usage_batch()])
    rollups = RollupStore(engine)
    monday, tuesday = date(2026, 3, 9), date(2026, 3, 10)
    daily = await rollups.daily("acme/widget-1", first=monday, last=tuesday)
    assert daily == {
        monday: Usage(4, 40, 12, 12, pytest.approx(0.253)),
        tuesday: Usage(1, 10, 4, 3, pytest.approx(0.001)),
    }
    assert await rollups.daily("acme/widget-1", first=tuesday, last=tuesday) == {
        tuesday: Usage(1, 10, 4, 3, pytest.approx(0.001))
    }
    apps = await rollups.apps(first=monday, last=tuesday)
    assert [(a.app, a.model, a.usage.total_tokens) for a in apps] == [
        ("", "acme/widget-1", 29),
        ("https://a.example", "acme/widget-1", 25),
        ("https://a.example", "acme/other", 15),
        ("Only a title", "acme/widget-1", 12),
    ]
    only = await rollups.apps(first=monday, last=monday, model="acme/other")
    assert [(a.app, a.usage.requests) for a in only] == [("https://a.example", 1)]
    ranked = await rollups.models(first=monday, last=monday + timedelta(days=6))
    assert [(m.model, m.usage.total_tokens, m.usage.requests) for m in ranked] == [
        ("acme/widget-1", 66, 5),
        ("acme/other", 15, 1),
    ]
    assert await rollups.models(first=date(2026, 3, 2), last=date(2026, 3, 8)) == []
    popular = await rollups.popularity(today=tuesday, recent_days=1)
    assert popular.total == {"acme/widget-1": 66, "acme/other": 15}
    assert popular.recent == {"acme/widget-1": 14}
    await engine.dispose()


def test_the_head_revision_is_alembic_s() -> None:
    """`migrate` recognises a current database by `HEAD_REVISION` without loading Alembic:
    a new migration must move it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from crossroads.storage.engine import HEAD_REVISION

    config = Config()
    config.set_main_option("script_location", str(Path(tables.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


async def test_a_current_database_is_migrated_without_alembic(database_url: str) -> None:
    import subprocess
    import sys

    engine = make_engine(database_url)
    await migrate(engine)
    await engine.dispose()
    check = (  # a fresh interpreter: what a server's start imports
        "import asyncio, sys; from crossroads.storage import make_engine, migrate\n"
        f"e = make_engine({database_url!r}); asyncio.run(migrate(e)); asyncio.run(e.dispose())\n"
        "assert 'alembic' not in sys.modules, 'alembic was loaded'\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_a_database_migrated_by_a_newer_version_still_starts(tmp_path: Path) -> None:
    """During a rolling update an older replica may restart after a newer one migrated:
    it starts on the newer schema (a warning), it does not crash-loop."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ahead.db'}")
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    await migrate(engine)  # no "Can't locate revision"
    async with engine.connect() as conn:
        revision = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    assert revision == "9999"
    await engine.dispose()
