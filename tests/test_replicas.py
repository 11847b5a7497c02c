"""Replicas share live statistics and circuits through Redis (`--redis URL`).

Three layers: the message encoding in memory; `ReplicaSync` objects in one process against the
real Redis (db 5, a unique key prefix per test); and real `crossroads serve` processes in front
of the simulators, sharing db 5 (flushed before and after each of those tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from crossroads.replicas import Keys, Message, ReplicaSync
from crossroads.replicas.messages import (
    circuit_value,
    circuits_from_hash,
    decode,
    encode,
    row_field,
    rows_from_hash,
)
from crossroads.replicas.sync import redacted
from crossroads.telemetry.buckets import Bucket, BucketRow
from crossroads.telemetry.circuit import CircuitChange, Circuits, CircuitState
from crossroads.telemetry.sample import AttemptSample, Verdict
from crossroads.telemetry.stats import LiveStats
from harness import Blackhole, Server, Simulator, dead_port, endpoint, free_port, provider

REDIS_URL = "redis://127.0.0.1:6379/5"
ENDPOINT = "acme/trio@alpha"


def sample(verdict: Verdict = Verdict.OK, latency: float = 100.0, **kw: Any) -> AttemptSample:
    return AttemptSample(
        endpoint_id=kw.pop("endpoint_id", ENDPOINT),
        provider="alpha",
        model="acme/trio",
        verdict=verdict,
        latency_ms=latency if verdict is Verdict.OK else None,
        throughput=50.0 if verdict is Verdict.OK else None,
        prompt_tokens=10 if verdict is Verdict.OK else 0,
        completion_tokens=20 if verdict is Verdict.OK else 0,
        **kw,
    )


def bucket_bytes(ok: int, failed: int = 0) -> bytes:
    bucket = Bucket()
    for _ in range(ok):
        bucket.add(sample())
    for _ in range(failed):
        bucket.add(sample(Verdict.FAILED))
    return bucket.to_json()


# -- the message encoding, in memory ----------------------------------------------------------


def test_a_message_survives_the_round_trip_with_any_bytes() -> None:
    rows = [
        BucketRow("a:1", "acme/trio@alpha", "minute", 1_700_000_040, bucket_bytes(3, 1)),
        BucketRow("a:1", "x@y:z", "day", 1_699_920_000, bytes(range(256))),  # every byte
    ]
    changes = [
        CircuitChange("acme/trio@beta", CircuitState.OPEN, 1_700_000_050.25, 10.0),
        CircuitChange("acme/trio@gamma", CircuitState.CLOSED, 0.0, 0.0),
    ]
    data = encode(Message("a:1", rows, changes))
    assert isinstance(data, bytes)
    back = decode(data)
    assert back == Message("a:1", rows, changes)
    assert Bucket.from_json(back.rows[0].data).ok == 3
    assert back.rows[1].data == bytes(range(256))
    assert decode(encode(Message("b:2"))) == Message("b:2", [], [])


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "from": "a", "rows": [], "circuits": []}',  # another format
        b'{"v": 1, "rows": [], "circuits": []}',  # no sender
        b'{"v": 1, "from": "a", "rows": [["e", "week", 0, "{}"]]}',  # unknown grain
        b'{"v": 1, "from": "a", "rows": [["e", "minute", -60, "{}"]]}',
        b'{"v": 1, "from": "a", "rows": [["e", "minute", 60]]}',
        b'{"v": 1, "from": "a", "rows": [["e", "minute", 60, "\\u0100"]]}',  # not latin-1
        b'{"v": 1, "from": "a", "circuits": [["e", "ajar", 1, 1]]}',
        b'{"v": 1, "from": "a", "circuits": [["e", "open", "soon", 1]]}',
    ],
)
def test_unreadable_messages_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_hash_fields_carry_grain_start_and_endpoint() -> None:
    row = BucketRow("b:2", "acme/odd:name@alpha", "hour", 1_700_002_800, b"{}")
    assert row_field(row) == b"hour:1700002800:acme/odd:name@alpha"
    fields = {row_field(row): b"{}", b"week:1:x": b"{}", b"minute:soon:x": b"{}"}
    rows, skipped = rows_from_hash("b:2", fields)
    assert rows == [row] and skipped == 2
    change = CircuitChange("acme/trio@beta", CircuitState.OPEN, 123.5, 20.0)
    changes, skipped = circuits_from_hash(
        {b"acme/trio@beta": circuit_value(change, "b:2"), b"x": b"[1]"}
    )
    assert changes == [change] and skipped == 1


def test_keys_and_redacted_urls() -> None:
    keys = Keys("t1")
    assert (keys.live, keys.channel, keys.circuits) == ("t1:live", "t1:events", "t1:circuits")
    assert keys.rows("host:8080") == "t1:rows:host:8080"
    assert redacted("redis://:hunter2@cache:6380/1") == "redis://***@cache:6380/1"
    assert redacted("redis://user:hunter2@cache/1") == "redis://user:***@cache/1"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"


def test_settings_are_checked() -> None:
    stats, circuits = LiveStats(instance="a"), Circuits()
    with pytest.raises(ValueError):
        ReplicaSync(REDIS_URL, instance="a", stats=stats, circuits=circuits, dead_after=0.1)


# -- ReplicaSync objects against the real Redis ----------------------------------------------


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of its own in db 5; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


class Replica:
    """One replica's statistics, circuits and sync, in this process."""

    def __init__(self, name: str, prefix: str, url: str = REDIS_URL, **kw: Any) -> None:
        clock = kw.get("clock", time.time)
        self.stats = LiveStats(instance=name, clock=clock)
        self.circuits = Circuits(clock=clock)
        self.sync = ReplicaSync(
            url, instance=name, stats=self.stats, circuits=self.circuits, prefix=prefix, **kw
        )


@pytest.fixture
async def replicas(prefix: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[Replica] = []

    async def make(
        name: str, url: str = REDIS_URL, restore: list[BucketRow] | None = None, **kw: Any
    ) -> Replica:
        replica = Replica(name, prefix, url, **kw)
        replica.stats.restore(restore or [])
        await replica.sync.start()
        started.append(replica)
        return replica

    yield make
    for replica in started:
        await replica.sync.stop()


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def test_peers_see_each_others_figures(replicas: Callable[..., Any]) -> None:
    a, b = await replicas("a"), await replicas("b")
    await eventually(lambda: a.sync.status().peers == ("b",) and b.sync.status().peers == ("a",))
    for _ in range(3):
        a.stats.observe(sample(latency=100.0))
    a.stats.observe(sample(Verdict.FAILED))
    await eventually(lambda: b.stats.requests(ENDPOINT, 300) == 4, timeout=1.5)
    assert b.stats.uptime(ENDPOINT, 300) == 75.0
    latency = b.stats.latency(ENDPOINT)
    assert latency is not None and latency["p50"] == pytest.approx(100.0)
    for _ in range(4):
        b.stats.observe(sample(latency=300.0))
    await eventually(lambda: a.stats.requests(ENDPOINT, 300) == 8, timeout=1.5)
    assert a.stats.uptime(ENDPOINT, 1800) == b.stats.uptime(ENDPOINT, 1800) == 87.5
    assert b.stats.requests(ENDPOINT, 86400) == 8  # counted once each, in every grain


async def test_a_circuit_opened_on_one_replica_closes_the_door_on_all(
    replicas: Callable[..., Any],
) -> None:
    a, b = await replicas("a"), await replicas("b")
    await eventually(lambda: b.sync.status().peers == ("a",))
    for _ in range(3):
        a.circuits.observe(sample(Verdict.FAILED))
    assert a.circuits.state(ENDPOINT) is CircuitState.OPEN
    took = await eventually(lambda: b.circuits.state(ENDPOINT) is CircuitState.OPEN)
    assert took < 1.0
    assert not b.circuits.admit(ENDPOINT)
    a.circuits.observe(sample())  # a success closes it, here and there
    await eventually(lambda: b.circuits.state(ENDPOINT) is CircuitState.CLOSED, timeout=1.0)


async def test_a_late_replica_reads_the_hashes_and_open_circuits(
    replicas: Callable[..., Any], prefix: str
) -> None:
    a = await replicas("a")
    for _ in range(5):
        a.stats.observe(sample())
    a.stats.observe(sample(Verdict.FAILED, endpoint_id="acme/trio@beta"))
    for _ in range(3):
        a.circuits.observe(sample(Verdict.FAILED, endpoint_id="acme/trio@gamma"))
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    await eventually(lambda: a.sync.status().connected)
    await asyncio.sleep(0.6)  # a round after the samples
    own = await client.hgetall(f"{prefix}:rows:a")
    assert len(own) == 6  # two endpoints x three grains
    assert 0 < await client.ttl(f"{prefix}:rows:a") <= 10
    c = await replicas("c")  # starts after all of it was published: start() loads it
    assert c.stats.requests(ENDPOINT, 300) == 5
    assert c.stats.uptime("acme/trio@beta", 300) == 0.0
    assert c.circuits.state("acme/trio@gamma") is CircuitState.OPEN
    await a.sync.stop()  # a clean stop leaves the live set and deletes the hash
    assert not await client.exists(f"{prefix}:rows:a")
    assert await client.zscore(f"{prefix}:live", "a") is None
    await eventually(lambda: c.sync.status().peers == ())
    assert c.stats.requests(ENDPOINT, 300) == 5  # a stopped peer's buckets age out, no sooner
    await client.aclose()


async def test_an_archived_peer_counts_once_it_is_live(replicas: Callable[..., Any]) -> None:
    old = BucketRow("a", ENDPOINT, "minute", int(time.time()) // 60 * 60, bucket_bytes(7))
    a = await replicas("a", restore=[old])  # its own rows, from the shared database
    a.stats.observe(sample())
    b = await replicas("b", restore=[old])  # a's rows: b's archive, forgotten as a is live
    assert b.stats.requests(ENDPOINT, 300) in (7, 8)  # a's hash, with or without the last one
    await eventually(lambda: b.stats.requests(ENDPOINT, 300) == 8, timeout=2.0)
    await asyncio.sleep(0.6)
    assert b.stats.requests(ENDPOINT, 300) == 8  # not 15: the archive does not count again


async def test_own_hash_fields_leave_with_their_ring_and_a_lost_hash_is_rewritten(
    replicas: Callable[..., Any], prefix: str
) -> None:
    now = [time.time()]
    a = await replicas("a", clock=lambda: now[0])
    a.stats.observe(sample())
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    key = f"{prefix}:rows:a"

    async def fields() -> set[str]:
        return {name.decode().split(":")[0] for name in await client.hkeys(key)}

    for _ in range(150):
        if await fields() == {"minute", "hour", "day"}:
            break
        await asyncio.sleep(0.02)
    assert await fields() == {"minute", "hour", "day"}
    await client.delete(key)  # as if it expired while this replica stalled
    for _ in range(150):
        if await fields() == {"minute", "hour", "day"}:
            break
        await asyncio.sleep(0.02)
    assert await fields() == {"minute", "hour", "day"}  # written whole again
    now[0] += 3 * 3600  # the minute bucket is past its ring of an hour, the hour one is not
    for _ in range(150):
        if await fields() == {"hour", "day"}:
            break
        await asyncio.sleep(0.02)
    assert await fields() == {"hour", "day"}
    await client.aclose()


async def test_a_dead_redis_never_fails_the_replica(
    replicas: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "crossroads.replicas")
    began = time.monotonic()
    a = await replicas("a", f"redis://127.0.0.1:{dead_port()}/5")
    assert time.monotonic() - began < 0.2  # start() waits for the first attempt only
    a.stats.observe(sample())
    await asyncio.sleep(2.0)  # several attempts
    assert not a.sync.status().connected
    assert a.stats.requests(ENDPOINT, 300) == 1
    warnings = [r for r in caplog.records if r.name == "crossroads.replicas"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per outage
    assert "not shared" in warnings[0].getMessage()
    began = time.monotonic()
    await a.sync.stop()
    assert time.monotonic() - began < 1.0


async def test_a_redis_that_never_answers_delays_the_start_by_a_second_at_most(
    replicas: Callable[..., Any],
) -> None:
    hole = Blackhole()
    try:
        began = time.monotonic()
        a = await replicas("a", f"redis://127.0.0.1:{hole.port}/5")
        assert 0.9 <= time.monotonic() - began < 1.5
        a.stats.observe(sample())  # counting goes on meanwhile
        assert a.stats.requests(ENDPOINT, 300) == 1 and not a.sync.status().connected
        began = time.monotonic()
        await a.sync.stop()
        assert time.monotonic() - began < 2.5  # bounded by the connect timeout
    finally:
        hole.close()


class Proxy:
    """A TCP proxy to Redis that the test can cut and restore (Redis itself stays up)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.close()
        await self.server.wait_closed()
        self.server = None

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self.links |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_after_an_outage_a_replica_reconnects_and_republishes_everything(
    replicas: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "crossroads.replicas")
    proxy = Proxy()
    await proxy.open()
    a = await replicas("a", f"redis://127.0.0.1:{proxy.port}/5")
    b = await replicas("b")
    await eventually(lambda: b.sync.status().peers == ("a",))
    a.stats.observe(sample())
    await eventually(lambda: b.stats.requests(ENDPOINT, 300) == 1)
    await proxy.cut()
    await eventually(lambda: not a.sync.status().connected)
    for _ in range(4):  # counted during the outage: nothing waits for Redis
        a.stats.observe(sample())
    for _ in range(3):
        a.circuits.observe(sample(Verdict.FAILED, endpoint_id="acme/trio@beta"))
    await asyncio.sleep(1.0)
    assert b.stats.requests(ENDPOINT, 300) == 1
    await proxy.open()
    await eventually(lambda: b.stats.requests(ENDPOINT, 300) == 5, timeout=8.0)
    assert b.circuits.state("acme/trio@beta") is CircuitState.OPEN  # kept, sent on reconnect
    await eventually(lambda: a.sync.status().connected)
    messages = [r.getMessage() for r in caplog.records if r.name == "crossroads.replicas"]
    assert len(messages) == 2, messages  # the outage, once, and its end
    assert "not shared" in messages[0] and "is back" in messages[1]
    await proxy.cut()


# -- real `crossroads serve` processes sharing Redis -------------------------------------------

MODEL = "acme/duo"
CHEAPEST_FIRST = {"provider": {"sort": "price"}}  # cheap first, then pricey


@pytest.fixture(scope="module")
def duo() -> Iterator[dict[str, Simulator]]:
    """Two simulated providers of their own (these tests make them fail)."""
    started = {name: Simulator(name) for name in ("cheap", "pricey")}
    yield started
    for sim in started.values():
        sim.stop()


@pytest.fixture
def db5(duo: dict[str, Simulator]) -> Iterator[None]:
    """An empty db 5, and healthy simulators, before and after each test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield
    for sim in duo.values():
        sim.reset()
    client.flushdb()
    client.close()


@pytest.fixture
def serve(duo: dict[str, Simulator], tmp_path: Path, db5: None) -> Iterator[Callable[..., Server]]:
    """Replicas with the same config, each its own port and data folder."""
    config = {
        "providers": [provider("cheap", duo["cheap"]), provider("pricey", duo["pricey"])],
        "models": [
            {
                "id": MODEL,
                "name": "Acme: Duo",
                "endpoints": [endpoint("cheap", 1, 1), endpoint("pricey", 5, 5)],
            }
        ],
    }
    servers: list[Server] = []

    def start(name: str, *args: str, redis_url: str = REDIS_URL, **env: str) -> Server:
        """A replica; `env`: CROSSROADS_* settings of its own (e.g. INSTANCE_ID="a")."""
        environment = {f"CROSSROADS_{k}": v for k, v in env.items()}
        server = Server(tmp_path / name, config, "--redis", redis_url, *args, env=environment)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def figures(server: Server, provider_name: str) -> dict[str, Any]:
    r = server.get(f"/models/{MODEL}/endpoints")
    r.raise_for_status()
    found = [e for e in r.json()["data"]["endpoints"] if e["provider_name"] == provider_name]
    assert len(found) == 1
    return found[0]


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - began


def ask(server: Server) -> dict[str, Any]:
    """One chat request, cheapest endpoint first; its generation record."""
    r = server.chat(MODEL, **CHEAPEST_FIRST)
    assert r.status_code == 200, r.text
    return server.generation(r.json()["id"])


def test_figures_of_traffic_sent_to_one_replica_show_on_the_others(
    serve: Callable[..., Server], duo: dict[str, Simulator]
) -> None:
    a, b = serve("a"), serve("b")
    assert figures(b, "Cheap")["uptime_last_5m"] is None
    duo["cheap"].configure(latency_ms=200)
    for _ in range(4):
        assert ask(a)["provider_name"] == "Cheap"
    wait_for(lambda: figures(b, "Cheap")["uptime_last_5m"] == 100.0, timeout=2.0)
    latency = figures(b, "Cheap")["latency_last_30m"]
    assert latency is not None and 190 <= latency["p50"] <= 260  # 200 ms injected, + overhead
    assert figures(b, "Pricey")["uptime_last_5m"] is None  # never tried
    duo["cheap"].configure(fail_rate=1.0)  # one failed attempt, counted on b only
    assert ask(b)["provider_name"] == "Pricey"
    for server in (a, b):  # 4 ok from a, 1 failure from b: counted from both
        wait_for(lambda s=server: figures(s, "Cheap")["uptime_last_5m"] == 80.0, timeout=2.0)
        assert figures(server, "Pricey")["uptime_last_5m"] == 100.0
    c = serve("c")  # starts later: reads what a and b published
    assert figures(c, "Cheap")["uptime_last_5m"] == 80.0
    own = figures(a, "Cheap")["latency_last_30m"]  # all of a's samples, here and there
    assert own is not None and 190 <= own["p50"] <= 260
    assert figures(b, "Cheap")["latency_last_30m"] == own
    assert figures(c, "Cheap")["latency_last_30m"] == own


def test_a_circuit_that_opens_on_one_replica_is_avoided_by_the_others_within_a_second(
    serve: Callable[..., Server], duo: dict[str, Simulator]
) -> None:
    a, b = serve("a"), serve("b")
    assert ask(b)["provider_name"] == "Cheap"  # healthy: the cheap endpoint first, on b too
    duo["cheap"].configure(fail_rate=1.0)  # hard down
    for _ in range(3):  # three failed attempts, all on a: its circuit opens
        record = ask(a)
        assert record["provider_name"] == "Pricey"
        assert [x["provider_name"] for x in record["provider_responses"]][0] == "Cheap"
    time.sleep(1.0)
    tried = duo["cheap"].state()["counters"]["requests"]
    record = ask(b)  # b never saw cheap fail, and does not try it
    assert record["provider_name"] == "Pricey"
    assert [x["provider_name"] for x in record["provider_responses"]] == ["Pricey"]
    assert duo["cheap"].state()["counters"]["requests"] == tried


def test_a_replica_whose_redis_is_gone_starts_and_serves(
    serve: Callable[..., Server],
) -> None:
    a = serve("a", redis_url=f"redis://127.0.0.1:{dead_port()}/5")
    for _ in range(3):
        assert ask(a)["provider_name"] == "Cheap"
    assert figures(a, "Cheap")["uptime_last_5m"] == 100.0  # its own figures still count
    time.sleep(1.5)  # several reconnection attempts
    assert a.log().count("are not shared until it is back") == 1, a.log()


@pytest.mark.postgres
def test_with_a_postgres_url_a_returning_replica_counts_once(
    serve: Callable[..., Server], duo: dict[str, Simulator], postgres_url: str
) -> None:
    """Each replica folds its buckets into the shared database; one that starts reads the
    others' rows as an archive, and forgets a peer's archive once that peer is live (it
    shares those buckets itself): 3 ok + 1 failure from a, 1 failure from b make 60 %
    everywhere, where counting a's rows twice would make 66.67 %."""
    flags = ("--database", postgres_url)
    a = serve("a1", *flags, INSTANCE_ID="replica-a", STATS_FLUSH_INTERVAL_SECONDS="0.5")
    for _ in range(3):
        assert ask(a)["provider_name"] == "Cheap"
    duo["cheap"].configure(fail_rate=1.0)
    assert ask(a)["provider_name"] == "Pricey"
    a.stop()  # folds its last buckets into the database; leaves the live set
    b = serve("b", *flags, INSTANCE_ID="replica-b", STATS_FLUSH_INTERVAL_SECONDS="0.5")
    assert figures(b, "Cheap")["uptime_last_5m"] == 75.0  # a's rows: b's archive
    assert ask(b)["provider_name"] == "Pricey"  # one more failure, b's own
    assert figures(b, "Cheap")["uptime_last_5m"] == 60.0
    time.sleep(1.0)  # b's buckets reach the database
    again = serve("a2", *flags, INSTANCE_ID="replica-a", STATS_FLUSH_INTERVAL_SECONDS="0.5")
    assert figures(again, "Cheap")["uptime_last_5m"] == 60.0  # own rows back, b's as peer
    time.sleep(1.5)  # a few rounds: a's republished rows replace b's archive of them
    assert figures(b, "Cheap")["uptime_last_5m"] == 60.0
    assert figures(again, "Cheap")["uptime_last_5m"] == 60.0
