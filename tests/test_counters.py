"""Limit counters (`crossroads.limits.counters`, `crossroads.limits.redis_counters`).

The semantics are written once and run over every backend: `LocalCounters`, `RedisCounters`
(Redis at 127.0.0.1:6379 db 5, a random key prefix per test, its keys deleted afterwards),
and `SharedCounters` with and without Redis; a fake clock judges windows and hold expiry
(Redis gets it as the script's `now`; key TTLs in Redis are real seconds). Then concurrency
(100 concurrent admissions against a cap of 10 admit exactly 10, through one client and
through two replicas), and outages against a redis-server of the test's own: killed and
restarted empty, paused and resumed with its data, never reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis.asyncio

from crossroads.limits.counters import (
    Add,
    Check,
    CountersStatus,
    Hold,
    LocalCounters,
    Operation,
    Release,
    Result,
)
from crossroads.limits.redis_counters import RedisCounters, SharedCounters
from harness import dead_port, free_port

REDIS_URL = "redis://127.0.0.1:6379/5"
BIG = 2**62  # beyond a double's 53 bits: sums must stay exact


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """One backend under test, behind the same three calls."""

    name: str
    apply: Callable[[Operation], Awaitable[Result]]
    value: Callable[[str], Awaitable[int | None]]
    ttl: Callable[[str], Awaitable[float | None]]  # seconds the counter is kept, None: always

    async def hold_total(self, holds: str) -> int:
        result = await self.apply(Operation(checks=(Check((), BIG, 0, holds),)))
        return result.values[holds]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextlib.asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[redis.asyncio.Redis, str]]:
    """A client of db 5 and a key prefix of this test's own; its keys are deleted after."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"test:counters:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def local_backend(name: str, counters: LocalCounters, clock: FakeClock) -> Backend:
    async def apply(op: Operation) -> Result:
        return counters.apply(op)

    async def value(counter: str) -> int | None:
        return counters.value(counter)

    async def ttl(counter: str) -> float | None:
        expires = counters.expires(counter)
        return None if expires is None else expires - clock()

    return Backend(name, apply, value, ttl)


def redis_ttl(client: redis.asyncio.Redis, prefix: str) -> Callable[[str], Awaitable[float | None]]:
    async def ttl(counter: str) -> float | None:
        ms = await client.pttl(prefix + counter)
        assert ms != -2, f"{counter} is missing"
        return None if ms == -1 else ms / 1000

    return ttl


LOCAL_KINDS = ("local", "shared-no-url")  # TTLs judged by the fake clock


@pytest.fixture(params=["local", "redis", "shared", "shared-no-url"])
async def backend(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Backend]:
    kind = request.param
    if kind == "local":
        yield local_backend(kind, LocalCounters(clock), clock)
        return
    if kind == "shared-no-url":
        solo = SharedCounters(None, clock=clock, instance="solo")
        await solo.start()
        assert solo.status() == CountersStatus(False, "off", None, 0, None)

        async def solo_value(counter: str) -> int | None:
            return (await solo.values([counter]))[counter]

        yield Backend(kind, solo.apply, solo_value, local_backend(kind, solo.local, clock).ttl)
        await solo.close()
        return
    async with redis_prefix() as (client, prefix):
        if kind == "redis":
            counters = RedisCounters(client, prefix=prefix, clock=clock)

            async def value(counter: str) -> int | None:
                return (await counters.values([counter]))[counter]

            yield Backend(kind, counters.apply, value, redis_ttl(client, prefix))
            return
        shared = SharedCounters(REDIS_URL, clock=clock, instance="a", prefix=prefix)
        await shared.start()
        try:

            async def shared_value(counter: str) -> int | None:
                return (await shared.values([counter]))[counter]

            yield Backend(kind, shared.apply, shared_value, redis_ttl(client, prefix))
            assert shared.status().redis == "ok"  # every operation went to Redis
        finally:
            await shared.close()


# -- semantics, identical for every backend ---------------------------------------------------


async def test_checks_pass_up_to_the_cap_and_then_everything_applies(
    backend: Backend, clock: FakeClock
) -> None:
    op = Operation(
        checks=(Check(("a", "b"), 10, 3, "h"),),
        adds=(Add("a", 3), Add("b", 1)),
        holds=(Hold("h", "t1", 2, clock() + 60),),
    )
    first = await backend.apply(op)
    assert first == Result(True, None, {"a": 0, "b": 0, "h": 0})
    # a=3, b=1, hold 2: 3 + 1 + 2 + 3 = 9 <= 10
    second = await backend.apply(Operation(checks=(Check(("a", "b"), 9, 3, "h"),)))
    assert second == Result(True, None, {"a": 3, "b": 1, "h": 2})
    third = await backend.apply(Operation(checks=(Check(("a", "b"), 8, 3, "h"),)))
    assert third == Result(False, 0, {"a": 3, "b": 1, "h": 2})
    assert await backend.value("a") == 3 and await backend.value("b") == 1


async def test_a_failing_check_changes_nothing_and_the_first_failure_is_named(
    backend: Backend, clock: FakeClock
) -> None:
    expires = clock() + 60
    await backend.apply(Operation(adds=(Add("a", 5),), holds=(Hold("h", "old", 4, expires),)))
    op = Operation(
        checks=(
            Check(("a",), 100, 1),  # passes
            Check(("a",), 5, 1),  # fails first
            Check(("a",), 0, 1, "h"),  # fails too
        ),
        adds=(Add("a", 1), Add("c", 1)),
        holds=(Hold("h", "new", 1, expires),),
        releases=(Release("h", "old"),),
    )
    result = await backend.apply(op)
    assert result == Result(False, 1, {"a": 5, "h": 4})
    assert await backend.value("a") == 5
    assert await backend.value("c") is None
    assert await backend.hold_total("h") == 4  # no new hold, no release


async def test_missing_counters_read_as_their_seed(backend: Backend) -> None:
    checked = await backend.apply(Operation(checks=(Check(("s",), 100, 1),), seeds={"s": 40}))
    assert checked.values == {"s": 40}
    assert await backend.value("s") is None  # a check alone never creates a counter
    refused = await backend.apply(Operation(checks=(Check(("s",), 40, 1),), seeds={"s": 40}))
    assert refused == Result(False, 0, {"s": 40})
    added = await backend.apply(
        Operation(checks=(Check(("s",), 100, 1),), adds=(Add("s", 1, seed=40),))
    )
    assert added.values == {"s": 40}
    assert await backend.value("s") == 41
    # once it exists, seeds are ignored
    again = await backend.apply(Operation(checks=(Check(("s",), 100, 1),), seeds={"s": 0}))
    assert again.values == {"s": 41}
    # `seeds` win over an Add's seed
    both = await backend.apply(Operation(adds=(Add("t", 2, seed=5),), seeds={"t": 7}))
    assert both.passed and await backend.value("t") == 9


async def test_values_are_seen_before_the_operation(backend: Backend, clock: FakeClock) -> None:
    op = Operation(
        checks=(Check(("n",), 10, 1, "h"), Check(("m",), 10, 0)),
        adds=(Add("n", 1), Add("m", 2)),
        holds=(Hold("h", "t", 5, clock() + 30),),
        releases=(Release("other", "x"),),
    )
    assert (await backend.apply(op)).values == {"n": 0, "m": 0, "h": 0, "other": 0}
    again = await backend.apply(Operation(checks=op.checks, adds=op.adds))
    assert again.values == {"n": 1, "m": 2, "h": 5}  # only the hold sets it names


async def test_holds_count_until_released_or_dead(backend: Backend, clock: FakeClock) -> None:
    now = clock()
    await backend.apply(
        Operation(
            holds=(
                Hold("h", "short", 3, now + 10),
                Hold("h", "long", 4, now + 100),
                Hold("h", "gone", 5, now + 100),
            )
        )
    )
    assert await backend.hold_total("h") == 12
    await backend.apply(Operation(releases=(Release("h", "gone"), Release("h", "unknown"))))
    assert await backend.hold_total("h") == 7
    clock.advance(10)  # exactly at `expires`: still live
    assert await backend.hold_total("h") == 7
    clock.advance(0.5)
    assert await backend.hold_total("h") == 4
    result = await backend.apply(Operation(checks=(Check((), 10, 6, "h"),)))
    assert result == Result(True, None, {"h": 4})
    assert not (await backend.apply(Operation(checks=(Check((), 10, 7, "h"),)))).passed
    clock.advance(100)
    assert await backend.hold_total("h") == 0


async def test_a_ticket_placed_again_replaces_itself(backend: Backend, clock: FakeClock) -> None:
    later = clock() + 60
    # tickets whose names look like other members
    await backend.apply(Operation(holds=(Hold("h", "a", 5, later), Hold("h", "a:5", 7, later))))
    assert await backend.hold_total("h") == 12
    await backend.apply(Operation(holds=(Hold("h", "a", 2, later),)))
    assert await backend.hold_total("h") == 9
    await backend.apply(Operation(releases=(Release("h", "a"),)))
    assert await backend.hold_total("h") == 7
    await backend.apply(Operation(releases=(Release("h", "a:5"),)))
    assert await backend.hold_total("h") == 0


async def test_a_counter_is_kept_ttl_seconds_after_each_change(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.apply(Operation(adds=(Add("w", 1, ttl=120), Add("forever", 1))))
    ttl = await backend.ttl("w")
    assert ttl is not None and 119 <= ttl <= 120
    assert await backend.ttl("forever") is None
    clock.advance(30)  # (Redis: TTLs are real seconds)
    await backend.apply(Operation(adds=(Add("w", 1),)))  # no ttl: the expiry stays
    ttl = await backend.ttl("w")
    expected = 90 if backend.name in LOCAL_KINDS else 120
    assert ttl is not None and expected - 1 <= ttl <= expected
    await backend.apply(Operation(adds=(Add("w", 1, ttl=300),)))
    ttl = await backend.ttl("w")
    assert ttl is not None and 299 <= ttl <= 300
    assert await backend.value("w") == 3


async def test_sums_are_exact_beyond_53_bits(backend: Backend, clock: FakeClock) -> None:
    later = clock() + 60
    await backend.apply(
        Operation(
            adds=(Add("big", BIG - 10, seed=3), Add("neg", -(BIG + 1))),
            holds=(Hold("h", "x", BIG // 2 + 1, later), Hold("h", "y", BIG // 2 - 1, later)),
        )
    )
    assert await backend.value("big") == BIG - 7
    assert await backend.value("neg") == -(BIG + 1)
    assert await backend.hold_total("h") == BIG
    # (BIG - 7) + 7 == BIG passes, + 8 does not
    assert (await backend.apply(Operation(checks=(Check(("big",), BIG, 7),)))).passed
    assert (await backend.apply(Operation(checks=(Check(("big",), BIG, 8),)))).failed == 0
    # BIG - 7 - (BIG + 1) + BIG + 8 == BIG exactly
    op = Operation(checks=(Check(("big", "neg"), BIG, 8, "h"),))
    assert await backend.apply(op) == Result(
        True, None, {"big": BIG - 7, "neg": -(BIG + 1), "h": BIG}
    )
    assert (
        await backend.apply(Operation(checks=(Check(("big", "neg"), BIG, 9, "h"),)))
    ).failed == 0
    assert (await backend.apply(Operation(checks=(Check(("neg",), -BIG, 0),)))).passed
    assert not (await backend.apply(Operation(checks=(Check(("neg",), -BIG - 2, 0),)))).passed


async def test_a_counter_named_twice_counts_twice(backend: Backend) -> None:
    op = Operation(
        checks=(Check(("c", "c"), 10, 0), Check(("c",), 10, 0)),
        adds=(Add("c", 2, seed=3), Add("c", 1, seed=100)),
    )
    assert await backend.apply(op) == Result(True, None, {"c": 3})
    assert await backend.value("c") == 6
    assert (await backend.apply(Operation(checks=(Check(("c", "c"), 11, 0),)))).failed == 0


@pytest.mark.parametrize("which", ["local", "shared-no-url"])
async def test_counters_expire_by_the_clock(which: str, clock: FakeClock) -> None:
    if which == "local":
        counters = LocalCounters(clock)
        apply: Callable[[Operation], Awaitable[Result]] = local_backend(
            which, counters, clock
        ).apply
    else:
        shared = SharedCounters(None, clock=clock, instance="solo")
        counters, apply = shared.local, shared.apply
    await apply(Operation(adds=(Add("m", 5, ttl=120),), holds=(Hold("h", "t", 1, clock() + 1),)))
    clock.advance(119.9)
    assert counters.value("m") == 5
    clock.advance(0.1)
    assert counters.value("m") is None
    result = await apply(Operation(checks=(Check(("m",), 10, 0),), seeds={"m": 2}))
    assert result.values == {"m": 2}
    assert counters.names() == [] and counters.hold_total("h") == 0


async def test_local_and_redis_agree_on_random_operations(clock: FakeClock) -> None:
    rng = random.Random(6)
    local = LocalCounters(clock)
    names = ["a", "b", "c", "d"]

    def amount(low: int, high: int) -> int:  # now and then far beyond 53 bits
        return rng.randint(low, high) if rng.random() < 0.7 else rng.randint(-(2**55), 2**55)

    outcomes = set()
    async with redis_prefix() as (client, prefix):
        remote = RedisCounters(client, prefix=prefix, clock=clock)
        for step in range(400):
            checks = tuple(
                Check(
                    tuple(rng.sample(names, rng.randint(0, 3))),
                    amount(-5, 60),
                    amount(-2, 10),
                    rng.choice([None, "h", "g"]),
                )
                for _ in range(rng.randint(0, 3))
            )
            adds = tuple(
                Add(
                    rng.choice(names),
                    amount(-3, 9),
                    rng.choice([None, 600]),
                    rng.randint(0, 9),
                )
                for _ in range(rng.randint(0, 3))
            )
            holds = tuple(
                Hold(
                    rng.choice(["h", "g"]),
                    f"t{rng.randint(0, 9)}",
                    amount(0, 9),
                    clock() + rng.uniform(0, 20),
                )
                for _ in range(rng.randint(0, 2))
            )
            releases = tuple(
                Release(rng.choice(["h", "g"]), f"t{rng.randint(0, 9)}")
                for _ in range(rng.randint(0, 2))
            )
            seeds = {n: rng.randint(0, 9) for n in rng.sample(names, rng.randint(0, 2))}
            op = Operation(checks, adds, holds, releases, seeds)
            expected = local.apply(op)
            assert await remote.apply(op) == expected, (step, op)
            outcomes.add((expected.passed, expected.failed))
            clock.advance(rng.uniform(0, 1.5))
        assert await remote.values(names) == {n: local.value(n) for n in names}
    assert {(True, None), (False, 0), (False, 1), (False, 2)} <= outcomes


# -- concurrency -------------------------------------------------------------------------------


def admission(ticket: str, now: float) -> Operation:
    return Operation(
        checks=(Check(("used",), 10, 1, "inflight"),),
        holds=(Hold("inflight", ticket, 1, now + 60),),
    )


async def test_a_hundred_concurrent_admissions_through_redis_admit_exactly_the_cap(
    clock: FakeClock,
) -> None:
    async with redis_prefix() as (client, prefix):
        counters = RedisCounters(client, prefix=prefix, clock=clock)
        results = await asyncio.gather(
            *(counters.apply(admission(f"t{i}", clock())) for i in range(100))
        )
        assert sum(r.passed for r in results) == 10
        assert await client.zcard(prefix + "inflight") == 10


async def test_two_replicas_admit_exactly_the_cap_together(clock: FakeClock) -> None:
    async with redis_prefix() as (client, prefix):
        a = SharedCounters(REDIS_URL, clock=clock, instance="a", prefix=prefix)
        b = SharedCounters(REDIS_URL, clock=clock, instance="b", prefix=prefix)
        await a.start()
        await b.start()
        try:
            results = await asyncio.gather(
                *((a if i % 2 else b).apply(admission(f"t{i}", clock())) for i in range(100))
            )
            assert sum(r.passed for r in results) == 10
            assert a.status().redis == b.status().redis == "ok"
            assert await client.zcard(prefix + "inflight") == 10
        finally:
            await a.close()
            await b.close()


# -- SharedCounters: the local copy, and outages -------------------------------------------------


async def test_without_a_url_nothing_touches_the_network(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network call without a Redis URL")

    monkeypatch.setattr(redis.asyncio.Redis, "from_url", no_network)
    monkeypatch.setattr(asyncio, "open_connection", no_network)
    solo = SharedCounters(None, clock=clock, instance="solo")
    result = await solo.apply(Operation(checks=(Check(("n",), 1, 1),), adds=(Add("n", 1),)))
    assert result.passed and (await solo.values(["n"])) == {"n": 1}
    assert not (await solo.apply(Operation(checks=(Check(("n",), 1, 1),)))).passed
    await solo.start()
    assert solo.status() == CountersStatus(False, "off", None, 0, None)
    await solo.close()


async def test_replicas_share_counters_and_each_local_copy_follows_redis(clock: FakeClock) -> None:
    async with redis_prefix() as (client, prefix):
        a = SharedCounters(REDIS_URL, clock=clock, instance="a", prefix=prefix)
        b = SharedCounters(REDIS_URL, clock=clock, instance="b", prefix=prefix)
        await a.start()
        await b.start()
        try:
            await b.apply(Operation(adds=(Add("spend", 7, ttl=600),)))
            await b.apply(Operation(holds=(Hold("h", "tb", 2, clock() + 60),)))
            result = await a.apply(
                Operation(checks=(Check(("spend",), 100, 3, "h"),), adds=(Add("spend", 3),))
            )
            assert result == Result(True, None, {"spend": 7, "h": 2})
            assert await a.values(["spend"]) == await b.values(["spend"]) == {"spend": 10}
            # a's copy holds Redis's value (b's spend included), with Redis's expiry
            assert a.local.value("spend") == 10
            expires = a.local.expires("spend")
            assert expires is not None and 599 <= expires - clock() <= 600
            # holds and releases are mirrored; b's copy has not seen a's add yet
            await a.apply(Operation(holds=(Hold("h", "ta", 4, clock() + 60),)))
            assert a.local.hold_total("h") == 4 and b.local.value("spend") == 7
            await a.apply(Operation(releases=(Release("h", "ta"),)))
            assert a.local.hold_total("h") == 0
            assert await client.zcard(prefix + "h") == 1
        finally:
            await a.close()
            await b.close()


async def test_a_counter_redis_lost_restarts_from_the_local_value(clock: FakeClock) -> None:
    async with redis_prefix() as (client, prefix):
        a = SharedCounters(REDIS_URL, clock=clock, instance="a", prefix=prefix)
        await a.start()
        try:
            await a.apply(Operation(adds=(Add("spend", 5, seed=100),)))
            assert await client.get(prefix + "spend") == b"105"
            await client.delete(prefix + "spend")  # Redis lost it
            result = await a.apply(
                Operation(checks=(Check(("spend",), 1000, 1),), seeds={"spend": 0})
            )
            assert result.values == {"spend": 105}  # seeded with the local value
            assert await a.values(["spend"]) == {"spend": 105}  # the local value meanwhile
            await a.apply(Operation(adds=(Add("spend", 1, seed=0),)))
            assert await client.get(prefix + "spend") == b"106"
        finally:
            await a.close()


def test_claims_make_a_replayed_operation_count_once() -> None:
    async def run() -> None:
        async with redis_prefix() as (client, prefix):
            counters = RedisCounters(client, prefix=prefix, clock=FakeClock())
            op = Operation(adds=(Add("n", 3),))
            first = await counters.run(op, claim=("claims", 7))
            assert first.result == Result(True, None, {}) and first.after["n"][0] == 3
            again = await counters.run(op, claim=("claims", 7))
            assert again.result is None and again.after["n"][0] == 3
            await counters.run(op, claim=("claims", 8))
            assert await counters.values(["n"]) == {"n": 6}

    asyncio.run(run())


class RedisProcess:
    """A redis-server of the test's own on a free port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)

    def signal(self, number: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, number)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.kill()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()


def spend_op(clock: FakeClock, i: int) -> Operation:
    """One admission: a request counted, spend added, a hold placed."""
    return Operation(
        checks=(Check(("requests",), 10_000, 1, "holds"),),
        adds=(Add("requests", 1, ttl=600), Add("spend", 7, seed=1000)),
        holds=(Hold("holds", f"t{i}", 3, clock() + 300),),
    )


async def timed(shared: SharedCounters, op: Operation) -> Result:
    started = time.monotonic()
    result = await shared.apply(op)
    assert time.monotonic() - started < 0.6, "an operation waited on Redis too long"
    return result


async def until_shared(shared: SharedCounters, clock: FakeClock) -> None:
    """Let the reconnection run (a second by the clock at a time) until Redis is back."""
    deadline = time.monotonic() + 10
    while shared.status().redis != "ok":
        assert time.monotonic() < deadline, shared.status()
        clock.advance(1.0)
        await asyncio.sleep(0.1)


async def test_a_killed_redis_is_replaced_by_the_local_copy_and_refilled(
    own_redis: RedisProcess, clock: FakeClock
) -> None:
    shared = SharedCounters(own_redis.url, clock=clock, instance="a")
    await shared.start()
    raw = redis.asyncio.Redis.from_url(own_redis.url)
    try:
        for i in range(5):
            assert (await timed(shared, spend_op(clock, i))).passed
        assert await raw.mget("cr:lim:requests", "cr:lim:spend") == [b"5", b"1035"]
        await raw.aclose()
        own_redis.kill()
        for i in range(5, 25):
            assert (await timed(shared, spend_op(clock, i))).passed
        await timed(shared, Operation(releases=(Release("holds", "t7"),)))
        many = tuple(Add(f"c{i}", i, ttl=600) for i in range(1200))  # pushed in 3 batches
        await timed(shared, Operation(adds=many))
        status = shared.status()
        assert status.redis == "unreachable" and status.pending > 0
        assert status.since == clock() and status.error
        assert shared.local.value("requests") == 25
        own_redis.start()  # empty
        await until_shared(shared, clock)
        assert shared.status().pending == 0 and shared.status().error is None
        raw = redis.asyncio.Redis.from_url(own_redis.url)
        values = await raw.mget("cr:lim:requests", "cr:lim:spend")
        assert values == [b"25", b"1175"]  # 1000 + 25 * 7: restarted from the local view
        assert [shared.local.value("requests"), shared.local.value("spend")] == [25, 1175]
        assert 590 <= await raw.ttl("cr:lim:requests") <= 600  # what the local copy had left
        members = await raw.zrange("cr:lim:holds", 0, -1)
        assert sorted(members) == sorted(f"t{i}:3".encode() for i in range(5, 25) if i != 7)
        pushed = await raw.mget([f"cr:lim:c{i}" for i in range(1200)])
        assert pushed == [str(i).encode() for i in range(1200)]
        assert (await timed(shared, spend_op(clock, 99))).passed  # in Redis again
        assert await raw.get("cr:lim:requests") == b"26"
    finally:
        await shared.close()
        await raw.aclose()


@pytest.mark.parametrize("pause", ["sigstop", "debug-sleep"])
async def test_a_paused_redis_keeps_its_data_and_nothing_counts_twice(
    own_redis: RedisProcess, clock: FakeClock, pause: str
) -> None:
    shared = SharedCounters(own_redis.url, clock=clock, instance="a")
    await shared.start()
    raw = redis.asyncio.Redis.from_url(own_redis.url)
    sleeper = redis.asyncio.Redis.from_url(own_redis.url)
    try:
        for i in range(5):
            assert (await timed(shared, spend_op(clock, i))).passed
        # another replica's spend, in Redis only
        await raw.incrby("cr:lim:spend", 100)
        assert (await timed(shared, Operation(checks=(Check(("spend",), 10**6, 0),)))).passed
        assert shared.local.value("spend") == 1135
        if pause == "sigstop":
            own_redis.signal(signal.SIGSTOP)
            sleeping = None
        else:
            sleeping = asyncio.create_task(sleeper.execute_command("DEBUG", "SLEEP", "1.5"))
            await asyncio.sleep(0.1)
        # the first one reaches Redis, times out, and runs when Redis wakes up
        for i in range(5, 15):
            assert (await timed(shared, spend_op(clock, i))).passed
        status = shared.status()
        assert status.redis == "unreachable" and status.pending > 0
        assert shared.local.value("requests") == 15
        if sleeping is None:
            own_redis.signal(signal.SIGCONT)
        else:
            await sleeping
        await until_shared(shared, clock)
        values = await raw.mget("cr:lim:requests", "cr:lim:spend")
        assert values == [b"15", str(1000 + 15 * 7 + 100).encode()]
        assert shared.local.value("requests") == 15
        assert shared.local.value("spend") == 1000 + 15 * 7 + 100
        assert await raw.zcard("cr:lim:holds") == 15
    finally:
        await shared.close()
        await raw.aclose()
        await sleeper.aclose()


async def test_an_unreachable_redis_is_logged_once_a_minute_and_retried_once_a_second(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="crossroads.limits")
    shared = SharedCounters(f"redis://127.0.0.1:{dead_port()}/0", clock=clock, instance="a")
    started = time.monotonic()
    await shared.start()
    assert time.monotonic() - started < 0.6

    def records(level: int) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "crossroads.limits" and r.levelno == level]

    try:
        assert len(records(logging.WARNING)) == 1
        assert "unreachable" in records(logging.WARNING)[0].getMessage()
        for i in range(20):  # the same second: no attempt yet (the first comes a second later)
            assert (await timed(shared, spend_op(clock, i))).passed
        await asyncio.sleep(0.3)
        assert records(logging.DEBUG) == []
        clock.advance(1.0)
        for i in range(20):  # one attempt in this second, however many operations
            assert (await timed(shared, spend_op(clock, i))).passed
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert len(records(logging.DEBUG)) == 1
        for _ in range(50):  # attempts for 50 more seconds: still one warning
            clock.advance(1.0)
            await timed(shared, spend_op(clock, 0))
            await asyncio.sleep(0.02)
        assert len(records(logging.DEBUG)) >= 40
        assert len(records(logging.WARNING)) == 1
        clock.advance(10.0)  # a minute after the first warning
        await timed(shared, spend_op(clock, 0))
        await asyncio.sleep(0.2)
        warnings = records(logging.WARNING)
        assert len(warnings) == 2 and "still unreachable" in warnings[1].getMessage()
        status = shared.status()
        assert status.redis == "unreachable" and status.since == 1_700_000_000.0
        assert status.pending > 0 and status.error
    finally:
        await shared.close()
