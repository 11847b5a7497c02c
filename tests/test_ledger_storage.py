"""The storage side of accounts (migration 0003): money in pico-USD, the ledger, apps,
activity, the keys' signature; every database case on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.money import PICO, to_pico, to_usd
from crossroads.schema.accounts import ActivityRow, LedgerTotals
from crossroads.schema.generation import GenerationRecord
from crossroads.storage import (
    ActivityStore,
    GenerationStore,
    KeyStore,
    LedgerStore,
    make_engine,
    migrate,
    normalize_app_url,
    tables,
)
from crossroads.telemetry.journal import Journal
from crossroads.telemetry.recorder import Recorder

DAY1 = datetime(2026, 3, 9, tzinfo=UTC)  # 00:00 UTC
DAY2 = DAY1 + timedelta(days=1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new SQLite file, or a fresh PostgreSQL database (`postgres_url`)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    yield request.getfixturevalue("postgres_url")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the database, migrated to the newest revision."""
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


def gen(n: int, **fields: Any) -> GenerationRecord:
    values: dict[str, Any] = {
        "id": f"gen-{n}",
        "created_at": DAY1 + timedelta(hours=10, minutes=n),
        "model": "acme/widget-1",
        "api_key_hash": "a" * 64,
        "provider_slug": "alpha",
        "provider_name": "Alpha",
        "endpoint_tag": "alpha",
        "tokens_prompt": 10,
        "tokens_completion": 5,
        "tokens_reasoning": 2,
        "total_cost": 0.001,
        **fields,
    }
    return GenerationRecord(**values)


async def rows_of(engine: AsyncEngine, table: sa.Table) -> list[dict[str, Any]]:
    """Every row of `table`, in a stable order."""
    async with engine.connect() as conn:
        rows = (await conn.execute(table.select())).all()
    return sorted((dict(r._mapping) for r in rows), key=repr)


async def everything(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """What insert_many writes: the records, the rollups, the apps, the ledger."""
    names = ("generations", "usage_daily", "apps", "ledger")
    return {name: await rows_of(engine, tables.metadata.tables[name]) for name in names}


def _alembic(connection: sa.Connection, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(tables.__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def column_names(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda c: sa.inspect(c).get_columns(table))
    return {c["name"] for c in columns}


# -- money --------------------------------------------------------------------------------


def test_to_pico_is_exact_and_rounds_half_to_even() -> None:
    assert PICO == 10**12
    assert to_pico(1) == PICO and to_pico("2.5") == 2_500_000_000_000
    assert to_pico(0.1) == 100_000_000_000  # the decimal the float prints as
    assert to_pico(1e-12) == 1 and to_pico(0.000123456789012) == 123_456_789
    assert to_pico(Decimal("0.0000000000025")) == 2  # a tie: to the even pico
    assert to_pico("0.0000000000035") == 4
    assert to_pico("0.00000000000251") == 3
    assert to_pico("-0.0000000000015") == -2
    assert to_pico(" 12.000000000001 ") == 12_000_000_000_001
    assert to_pico(1e30) == 10**42
    for bad in (float("nan"), float("inf"), "-inf", "1 USD", "", True, None, "1e41"):
        with pytest.raises(ValueError):
            to_pico(bad)  # type: ignore[arg-type]


def test_to_usd() -> None:
    assert to_usd(0) == 0.0 and to_usd(PICO) == 1.0
    assert to_usd(123_456_789) == 0.000123456789
    assert to_usd(-1) == -1e-12
    assert to_usd(10**30) == 1e18
    costs = [round(random.Random(n).uniform(0, 1), 12) for n in range(1000)]
    assert all(to_usd(to_pico(c)) == c for c in costs)  # a 1e-12-quantized cost round-trips


# -- migration ----------------------------------------------------------------------------


async def test_migration_from_an_empty_database(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    await migrate(engine)  # idempotent
    assert {"apps", "ledger", "revisions"} <= await table_names(engine)
    assert {"app_id", "balance_charged"} <= await column_names(engine, "generations")
    keys = {"requests_per_minute", "tokens_per_minute", "guardrails"}
    assert keys <= await column_names(engine, "api_keys")
    assert await LedgerStore(engine).totals() == LedgerTotals(0, 0, 0)
    assert await rows_of(engine, tables.revisions) == [{"name": "api_keys", "value": 0}]
    await engine.dispose()


UPGRADE_BATCH = [  # as version 0002 stored them (times are minutes after 10:00 of DAY1)
    gen(1, http_referer="https://Example.com/chat/", app_title="Old"),
    gen(2, http_referer="https://example.com/chat", app_title="New"),
    gen(3, http_referer="https://example.com/chat?x=1", app_title="  "),
    gen(0, http_referer="https://other.example", app_title=None),
    gen(5, http_referer="not a url", app_title="X"),
    gen(6, app_title="Only a title", total_cost=0.5),
]


async def test_an_upgrade_from_0002_keeps_the_records_and_finds_their_apps(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "upgrade", "0002")
    store = GenerationStore(engine)
    old = [
        {
            k: v
            for k, v in store.prepare(r.to_row()).items()
            if k
            not in (
                "app_id",
                "balance_charged",
                "moderation_latency_ms",
                "request_metadata",
                "trace",
            )
        }
        for r in UPGRADE_BATCH
    ]
    async with engine.begin() as conn:
        await conn.execute(tables.generations.insert(), old)
    await migrate(engine)

    apps = {a["url"]: a for a in await rows_of(engine, tables.apps)}
    assert {url: a["title"] for url, a in apps.items()} == {
        "https://example.com/chat": "New",  # the newest non-empty title
        "https://other.example": None,
    }
    first = apps["https://example.com/chat"]["created_at"]  # its first record's time
    assert first.replace(tzinfo=UTC) == DAY1 + timedelta(hours=10, minutes=1)
    chat, other = apps["https://example.com/chat"]["id"], apps["https://other.example"]["id"]
    stored = {r["id"]: r for r in await rows_of(engine, tables.generations)}
    assert {i: r["app_id"] for i, r in stored.items()} == {
        "gen-1": chat,
        "gen-2": chat,
        "gen-3": chat,
        "gen-0": other,
        "gen-5": None,
        "gen-6": None,
    }
    assert all(r["balance_charged"] is False for r in stored.values())
    assert await rows_of(engine, tables.ledger) == []
    before = await everything(engine)

    # the same records replayed (as charged, with new titles): already stored, nothing changes
    replayed = [
        gen(n, balance_charged=True, app_title="Newer", http_referer="https://z.example")
        for n in (0, 1, 2, 3, 5, 6)
    ]
    await store.insert_many([r.to_row() for r in replayed])
    assert await everything(engine) == before

    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0002")
    assert not {"apps", "ledger", "revisions"} & await table_names(engine)
    assert not {"app_id", "balance_charged"} & await column_names(engine, "generations")
    assert "guardrails" not in await column_names(engine, "api_keys")
    await migrate(engine)  # and up again: the same apps, found again
    again = await everything(engine)
    assert again["apps"] == before["apps"] and again["generations"] == before["generations"]
    await engine.dispose()


# -- ledger -------------------------------------------------------------------------------


ODD_COSTS = (1e300, -0.5, float("inf"))


async def test_ten_thousand_charges_sum_exactly(engine: AsyncEngine) -> None:
    rng = random.Random(6)
    records = []
    for n in range(10_000):
        cost = 0.0 if n % 7 == 0 else round(rng.uniform(0, 0.05), 12)
        records.append(gen(n, total_cost=cost, balance_charged=n % 10 != 3))
    store = GenerationStore(engine)
    for at in range(0, len(records), 500):
        await store.insert_many([r.to_row() for r in records[at : at + 500]])
    charged = [r for r in records if r.balance_charged and r.total_cost > 0]
    expected = sum(to_pico(r.total_cost) for r in charged)
    ledger = LedgerStore(engine)
    totals = await ledger.totals()
    assert totals == LedgerTotals(credits=0, charges=expected, credit_rows=0)
    assert await ledger.summed() == totals  # the kept totals agree with the rows
    assert totals.balance == -expected
    assert to_usd(expected) == pytest.approx(sum(r.total_cost for r in charged))
    rows = await rows_of(engine, tables.ledger)
    assert len(rows) == len(charged) and {r["kind"] for r in rows} == {"charge"}
    assert {r["generation_id"] for r in rows} == {r.id for r in charged}
    by_id = {r.id: r for r in charged}
    assert all(r["amount"] == to_pico(by_id[r["generation_id"]].total_cost) for r in rows)
    assert all(r["api_key_hash"] == "a" * 64 for r in rows)

    await store.insert_many([r.to_row() for r in records[:500]])  # a replay: no new charge
    assert await ledger.totals() == totals

    # costs that cannot be charged as they are: nothing for what is not a number, at most
    # the column's largest for an absurd one (the record is stored all the same)
    odd = [gen(10_000 + n, total_cost=c, balance_charged=True) for n, c in enumerate(ODD_COSTS)]
    await store.insert_many([r.to_row() for r in odd])
    stored = [await store.get(r.id) for r in odd]
    assert all(s is not None and s.balance_charged for s in stored)
    assert (await ledger.totals()).charges == expected + 2**63 - 1


async def test_credits(engine: AsyncEngine) -> None:
    ledger = LedgerStore(engine)
    first = await ledger.add_credit(5 * PICO, note="first", at=DAY1)
    # a time in another zone is stored in UTC; a long note is cut to its column
    second = await ledger.add_credit(
        2**62, note="n" * 600, at=datetime(2026, 3, 10, 1, 0, tzinfo=timezone(timedelta(hours=5)))
    )
    third = await ledger.add_credit(2**62, note=None)
    assert first.kind == "credit" and first.amount == 5 * PICO and first.note == "first"
    assert second.created_at == datetime(2026, 3, 9, 20, 0, tzinfo=UTC)
    assert second.note == "n" * 500 and first.id != second.id != third.id
    await GenerationStore(engine).insert_many([gen(1, balance_charged=True).to_row()])
    totals = await ledger.totals()
    assert totals.credits == 5 * PICO + 2**63  # past 64 bits, summed exactly
    assert totals.charges == to_pico(0.001) and totals.credit_rows == 3
    assert await ledger.summed() == totals
    entries = await ledger.entries()  # newest first: the charge was made at DAY1 10:01
    assert [e.id for e in entries] == [third.id, second.id, entries[2].id, first.id]
    assert entries[2].kind == "charge" and entries[2].generation_id == "gen-1"
    assert entries[2].amount == to_pico(0.001) and entries[2].api_key_hash == "a" * 64
    assert entries[3] == first and entries[0] == third and entries[1] == second
    assert [e.id for e in await ledger.entries(limit=2)] == [third.id, second.id]
    for bad in (0, -1, 2**63, 1.5, True):
        with pytest.raises(ValueError):
            await ledger.add_credit(bad, note=None)  # type: ignore[arg-type]
    assert (await ledger.totals()).credit_rows == 3


async def test_a_replay_adds_nothing(engine: AsyncEngine) -> None:
    store = GenerationStore(engine)
    batch = [
        gen(1, balance_charged=True, http_referer="https://a.example/", app_title="A"),
        gen(2, balance_charged=True, total_cost=0.25),
        gen(3, http_referer="https://a.example"),
    ]
    await store.insert_many([r.to_row() for r in batch])
    before = await everything(engine)
    assert len(before["ledger"]) == 2 and len(before["apps"]) == 1
    await store.insert_many([r.to_row() for r in batch])
    changed = [
        gen(
            1, balance_charged=True, total_cost=9.0, http_referer="https://b.example", app_title="B"
        ),
        gen(3, balance_charged=True, http_referer="https://a.example", app_title="Renamed"),
    ]
    await store.insert_many([r.to_row() for r in changed[::-1]])
    assert await everything(engine) == before
    # a batch part old, part new: only the new record counts
    await store.insert_many([r.to_row() for r in [*batch, gen(4, balance_charged=True)]])
    after = await everything(engine)
    assert len(after["generations"]) == 4 and len(after["ledger"]) == 3
    assert after["apps"] == before["apps"]
    assert sum(u["requests"] for u in after["usage_daily"]) == 4


async def test_the_journal_carries_the_new_fields(engine: AsyncEngine, tmp_path: Path) -> None:
    """A record journaled while the database was down is written at the next start with
    its `balance_charged` (and charged then); `app_id` round-trips through the journal."""
    record = gen(1, balance_charged=True, app_id=7, http_referer="https://a.example")
    line = orjson.dumps(record.to_row(), default=str)
    assert GenerationRecord.from_row(orjson.loads(line)) == record

    class Down(GenerationStore):
        async def insert_many(self, rows: Any, *, fitted: bool) -> None:
            raise ConnectionError("database is down")

    root = tmp_path / "journal"
    recorder = Recorder(Down(engine), journal=Journal(root), interval=60)
    await recorder.start()
    recorder.submit(gen(1, balance_charged=True, http_referer="https://a.example"))
    recorder.submit(gen(2))
    await recorder.close(retries=1)
    journaled = [orjson.loads(x) for p in root.glob("*/*.jsonl") for x in p.read_bytes().split()]
    assert {r["id"]: r["balance_charged"] for r in journaled} == {"gen-1": True, "gen-2": False}

    store = GenerationStore(engine)
    restarted = Recorder(store, journal=Journal(root), interval=60)
    await restarted.start()
    await restarted.close()
    one, two = await store.get("gen-1"), await store.get("gen-2")
    assert one is not None and two is not None
    assert one.balance_charged and not two.balance_charged
    (app,) = await rows_of(engine, tables.apps)
    assert one.app_id == app["id"] and one.public()["app_id"] == app["id"]
    assert two.app_id is None and two.public()["app_id"] is None
    assert await LedgerStore(engine).totals() == LedgerTotals(0, to_pico(0.001), 0)


# -- apps ---------------------------------------------------------------------------------


def test_app_urls_are_normalized() -> None:
    cases = {
        "https://example.com": "https://example.com",
        "https://example.com/": "https://example.com",
        "HTTPS://Example.COM:8443/Chat/?q=1#top": "https://example.com:8443/Chat",
        "https://user:secret@example.com/app//": "https://example.com/app",
        "http://[::1]:3000/": "http://[::1]:3000",
        "  https://example.com/a  ": "https://example.com/a",
        "android-app://com.example.app/": "android-app://com.example.app",
        "example.com": None,
        "localhost:3000": None,
        "https://example.com:port/": None,
        "https://": None,
        "": None,
        "https://example.com/" + "p" * 500: None,  # longer than the column
    }
    assert {referer: normalize_app_url(referer) for referer in cases} == cases


async def test_apps_are_upserted_by_normalized_url(engine: AsyncEngine) -> None:
    store = GenerationStore(engine)
    first = [
        gen(1, http_referer="https://Example.com/chat/", app_title="First"),
        gen(2, http_referer="https://example.com/chat", app_title=None),
        gen(3, http_referer="nonsense"),
        gen(4, http_referer="https://other.example"),
    ]
    await store.insert_many([r.to_row() for r in first])
    apps = {a["url"]: a for a in await rows_of(engine, tables.apps)}
    assert {u: a["title"] for u, a in apps.items()} == {
        "https://example.com/chat": "First",
        "https://other.example": None,
    }
    chat = apps["https://example.com/chat"]
    assert chat["updated_at"] is not None  # its title was set
    for n, app in ((1, chat["id"]), (2, chat["id"]), (3, None)):
        stored = await store.get(f"gen-{n}")
        assert stored is not None and stored.app_id == app

    # the last non-empty title wins, in the order written; an empty one changes nothing
    await store.insert_many(
        [
            gen(5, http_referer="https://example.com/chat?from=x", app_title="Second").to_row(),
            gen(6, http_referer="https://example.com/chat/", app_title="Third").to_row(),
            gen(7, http_referer="https://example.com/chat", app_title="   ").to_row(),
        ]
    )
    await store.insert_many([gen(8, http_referer="https://other.example", app_title="").to_row()])
    apps = {a["url"]: a for a in await rows_of(engine, tables.apps)}
    assert len(apps) == 2 and apps["https://example.com/chat"]["id"] == chat["id"]
    assert apps["https://example.com/chat"]["title"] == "Third"
    assert apps["https://example.com/chat"]["created_at"] == chat["created_at"]
    assert apps["https://other.example"]["title"] is None
    assert apps["https://other.example"]["updated_at"] is None


# -- activity -----------------------------------------------------------------------------


async def _utc_plus_14(database_url: str) -> None:
    """PostgreSQL sessions of this database run in UTC+14 from now on."""
    name = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Kiritimati'")
    finally:
        await conn.close()


async def test_activity_is_grouped_by_utc_day(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        await _utc_plus_14(database_url)
    engine = make_engine(database_url)
    await migrate(engine)
    if database_url.startswith("postgresql"):
        async with engine.connect() as conn:
            zone = (await conn.execute(sa.text("SHOW timezone"))).scalar_one()
        assert zone == "Pacific/Kiritimati"
    a, b = "a" * 64, "b" * 64
    late = datetime(2026, 3, 10, 4, 30, tzinfo=timezone(timedelta(hours=5)))  # 23:30 UTC DAY1
    records = [
        gen(1, created_at=DAY1 + timedelta(hours=1), total_cost=0.001),
        gen(2, created_at=late, total_cost=0.002, tokens_reasoning=None),
        gen(3, created_at=DAY2 + timedelta(minutes=30)),
        gen(
            4,
            created_at=DAY1 + timedelta(hours=2),
            api_key_hash=b,
            provider_name="Beta",
            endpoint_tag="beta",
            tokens_prompt=-3,
        ),
        gen(
            5,
            created_at=DAY2 + timedelta(hours=23, minutes=59),
            api_key_hash=b,
            model="acme/other",
            provider_name=None,
            endpoint_tag=None,
            total_cost=0.0,
        ),
        gen(6, created_at=DAY1 - timedelta(seconds=1)),  # the day before
        gen(7, created_at=DAY1 - timedelta(hours=1), total_cost=float("inf")),  # counts 0
    ]
    await GenerationStore(engine).insert_many([r.to_row() for r in records])
    activity = ActivityStore(engine)
    d1, d2 = DAY1.date(), DAY2.date()
    rows = await activity.daily(since=d1, until=d2)
    assert rows == [
        ActivityRow("2026-03-10", "acme/other", "", "", 1, 10, 5, 2, 0, 0.0),
        ActivityRow("2026-03-10", "acme/widget-1", "Alpha", "alpha", 1, 10, 5, 2, 0, 0.001),
        ActivityRow("2026-03-09", "acme/widget-1", "Alpha", "alpha", 2, 20, 10, 2, 0, 0.003),
        ActivityRow("2026-03-09", "acme/widget-1", "Beta", "beta", 1, 0, 5, 2, 0, 0.001),
    ]
    assert rows[2].usage == pytest.approx(0.003)
    assert await activity.daily(since=d1, until=d2, api_key_hash=b) == [rows[0], rows[3]]
    assert await activity.daily(since=d1, until=d2, day=d1) == rows[2:]
    assert await activity.daily(since=d2, until=d2, api_key_hash=a) == [rows[1]]
    assert await activity.daily(since=d1, until=d2, day=d2 + timedelta(days=1)) == []
    assert await activity.daily(since=d2, until=d1) == []
    before = await activity.daily(since=d1 - timedelta(days=1), until=d1 - timedelta(days=1))
    assert [(r.date, r.requests, r.usage) for r in before] == [("2026-03-08", 2, 0.001)]
    await engine.dispose()


async def test_free_requests_since(engine: AsyncEngine) -> None:
    store = GenerationStore(engine)
    records = [
        gen(1, model="acme/widget-1:free", created_at=DAY1 + timedelta(hours=1)),
        gen(2, model="acme/widget-1:free", api_key_hash="b" * 64),
        gen(3, model="acme/widget-1"),
        gen(4, model="acme/widget-1:free", created_at=DAY1 - timedelta(minutes=1)),
    ]
    await store.insert_many([r.to_row() for r in records])
    assert await store.free_requests_today(DAY1) == 2
    assert await store.free_requests_today(DAY1.replace(tzinfo=None)) == 2  # naive: UTC
    # the same instant in another zone
    assert await store.free_requests_today(DAY1.astimezone(timezone(timedelta(hours=-8)))) == 2
    assert await store.free_requests_today(DAY1 - timedelta(hours=1)) == 3
    assert await store.free_requests_today(DAY2) == 0


# -- keys ---------------------------------------------------------------------------------


def key_row(name: str, at: datetime) -> dict[str, Any]:
    return {
        "hash": name * 64,
        "name": name,
        "label": "sk-cr-v1-...",
        "is_management": False,
        "disabled": False,
        "include_byok_in_limit": False,
        "created_at": at,
        "requests_per_minute": 60,
        "tokens_per_minute": None,
        "guardrails": {"allowed_models": ["acme/widget-1"], "zdr": True},
    }


async def test_the_keys_signature_changes_with_every_write(engine: AsyncEngine) -> None:
    keys = KeyStore(engine)
    seen = [await keys.signature()]
    assert await keys.signature() == seen[0]  # stable while nothing changes

    async def changed() -> None:
        now = await keys.signature()
        assert now not in seen
        seen.append(now)

    now = datetime.now(UTC)
    await keys.insert(key_row("a", now))
    await changed()
    await keys.insert(key_row("b", now - timedelta(days=1)))  # an older time: still seen
    await changed()
    await keys.update("a" * 64, {"disabled": True})
    await changed()
    stored = {r["hash"]: r for r in await keys.all()}
    assert stored["a" * 64]["updated_at"] is not None  # set, though the caller did not
    assert stored["a" * 64]["guardrails"] == {"allowed_models": ["acme/widget-1"], "zdr": True}
    assert stored["a" * 64]["requests_per_minute"] == 60
    # an update whose time is older than the newest one is still a change
    await keys.update("b" * 64, {"tokens_per_minute": 1000, "updated_at": now - timedelta(days=9)})
    await changed()
    stored = {r["hash"]: r for r in await keys.all()}
    b = stored["b" * 64]
    assert b["tokens_per_minute"] == 1000
    assert b["updated_at"].replace(tzinfo=UTC) == now - timedelta(days=9)
    await keys.delete("a" * 64)
    await changed()
    await keys.insert(key_row("a", now))  # the same row again
    await changed()
    await keys.update("c" * 64, {"disabled": True})  # no such key: a change is allowed, no error
    seen.append(await keys.signature())
    assert await keys.signature() == seen[-1]


async def test_keys_written_concurrently_are_all_seen(engine: AsyncEngine) -> None:
    """Many writers at once: each write moves the signature on (no two leave it equal)."""
    keys = KeyStore(engine)
    start = await keys.signature()
    now = datetime.now(UTC)
    await asyncio.gather(*(keys.insert(key_row(c, now)) for c in "defgh"))
    middle = await keys.signature()
    assert middle != start and middle[0] - start[0] == 5
    await asyncio.gather(*(keys.update(c * 64, {"disabled": True}) for c in "defgh"))
    assert (await keys.signature())[0] - middle[0] == 5
