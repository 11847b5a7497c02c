"""Durable statistics: usage rollups kept from the records written through a real server,
and live endpoint statistics folded into the database and reloaded at start, on SQLite
and on PostgreSQL (the `postgres` marker, `CROSSROADS_TEST_POSTGRES_URL`).

Each server test runs its own `crossroads serve` in front of the simulators, with the
statistics folded every 0.2 s and a fixed instance name, and restarts it on the same data
folder (and database)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import shared_config
from crossroads.schema.generation import GenerationRecord
from crossroads.telemetry.buckets import BucketRow
from crossroads.telemetry.folding import StatsFolder, ring_cutoffs
from crossroads.telemetry.sample import AttemptSample, Verdict
from crossroads.telemetry.stats import LiveStats
from harness import HTTP, Server, Simulator

ENV = {"CROSSROADS_STATS_FLUSH_INTERVAL_SECONDS": "0.2", "CROSSROADS_INSTANCE_ID": "replica-a"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_args(request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    """The server's database flags: the data folder's SQLite, or a fresh PostgreSQL."""
    if request.param == "sqlite":
        yield ()
        return
    yield ("--database", request.getfixturevalue("postgres_url"))


def start(tmp: Path, sims: dict[str, Simulator], args: tuple[str, ...], **env: str) -> Server:
    return Server(tmp, shared_config(sims), *args, env={**ENV, **env})


def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """`check()`'s first truthy value, polled; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {check}")
        time.sleep(0.1)


def public(srv: Server, path: str) -> Any:
    """A /api/v1/stats or /models read, without a key (they are public)."""
    r = HTTP.get(srv.url("/api/v1" + path))
    assert r.status_code == 200, r.text
    return r.json()["data"]


# -- usage rollups ------------------------------------------------------------------------

# (model, headers) of the requests sent; the simulator reports reasoning tokens
TRAFFIC = [
    ("acme/widget-1", {"X-Title": "Widget app"}),
    ("acme/widget-1", {"X-Title": "Widget app"}),
    ("acme/widget-1", {"HTTP-Referer": "https://ref.example", "X-Title": "ignored"}),
    ("acme/widget-1", {}),
    ("acme/open", {"HTTP-Referer": "https://ref.example"}),
    ("acme/open", {"HTTP-Referer": "https://ref.example"}),
    ("acme/open", {"HTTP-Referer": "https://ref.example"}),
    ("acme/open", {}),
    ("acme/open", {}),
]
AMOUNTS = ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cost")


def send(srv: Server) -> list[dict[str, Any]]:
    """The traffic, each request's /generation record."""
    records = []
    for n, (model, headers) in enumerate(TRAFFIC):
        body = {"model": model, "messages": [{"role": "user", "content": "count " * (n + 1)}]}
        r = srv.post("/chat/completions", body, headers=headers)
        assert r.status_code == 200, r.text
        records.append(srv.generation(r.json()["id"]))
    return records


def add(sums: dict[Any, dict[str, Any]], key: Any, record: dict[str, Any]) -> None:
    usage = sums.setdefault(key, dict.fromkeys(AMOUNTS, 0))
    usage["requests"] += 1
    usage["prompt_tokens"] += record["tokens_prompt"]
    usage["completion_tokens"] += record["tokens_completion"]
    usage["reasoning_tokens"] += record["native_tokens_reasoning"] or 0
    usage["cost"] += record["total_cost"]


def expected(records: list[dict[str, Any]]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The sums per model, and per (app, model), from the /generation records."""
    by_model: dict[Any, dict[str, Any]] = {}
    by_app: dict[Any, dict[str, Any]] = {}
    for record in records:
        add(by_model, record["model"], record)
        app = record["http_referer"] or record["app_title"] or ""
        add(by_app, (app, record["model"]), record)
    for sums in (*by_model.values(), *by_app.values()):
        sums["total_tokens"] = sums["prompt_tokens"] + sums["completion_tokens"]
        sums["cost"] = pytest.approx(sums["cost"])
    return by_model, by_app


def today_of(srv: Server, model: str) -> dict[str, Any]:
    days = public(srv, f"/stats/models/{model}/daily?days=2")["days"]
    assert [d["date"] for d in days] == [
        (datetime.now(UTC).date() - timedelta(days=1)).isoformat(),
        datetime.now(UTC).date().isoformat(),
    ]
    today: dict[str, Any] = days[-1]
    del today["date"]
    return today


def replay(data: Path, records: list[tuple[str, str]]) -> None:
    """A journal segment left by a dead process, holding records (id, model) of 1000 + 1000
    tokens and 1 USD each."""
    orphan = data / "journal" / "4242-deadbeef"
    orphan.mkdir(parents=True)
    rows = []
    for generation_id, model in records:
        row = GenerationRecord(
            id=generation_id,
            created_at=datetime.now(UTC),
            model=model,
            tokens_prompt=1000,
            tokens_completion=1000,
            total_cost=1.0,
        ).to_row()
        rows.append(orjson.dumps(row) + b"\n")
    (orphan / "00000001.jsonl").write_bytes(b"".join(rows))


def test_rollups_sum_the_records_and_a_replay_counts_once(
    sims: dict[str, Simulator], tmp_path: Path, database_args: tuple[str, ...]
) -> None:
    sims["alpha"].configure(usage={"completion_tokens_details": {"reasoning_tokens": 2}})
    srv = start(tmp_path, sims, database_args)
    try:
        records = send(srv)
        by_model, by_app = expected(records)
        assert by_model["acme/open"]["total_tokens"] != by_model["acme/widget-1"]["total_tokens"]
        assert by_model["acme/widget-1"]["reasoning_tokens"] == 8
        for model, sums in by_model.items():
            count = sums["requests"]
            until(lambda m=model, n=count: today_of(srv, m)["requests"] == n)
            assert today_of(srv, model) == sums
        month = datetime.now(UTC).strftime("%Y-%m")
        apps = public(srv, f"/stats/apps?month={month}")
        assert apps["month"] == month and apps["model"] is None
        found = {(row.pop("app"), row.pop("model")): row for row in apps["apps"]}
        assert found == by_app
        assert set(found) == {
            ("Widget app", "acme/widget-1"),
            ("https://ref.example", "acme/widget-1"),
            ("", "acme/widget-1"),
            ("https://ref.example", "acme/open"),
            ("", "acme/open"),
        }
        only = public(srv, f"/stats/apps?month={month}&model=acme/open")["apps"]
        assert {(row["app"], row["requests"]) for row in only} == {
            ("https://ref.example", 3),
            ("", 2),
        }
        ranked = sorted(by_model, key=lambda m: -by_model[m]["total_tokens"])
        week = public(srv, "/stats/rankings")
        monday = datetime.now(UTC).date() - timedelta(days=datetime.now(UTC).weekday())
        assert week["week"] == monday.isoformat()
        assert [(m.pop("rank"), m.pop("model")) for m in week["models"]] == [
            (1, ranked[0]),
            (2, ranked[1]),
        ]
        assert week["models"] == [by_model[m] for m in ranked]
        # the popularity sorts of /models, refreshed in the background
        for sort in ("most-popular", "top-weekly"):
            until(lambda s=sort: [m["id"] for m in public(srv, f"/models?sort={s}")[:2]] == ranked)
        data = tmp_path / "data"
    finally:
        srv.stop()
    # the records written already, replayed from a journal, and one new record
    replay(data, [*((r["id"], r["model"]) for r in records), ("gen-replayed", "acme/widget-1")])
    again = start(tmp_path, sims, database_args)
    try:
        widget = dict(by_model["acme/widget-1"])
        widget["requests"] += 1
        for name in ("prompt_tokens", "completion_tokens"):
            widget[name] += 1000
        widget["total_tokens"] += 2000
        widget["cost"] = pytest.approx(widget["cost"].expected + 1.0)
        assert today_of(again, "acme/widget-1") == widget
        assert today_of(again, "acme/open") == by_model["acme/open"]
    finally:
        again.stop()


# -- endpoint statistics across restarts --------------------------------------------------

FIGURES = ("latency", "throughput", "uptime", "requests", "uptime_daily", "effective_price")


def figures(srv: Server, model: str) -> dict[str, Any]:
    """What /stats/endpoints and /models/.../endpoints show of the model's only endpoint."""
    (endpoint,) = public(srv, f"/stats/endpoints/{model}")["endpoints"]
    (listed,) = public(srv, f"/models/{model}/endpoints")["endpoints"]
    shown = {name: endpoint[name] for name in FIGURES}
    for name in ("uptime_last_5m", "uptime_last_30m", "uptime_last_1d", "latency_last_30m"):
        shown[name] = listed[name]
    return shown


def test_endpoint_statistics_survive_restarts(
    sims: dict[str, Simulator], tmp_path: Path, database_args: tuple[str, ...]
) -> None:
    model = "acme/widget-1"  # alpha only
    srv = start(tmp_path, sims, database_args)
    try:
        sims["alpha"].configure(latency_ms=40)
        for _ in range(12):
            assert srv.chat(model).status_code == 200
        sims["alpha"].configure(fail_rate=1.0)
        for _ in range(3):
            assert srv.chat(model).status_code >= 500
        before = figures(srv, model)
        assert before["uptime"]["5m"] == pytest.approx(80.0) and before["requests"]["1d"] == 15
        assert 40 <= before["latency"]["5m"]["p50"] < 200
        assert before["uptime_daily"][-1]["requests"] == 15
        assert before["effective_price"]["completion_tokens"] > 0
        time.sleep(1.0)  # folded by the background task, not only at shutdown
        srv.proc.kill()  # no shutdown: the last fold is the background task's
    finally:
        srv.stop()
    again = start(tmp_path, sims, database_args)
    try:
        assert figures(again, model) == before
        sims["alpha"].reset()
        assert again.chat(model).status_code == 200  # counted after the restore
        after = figures(again, model)
        assert after["requests"]["1d"] == 16 and after["uptime"]["1d"] == pytest.approx(81.25)
    finally:
        again.stop()  # the final fold
    # another instance name: the stored rows are another replica's, and count all the same
    other = start(tmp_path, sims, database_args, CROSSROADS_INSTANCE_ID="replica-b")
    try:
        assert figures(other, model) == after
    finally:
        other.stop()


# -- the folder, on its own ---------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    """A BucketSink in memory that can be told to fail."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, int], BucketRow] = {}
        self.down = False
        self.saves = 0
        self.pruned: list[dict[str, int]] = []

    async def save(self, rows: list[BucketRow]) -> None:
        self.saves += 1
        if self.down:
            raise ConnectionError("database is down")
        for r in rows:
            self.rows[(r.instance, r.endpoint_id, r.grain, r.start)] = r

    async def load(self, since: dict[str, int]) -> list[BucketRow]:
        return [r for r in self.rows.values() if r.start >= since[r.grain]]

    async def prune(self, before: dict[str, int]) -> int:
        self.pruned.append(before)
        gone = [k for k, r in self.rows.items() if r.start < before[r.grain]]
        for key in gone:
            del self.rows[key]
        return len(gone)


def sample(verdict: Verdict, latency: float = 100.0) -> AttemptSample:
    return AttemptSample(
        endpoint_id="acme/trio@alpha",
        provider="alpha",
        model="acme/trio",
        verdict=verdict,
        latency_ms=latency,
        throughput=50.0,
        prompt_tokens=10,
        completion_tokens=20,
        prompt_cost=1e-5,
        completion_cost=4e-5,
        retry_after=None,
    )


async def test_the_folder_keeps_what_the_database_refused_and_saves_it_later() -> None:
    clock = Clock(datetime(2026, 3, 9, 12, 0, 30, tzinfo=UTC).timestamp())
    stats = LiveStats(instance="a", clock=clock)
    store = MemoryStore()
    folder = StatsFolder(stats, store, interval=3600, prune_every=60, clock=clock)
    stats.observe(sample(Verdict.OK))
    store.down = True
    assert not await folder.fold()
    assert store.rows == {} and folder.failures == 1
    stats.observe(sample(Verdict.FAILED))  # the same buckets change again meanwhile
    clock.now += 60
    stats.observe(sample(Verdict.OK, latency=300.0))  # and a new minute begins
    assert not await folder.fold()
    store.down = False
    assert await folder.fold()
    # 2 minutes, 1 hour, 1 day; each stored as it is now
    assert sorted((r.grain, r.start % 3600) for r in store.rows.values()) == [
        ("day", 43200 % 3600),
        ("hour", 0),
        ("minute", 0),
        ("minute", 60),
    ]
    assert folder.saved == 4
    assert await folder.fold() and store.saves == 3  # nothing changed: nothing sent
    # a restart: a new LiveStats of the same instance gets the same figures
    restarted = LiveStats(instance="a", clock=clock)
    assert await StatsFolder(restarted, store, clock=clock).load() == 4
    assert restarted.uptime("acme/trio@alpha", 300) == stats.uptime("acme/trio@alpha", 300)
    assert restarted.uptime("acme/trio@alpha", 300) == pytest.approx(66.67)
    assert restarted.latency("acme/trio@alpha", 300) == stats.latency("acme/trio@alpha", 300)
    assert restarted.requests("acme/trio@alpha", 86400) == 3


async def test_the_folder_saves_at_close_and_prunes_what_left_its_ring() -> None:
    clock = Clock(datetime(2026, 3, 9, 12, 0, 30, tzinfo=UTC).timestamp())
    stats = LiveStats(instance="a", clock=clock)
    store = MemoryStore()
    old = BucketRow("gone", "acme/trio@alpha", "minute", int(clock.now) - 7200, b"{}")
    store.rows[(old.instance, old.endpoint_id, old.grain, old.start)] = old
    folder = StatsFolder(stats, store, interval=3600, clock=clock)
    assert await folder.load() == 0  # pruned first
    assert store.pruned == [ring_cutoffs(clock.now)] and store.rows == {}
    folder.start()
    stats.observe(sample(Verdict.OK))
    await folder.close()  # the task never ran a round: the final fold saves it
    assert len(store.rows) == 3
    cutoffs = ring_cutoffs(clock.now)
    minute = datetime(2026, 3, 9, 12, 0, tzinfo=UTC).timestamp()
    assert cutoffs["minute"] == minute - 59 * 60  # 60 minutes in the ring, this one included
    assert cutoffs["day"] == datetime(2026, 2, 7, tzinfo=UTC).timestamp()  # 31 days


async def test_a_long_outage_keeps_only_what_is_still_in_its_ring() -> None:
    clock = Clock(datetime(2026, 3, 9, 12, 0, 30, tzinfo=UTC).timestamp())
    stats = LiveStats(instance="a", clock=clock)
    store = MemoryStore()
    store.down = True
    folder = StatsFolder(stats, store, interval=3600, clock=clock)
    stats.observe(sample(Verdict.OK))
    assert not await folder.fold()
    clock.now += 2 * 3600  # the minute bucket has left its ring; the hour and day have not
    assert not await folder.fold()
    store.down = False
    assert await folder.fold()
    assert sorted(r.grain for r in store.rows.values()) == ["day", "hour"]
