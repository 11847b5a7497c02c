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
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis.asyncio

from crossroads.limits.counters import (
    PRUNE_LIMIT,
    Add,
    Check,
    CountersStatus,
    Floor,
    Hold,
    LocalCounters,
    Operation,
    Release,
    Result,
)
from crossroads.limits.redis_counters import RedisCounters, SharedCounters, hold_keys
from harness import RedisProcess, dead_port

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
    """One backend under test, behind the same three calls; `redis`: its client and key
    prefix when it is in Redis."""

    name: str
    apply: Callable[[Operation], Awaitable[Result]]
    value: Callable[[str], Awaitable[int | None]]
    ttl: Callable[[str], Awaitable[float | None]]  # seconds the counter is kept, None: always
    redis: tuple[redis.asyncio.Redis, str] | None = None

    async def hold_total(self, holds: str) -> int:
        result = await self.apply(
            Operation(checks=(Check(counters=(), cap=BIG, amount=0, holds=holds),))
        )
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
        assert solo.status() == CountersStatus(
            shared=False, redis="off", since=None, pending=0, error=None
        )

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

            yield Backend(kind, counters.apply, value, redis_ttl(client, prefix), (client, prefix))
            return
        shared = SharedCounters(REDIS_URL, clock=clock, instance="a", prefix=prefix)
        await shared.start()
        try:

            async def shared_value(counter: str) -> int | None:
                return (await shared.values([counter]))[counter]

            yield Backend(
                kind, shared.apply, shared_value, redis_ttl(client, prefix), (client, prefix)
            )
            assert shared.status().redis == "ok"  # every operation went to Redis
        finally:
            await shared.close()


# -- semantics, identical for every backend ---------------------------------------------------


async def test_checks_pass_up_to_the_cap_and_then_everything_applies(
    backend: Backend, clock: FakeClock
) -> None:
    op = Operation(
        checks=(Check(counters=("a", "b"), cap=10, amount=3, holds="h"),),
        adds=(Add(counter="a", amount=3), Add(counter="b", amount=1)),
        holds=(Hold(holds="h", ticket="t1", amount=2, expires=clock() + 60),),
    )
    first = await backend.apply(op)
    assert first == Result(passed=True, failed=None, values={"a": 0, "b": 0, "h": 0})
    # a=3, b=1, hold 2: 3 + 1 + 2 + 3 = 9 <= 10
    second = await backend.apply(
        Operation(checks=(Check(counters=("a", "b"), cap=9, amount=3, holds="h"),))
    )
    assert second == Result(passed=True, failed=None, values={"a": 3, "b": 1, "h": 2})
    third = await backend.apply(
        Operation(checks=(Check(counters=("a", "b"), cap=8, amount=3, holds="h"),))
    )
    assert third == Result(passed=False, failed=0, values={"a": 3, "b": 1, "h": 2})
    assert await backend.value("a") == 3 and await backend.value("b") == 1


async def test_a_failing_check_changes_nothing_and_the_first_failure_is_named(
    backend: Backend, clock: FakeClock
) -> None:
    expires = clock() + 60
    await backend.apply(
        Operation(
            adds=(Add(counter="a", amount=5),),
            holds=(Hold(holds="h", ticket="old", amount=4, expires=expires),),
        )
    )
    op = Operation(
        checks=(
            Check(counters=("a",), cap=100, amount=1),  # passes
            Check(counters=("a",), cap=5, amount=1),  # fails first
            Check(counters=("a",), cap=0, amount=1, holds="h"),  # fails too
        ),
        adds=(Add(counter="a", amount=1), Add(counter="c", amount=1)),
        holds=(Hold(holds="h", ticket="new", amount=1, expires=expires),),
        releases=(Release(holds="h", ticket="old"),),
    )
    result = await backend.apply(op)
    assert result == Result(passed=False, failed=1, values={"a": 5, "h": 4})
    assert await backend.value("a") == 5
    assert await backend.value("c") is None
    assert await backend.hold_total("h") == 4  # no new hold, no release


async def test_missing_counters_read_as_their_seed(backend: Backend) -> None:
    checked = await backend.apply(
        Operation(checks=(Check(counters=("s",), cap=100, amount=1),), seeds={"s": 40})
    )
    assert checked.values == {"s": 40}
    assert await backend.value("s") is None  # a check alone never creates a counter
    refused = await backend.apply(
        Operation(checks=(Check(counters=("s",), cap=40, amount=1),), seeds={"s": 40})
    )
    assert refused == Result(passed=False, failed=0, values={"s": 40})
    added = await backend.apply(
        Operation(
            checks=(Check(counters=("s",), cap=100, amount=1),),
            adds=(Add(counter="s", amount=1, seed=40),),
        )
    )
    assert added.values == {"s": 40}
    assert await backend.value("s") == 41
    # once it exists, seeds are ignored
    again = await backend.apply(
        Operation(checks=(Check(counters=("s",), cap=100, amount=1),), seeds={"s": 0})
    )
    assert again.values == {"s": 41}
    # `seeds` win over an Add's seed
    both = await backend.apply(
        Operation(adds=(Add(counter="t", amount=2, seed=5),), seeds={"t": 7})
    )
    assert both.passed and await backend.value("t") == 9


async def test_values_are_seen_before_the_operation(backend: Backend, clock: FakeClock) -> None:
    op = Operation(
        checks=(
            Check(counters=("n",), cap=10, amount=1, holds="h"),
            Check(counters=("m",), cap=10, amount=0),
        ),
        adds=(Add(counter="n", amount=1), Add(counter="m", amount=2)),
        holds=(Hold(holds="h", ticket="t", amount=5, expires=clock() + 30),),
        releases=(Release(holds="other", ticket="x"),),
    )
    assert (await backend.apply(op)).values == {"n": 0, "m": 0, "h": 0, "other": 0}
    again = await backend.apply(Operation(checks=op.checks, adds=op.adds))
    assert again.values == {"n": 1, "m": 2, "h": 5}  # only the hold sets it names


async def test_holds_count_until_released_or_dead(backend: Backend, clock: FakeClock) -> None:
    now = clock()
    await backend.apply(
        Operation(
            holds=(
                Hold(holds="h", ticket="short", amount=3, expires=now + 10),
                Hold(holds="h", ticket="long", amount=4, expires=now + 100),
                Hold(holds="h", ticket="gone", amount=5, expires=now + 100),
            )
        )
    )
    assert await backend.hold_total("h") == 12
    await backend.apply(
        Operation(
            releases=(Release(holds="h", ticket="gone"), Release(holds="h", ticket="unknown"))
        )
    )
    assert await backend.hold_total("h") == 7
    clock.advance(10)  # exactly at `expires`: still live
    assert await backend.hold_total("h") == 7
    clock.advance(0.5)
    assert await backend.hold_total("h") == 4
    result = await backend.apply(
        Operation(checks=(Check(counters=(), cap=10, amount=6, holds="h"),))
    )
    assert result == Result(passed=True, failed=None, values={"h": 4})
    assert not (
        await backend.apply(Operation(checks=(Check(counters=(), cap=10, amount=7, holds="h"),)))
    ).passed
    clock.advance(100)
    assert await backend.hold_total("h") == 0


async def test_a_ticket_placed_again_replaces_itself(backend: Backend, clock: FakeClock) -> None:
    later = clock() + 60
    # tickets whose names look like other members
    await backend.apply(
        Operation(
            holds=(
                Hold(holds="h", ticket="a", amount=5, expires=later),
                Hold(holds="h", ticket="a:5", amount=7, expires=later),
            )
        )
    )
    assert await backend.hold_total("h") == 12
    await backend.apply(Operation(holds=(Hold(holds="h", ticket="a", amount=2, expires=later),)))
    assert await backend.hold_total("h") == 9
    await backend.apply(Operation(releases=(Release(holds="h", ticket="a"),)))
    assert await backend.hold_total("h") == 7
    await backend.apply(Operation(releases=(Release(holds="h", ticket="a:5"),)))
    assert await backend.hold_total("h") == 0


async def test_dead_holds_are_pruned_oldest_first_a_bounded_number_at_a_time(
    backend: Backend, clock: FakeClock
) -> None:
    assert PRUNE_LIMIT == 100
    now = clock()
    dead = tuple(
        Hold(holds="h", ticket=f"d{i}", amount=i + 1, expires=now + 1 + i / 1000)
        for i in range(250)
    )
    live = Hold(holds="h", ticket="live", amount=10**6, expires=now + 1000)
    await backend.apply(Operation(holds=(*dead[::-1], live)))  # placed newest first
    clock.advance(2)  # every "d" hold is dead

    def left(first: int) -> int:  # the dead holds d{first}.. still counted, plus the live one
        return 10**6 + sum(range(first + 1, 251))

    # a failing check prunes too: PRUNE_LIMIT (100) dead holds per operation, oldest first
    refused = await backend.apply(
        Operation(checks=(Check(counters=(), cap=0, amount=1, holds="h"),))
    )
    assert refused == Result(passed=False, failed=0, values={"h": left(100)})
    if backend.redis is not None:
        client, prefix = backend.redis
        tickets, amounts = hold_keys(prefix, "h")
        assert await client.zcard(tickets) == 151 and await client.hlen(amounts) == 152
        assert await client.zscore(tickets, "d99") is None
        assert await client.zscore(tickets, "d100") is not None
    # a dead ticket not pruned yet is placed again, or released, exactly (100 more pruned)
    replaced = await backend.apply(
        Operation(
            holds=(Hold(holds="h", ticket="d249", amount=1, expires=now + 1000),),
            releases=(Release(holds="h", ticket="d248"),),
        )
    )
    assert replaced.values == {"h": left(200)}
    assert await backend.hold_total("h") == 10**6 + 1  # the rest, then nothing more
    assert await backend.hold_total("h") == 10**6 + 1
    if backend.redis is not None:
        assert await client.zrange(tickets, 0, -1) == [b"d249", b"live"]
        assert await client.hgetall(amounts) == {
            b"": b"1000001",
            b"d249": b"1",
            b"live": b"1000000",
        }
        ttl = await client.pttl(amounts)
        assert 0 < ttl <= 1_000_000 + 60_000 - 2_000 and ttl == pytest.approx(
            await client.pttl(tickets), abs=1000
        )
    clock.advance(1000)
    assert await backend.hold_total("h") == 0
    if backend.redis is not None:
        assert await client.exists(tickets, amounts) == 0  # an empty hold set is deleted


async def test_ten_thousand_live_holds_cost_no_more_than_a_few(
    backend: Backend, clock: FakeClock
) -> None:
    later = clock() + 300
    for batch in range(100):
        await backend.apply(
            Operation(
                holds=tuple(
                    Hold(holds="h", ticket=f"t{batch}.{i}", amount=batch * 100 + i, expires=later)
                    for i in range(100)
                )
            )
        )
    total = sum(range(10_000))
    times = []
    for i in range(20):
        admit = Operation(
            checks=(Check(counters=("used",), cap=total + 10**6, amount=5, holds="h"),),
            adds=(Add(counter="used", amount=5),),
            holds=(Hold(holds="h", ticket=f"new{i}", amount=10**5, expires=later),),
        )
        started = time.perf_counter()
        result = await backend.apply(admit)
        times.append(time.perf_counter() - started)
        assert result == Result(passed=True, failed=None, values={"h": total, "used": 5 * i}), i
        started = time.perf_counter()
        await backend.apply(Operation(releases=(Release(holds="h", ticket=f"new{i}"),)))
        times.append(time.perf_counter() - started)
    # placing a ticket again replaces its amount; a release removes only its own
    await backend.apply(
        Operation(
            holds=(Hold(holds="h", ticket="t0.1", amount=1001, expires=later),),
            releases=(Release(holds="h", ticket="t99.99"),),
        )
    )
    assert await backend.hold_total("h") == total + 1000 - 9999
    # measured, not asserted (a loaded machine is slow): Redis ~0.2 ms per operation
    times.sort()
    print(f"{backend.name}: 10,000 holds, median {times[len(times) // 2] * 1000:.2f} ms")
    if backend.redis is not None:
        client, prefix = backend.redis
        tickets, amounts = hold_keys(prefix, "h")
        assert await client.zcard(tickets) == 9_999
        assert int(await client.hget(amounts, "")) == total + 1000 - 9999


def test_a_local_hold_set_keeps_no_more_entries_than_it_needs(clock: FakeClock) -> None:
    counters = LocalCounters(clock)
    later = clock() + 300
    counters.apply(Operation(holds=(Hold(holds="h", ticket="stays", amount=1, expires=later),)))
    for i in range(10_000):
        held = Hold(holds="h", ticket=f"t{i}", amount=2, expires=later + i)
        counters.apply(Operation(holds=(held, held)))  # placed twice: replaced
        counters.apply(Operation(releases=(Release(holds="h", ticket=f"t{i}"),)))
    assert counters.hold_total("h") == 1
    assert len(counters._holds["h"].heap) <= 2 + 64 + 2  # stale entries are compacted away


async def test_a_counter_is_kept_ttl_seconds_after_each_change(
    backend: Backend, clock: FakeClock
) -> None:
    await backend.apply(
        Operation(adds=(Add(counter="w", amount=1, ttl=120), Add(counter="forever", amount=1)))
    )
    ttl = await backend.ttl("w")
    assert ttl is not None and 119 <= ttl <= 120
    assert await backend.ttl("forever") is None
    clock.advance(30)  # (Redis: TTLs are real seconds)
    await backend.apply(Operation(adds=(Add(counter="w", amount=1),)))  # no ttl: the expiry stays
    ttl = await backend.ttl("w")
    expected = 90 if backend.name in LOCAL_KINDS else 120
    assert ttl is not None and expected - 1 <= ttl <= expected
    await backend.apply(Operation(adds=(Add(counter="w", amount=1, ttl=300),)))
    ttl = await backend.ttl("w")
    assert ttl is not None and 299 <= ttl <= 300
    assert await backend.value("w") == 3


async def test_sums_are_exact_beyond_53_bits(backend: Backend, clock: FakeClock) -> None:
    later = clock() + 60
    await backend.apply(
        Operation(
            adds=(
                Add(counter="big", amount=BIG - 10, seed=3),
                Add(counter="neg", amount=-(BIG + 1)),
            ),
            holds=(
                Hold(holds="h", ticket="x", amount=BIG // 2 + 1, expires=later),
                Hold(holds="h", ticket="y", amount=BIG // 2 - 1, expires=later),
            ),
        )
    )
    assert await backend.value("big") == BIG - 7
    assert await backend.value("neg") == -(BIG + 1)
    assert await backend.hold_total("h") == BIG
    # (BIG - 7) + 7 == BIG passes, + 8 does not
    assert (
        await backend.apply(Operation(checks=(Check(counters=("big",), cap=BIG, amount=7),)))
    ).passed
    assert (
        await backend.apply(Operation(checks=(Check(counters=("big",), cap=BIG, amount=8),)))
    ).failed == 0
    # BIG - 7 - (BIG + 1) + BIG + 8 == BIG exactly
    op = Operation(checks=(Check(counters=("big", "neg"), cap=BIG, amount=8, holds="h"),))
    assert await backend.apply(op) == Result(
        passed=True, failed=None, values={"big": BIG - 7, "neg": -(BIG + 1), "h": BIG}
    )
    assert (
        await backend.apply(
            Operation(checks=(Check(counters=("big", "neg"), cap=BIG, amount=9, holds="h"),))
        )
    ).failed == 0
    assert (
        await backend.apply(Operation(checks=(Check(counters=("neg",), cap=-BIG, amount=0),)))
    ).passed
    assert not (
        await backend.apply(Operation(checks=(Check(counters=("neg",), cap=-BIG - 2, amount=0),)))
    ).passed


async def test_floors_raise_counters_to_at_least_their_minimum(
    backend: Backend, clock: FakeClock
) -> None:
    def floor(counter: str, minimum: int, ttl: int | None = None) -> Operation:
        return Operation(floors=(Floor(counter=counter, minimum=minimum, ttl=ttl),))

    assert await backend.apply(floor("new", 40)) == Result(passed=True, failed=None, values={})
    assert await backend.value("new") == 40 and await backend.ttl("new") is None
    await backend.apply(floor("new", 30))  # never lowered
    assert await backend.value("new") == 40
    await backend.apply(floor("zero", 0))  # a missing counter is created
    assert await backend.value("zero") == 0
    # raised, its expiry kept; a floor's ttl applies whether it rose or not
    await backend.apply(Operation(adds=(Add(counter="w", amount=5, ttl=600),)))
    clock.advance(30)
    await backend.apply(floor("w", 50))
    ttl = await backend.ttl("w")
    expected = 570 if backend.name in LOCAL_KINDS else 600
    assert await backend.value("w") == 50 and ttl is not None and expected - 1 <= ttl <= expected
    await backend.apply(floor("w", 10, ttl=120))
    ttl = await backend.ttl("w")
    assert await backend.value("w") == 50 and ttl is not None and 119 <= ttl <= 120
    # after the adds of the same operation; a missing counter reads as its seed
    await backend.apply(
        Operation(
            adds=(Add(counter="a", amount=3), Add(counter="a", amount=5)),
            floors=(Floor(counter="a", minimum=7), Floor(counter="s", minimum=20)),
            seeds={"s": 50},
        )
    )
    assert await backend.value("a") == 8 and await backend.value("s") == 50
    both = Operation(adds=(Add(counter="a", amount=1),), floors=(Floor(counter="a", minimum=12),))
    assert await backend.apply(both) == Result(passed=True, failed=None, values={})
    assert await backend.value("a") == 12
    # nothing when a check fails
    refused = Operation(
        checks=(Check(counters=("a",), cap=0, amount=1),), floors=(Floor(counter="a", minimum=99),)
    )
    assert await backend.apply(refused) == Result(passed=False, failed=0, values={"a": 12})
    assert await backend.value("a") == 12
    # exact beyond 53 bits, negative minimums too
    await backend.apply(Operation(adds=(Add(counter="big", amount=BIG - 1),)))
    await backend.apply(floor("big", BIG))
    await backend.apply(floor("big", BIG - 2))
    assert await backend.value("big") == BIG
    await backend.apply(floor("neg", -(BIG + 1)))
    assert await backend.value("neg") == 0  # its seed, 0, is higher
    await backend.apply(Operation(adds=(Add(counter="neg2", amount=-(BIG + 5)),)))
    await backend.apply(floor("neg2", -(BIG + 3)))
    assert await backend.value("neg2") == -(BIG + 3)


async def test_a_counter_named_twice_counts_twice(backend: Backend) -> None:
    op = Operation(
        checks=(
            Check(counters=("c", "c"), cap=10, amount=0),
            Check(counters=("c",), cap=10, amount=0),
        ),
        adds=(Add(counter="c", amount=2, seed=3), Add(counter="c", amount=1, seed=100)),
    )
    assert await backend.apply(op) == Result(passed=True, failed=None, values={"c": 3})
    assert await backend.value("c") == 6
    assert (
        await backend.apply(Operation(checks=(Check(counters=("c", "c"), cap=11, amount=0),)))
    ).failed == 0


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
    await apply(
        Operation(
            adds=(Add(counter="m", amount=5, ttl=120),),
            holds=(Hold(holds="h", ticket="t", amount=1, expires=clock() + 1),),
        )
    )
    clock.advance(119.9)
    assert counters.value("m") == 5
    clock.advance(0.1)
    assert counters.value("m") is None
    result = await apply(
        Operation(checks=(Check(counters=("m",), cap=10, amount=0),), seeds={"m": 2})
    )
    assert result.values == {"m": 2}
    assert counters.expires("m") is None and counters.hold_total("h") == 0


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
                    counters=tuple(rng.sample(names, rng.randint(0, 3))),
                    cap=amount(-5, 60),
                    amount=amount(-2, 10),
                    holds=rng.choice([None, "h", "g"]),
                )
                for _ in range(rng.randint(0, 3))
            )
            adds = tuple(
                Add(
                    counter=rng.choice(names),
                    amount=amount(-3, 9),
                    ttl=rng.choice([None, 600]),
                    seed=rng.randint(0, 9),
                )
                for _ in range(rng.randint(0, 3))
            )
            holds = tuple(
                Hold(
                    holds=rng.choice(["h", "g"]),
                    ticket=f"t{rng.randint(0, 9)}",
                    amount=amount(0, 9),
                    expires=clock() + rng.uniform(0, 20),
                )
                for _ in range(rng.randint(0, 2))
            )
            releases = tuple(
                Release(holds=rng.choice(["h", "g"]), ticket=f"t{rng.randint(0, 9)}")
                for _ in range(rng.randint(0, 2))
            )
            seeds = {n: rng.randint(0, 9) for n in rng.sample(names, rng.randint(0, 2))}
            floors = tuple(
                Floor(
                    counter=rng.choice(names),
                    minimum=amount(-5, 30),
                    ttl=rng.choice([None, 300]),
                )
                for _ in range(rng.choice([0, 0, 1, 2]))
            )
            op = Operation(checks, adds, holds, releases, seeds, floors)
            expected = local.apply(op)
            assert await remote.apply(op) == expected, (step, op)
            outcomes.add((expected.passed, expected.failed))
            clock.advance(rng.uniform(0, 1.5))
        assert await remote.values(names) == {n: local.value(n) for n in names}
    assert {(True, None), (False, 0), (False, 1), (False, 2)} <= outcomes


# -- concurrency -------------------------------------------------------------------------------


def admission(ticket: str, now: float) -> Operation:
    return Operation(
        checks=(Check(counters=("used",), cap=10, amount=1, holds="inflight"),),
        holds=(Hold(holds="inflight", ticket=ticket, amount=1, expires=now + 60),),
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
        assert await client.zcard(hold_keys(prefix, "inflight")[0]) == 10


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
            assert await client.zcard(hold_keys(prefix, "inflight")[0]) == 10
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
    result = await solo.apply(
        Operation(
            checks=(Check(counters=("n",), cap=1, amount=1),), adds=(Add(counter="n", amount=1),)
        )
    )
    assert result.passed and (await solo.values(["n"])) == {"n": 1}
    assert not (
        await solo.apply(Operation(checks=(Check(counters=("n",), cap=1, amount=1),)))
    ).passed
    await solo.start()
    assert solo.status() == CountersStatus(
        shared=False, redis="off", since=None, pending=0, error=None
    )
    await solo.close()


async def test_apply_local_is_for_the_counters_of_one_process(clock: FakeClock) -> None:
    solo = SharedCounters(None, clock=clock, instance="solo")
    op = Operation(
        checks=(Check(counters=("n",), cap=1, amount=1),), adds=(Add(counter="n", amount=1),)
    )
    assert solo.apply_local(op) == Result(passed=True, failed=None, values={"n": 0})
    assert solo.apply_local(op) == Result(passed=False, failed=0, values={"n": 1})
    assert await solo.values(["n"]) == {"n": 1}
    shared = SharedCounters(REDIS_URL, clock=clock, instance="a")
    with pytest.raises(RuntimeError):
        shared.apply_local(op)
    await shared.close()


async def test_replicas_share_counters_and_each_local_copy_follows_redis(clock: FakeClock) -> None:
    async with redis_prefix() as (client, prefix):
        a = SharedCounters(REDIS_URL, clock=clock, instance="a", prefix=prefix)
        b = SharedCounters(REDIS_URL, clock=clock, instance="b", prefix=prefix)
        await a.start()
        await b.start()
        try:
            await b.apply(Operation(adds=(Add(counter="spend", amount=7, ttl=600),)))
            await b.apply(
                Operation(holds=(Hold(holds="h", ticket="tb", amount=2, expires=clock() + 60),))
            )
            result = await a.apply(
                Operation(
                    checks=(Check(counters=("spend",), cap=100, amount=3, holds="h"),),
                    adds=(Add(counter="spend", amount=3),),
                )
            )
            assert result == Result(passed=True, failed=None, values={"spend": 7, "h": 2})
            assert await a.values(["spend"]) == await b.values(["spend"]) == {"spend": 10}
            # a's copy holds Redis's value (b's spend included), with Redis's expiry
            assert a.local.value("spend") == 10
            expires = a.local.expires("spend")
            assert expires is not None and 599 <= expires - clock() <= 600
            # holds and releases are mirrored; b's copy has not seen a's add yet
            await a.apply(
                Operation(holds=(Hold(holds="h", ticket="ta", amount=4, expires=clock() + 60),))
            )
            assert a.local.hold_total("h") == 4 and b.local.value("spend") == 7
            await a.apply(Operation(releases=(Release(holds="h", ticket="ta"),)))
            assert a.local.hold_total("h") == 0
            assert await client.zcard(hold_keys(prefix, "h")[0]) == 1
        finally:
            await a.close()
            await b.close()


async def test_a_counter_redis_lost_restarts_from_the_local_value(clock: FakeClock) -> None:
    async with redis_prefix() as (client, prefix):
        a = SharedCounters(REDIS_URL, clock=clock, instance="a", prefix=prefix)
        await a.start()
        try:
            await a.apply(Operation(adds=(Add(counter="spend", amount=5, seed=100),)))
            assert await client.get(prefix + "spend") == b"105"
            await client.delete(prefix + "spend")  # Redis lost it
            result = await a.apply(
                Operation(
                    checks=(Check(counters=("spend",), cap=1000, amount=1),), seeds={"spend": 0}
                )
            )
            assert result.values == {"spend": 105}  # seeded with the local value
            assert await a.values(["spend"]) == {"spend": 105}  # the local value meanwhile
            await a.apply(Operation(adds=(Add(counter="spend", amount=1, seed=0),)))
            assert await client.get(prefix + "spend") == b"106"
        finally:
            await a.close()


def test_claims_make_a_replayed_operation_count_once() -> None:
    async def run() -> None:
        async with redis_prefix() as (client, prefix):
            counters = RedisCounters(client, prefix=prefix, clock=FakeClock())
            op = Operation(adds=(Add(counter="n", amount=3),))
            first = await counters.run(op, claim=("claims", 7))
            assert (
                first.result == Result(passed=True, failed=None, values={})
                and first.after["n"][0] == 3
            )
            again = await counters.run(op, claim=("claims", 7))
            assert again.result is None and again.after["n"][0] == 3
            await counters.run(op, claim=("claims", 8))
            assert await counters.values(["n"]) == {"n": 6}

    asyncio.run(run())


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
        checks=(Check(counters=("requests",), cap=10_000, amount=1, holds="holds"),),
        adds=(
            Add(counter="requests", amount=1, ttl=600),
            Add(counter="spend", amount=7, seed=1000),
        ),
        holds=(Hold(holds="holds", ticket=f"t{i}", amount=3, expires=clock() + 300),),
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
        await timed(shared, Operation(releases=(Release(holds="holds", ticket="t7"),)))
        many = tuple(
            Add(counter=f"c{i}", amount=i, ttl=600) for i in range(1200)
        )  # pushed in 3 batches
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
        tickets, amounts = hold_keys("cr:lim:", "holds")
        expected = sorted(f"t{i}".encode() for i in range(5, 25) if i != 7)
        assert sorted(await raw.zrange(tickets, 0, -1)) == expected
        assert await raw.hgetall(amounts) == {b"": b"57"} | {t: b"3" for t in expected}
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
        assert (
            await timed(
                shared, Operation(checks=(Check(counters=("spend",), cap=10**6, amount=0),))
            )
        ).passed
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
        assert await raw.zcard(hold_keys("cr:lim:", "holds")[0]) == 15
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


async def test_a_floor_counted_during_an_outage_is_pushed_as_a_floor(
    own_redis: RedisProcess, clock: FakeClock
) -> None:
    shared = SharedCounters(own_redis.url, clock=clock, instance="a")
    await shared.start()
    raw = redis.asyncio.Redis.from_url(own_redis.url)
    try:
        await timed(
            shared,
            Operation(
                adds=(Add(counter="charged", amount=10, ttl=600), Add(counter="floored", amount=10))
            ),
        )
        own_redis.signal(signal.SIGSTOP)
        # this one reaches Redis, times out, and runs when Redis wakes up
        await timed(shared, Operation(adds=(Add(counter="charged", amount=1),)))
        for counter in ("charged", "floored"):
            await timed(shared, Operation(floors=(Floor(counter=counter, minimum=100),)))
            await timed(shared, Operation(adds=(Add(counter=counter, amount=3),)))
        await timed(shared, Operation(floors=(Floor(counter="fresh", minimum=7, ttl=300),)))
        assert [shared.local.value(n) for n in ("charged", "floored", "fresh")] == [103, 103, 7]
        # the batch that may have run, two floors and two deltas, one more floor
        assert shared.status().pending == 6
        own_redis.signal(signal.SIGCONT)
        await raw.incrby("cr:lim:charged", 500)  # other replicas' changes meanwhile
        await raw.incrby("cr:lim:floored", 20)
        await until_shared(shared, clock)
        assert shared.status().pending == 0
        # max(10 + 1 + 500 + 3, 100 + 3) and max(10 + 20 + 3, 100 + 3): as floors, not deltas
        values = await raw.mget("cr:lim:charged", "cr:lim:floored", "cr:lim:fresh")
        assert values == [b"514", b"103", b"7"]
        assert [shared.local.value(n) for n in ("charged", "floored", "fresh")] == [514, 103, 7]
        assert 590 <= await raw.ttl("cr:lim:charged") <= 600
        assert await raw.ttl("cr:lim:floored") == -1
        assert 290 <= await raw.ttl("cr:lim:fresh") <= 300
        # with Redis again: a floor goes straight to Redis
        await timed(shared, Operation(floors=(Floor(counter="floored", minimum=200),)))
        assert await raw.get("cr:lim:floored") == b"200" and shared.local.value("floored") == 200
    finally:
        await shared.close()
        await raw.aclose()


async def test_a_redis_that_lost_its_data_gets_the_floors_counted_meanwhile(
    own_redis: RedisProcess, clock: FakeClock
) -> None:
    shared = SharedCounters(own_redis.url, clock=clock, instance="a")
    await shared.start()
    raw = redis.asyncio.Redis.from_url(own_redis.url)
    try:
        await timed(shared, Operation(adds=(Add(counter="charged", amount=10),)))
        await raw.aclose()
        own_redis.kill()
        await timed(shared, Operation(adds=(Add(counter="charged", amount=2),)))
        await timed(shared, Operation(floors=(Floor(counter="charged", minimum=50),)))
        await timed(shared, Operation(adds=(Add(counter="charged", amount=1),)))
        # counters that expire before Redis is back are not pushed (room in the first batch)
        await timed(
            shared,
            Operation(adds=tuple(Add(counter=f"e{i}", amount=1, ttl=10) for i in range(100))),
        )
        clock.advance(11)
        # a floor whose counter's delta is pushed in the second batch goes with it
        await timed(
            shared, Operation(adds=tuple(Add(counter=f"c{i}", amount=1) for i in range(500)))
        )
        await timed(shared, Operation(floors=(Floor(counter="c499", minimum=100),)))
        own_redis.start()  # empty
        await until_shared(shared, clock)
        raw = redis.asyncio.Redis.from_url(own_redis.url)
        assert await raw.get("cr:lim:charged") == b"51" and shared.local.value("charged") == 51
        assert await raw.mget("cr:lim:c0", "cr:lim:c499", "cr:lim:e0") == [b"1", b"100", None]
    finally:
        await shared.close()
        await raw.aclose()


async def test_holds_placed_and_released_during_an_outage_leave_nothing_pending(
    own_redis: RedisProcess, clock: FakeClock
) -> None:
    shared = SharedCounters(own_redis.url, clock=clock, instance="a")
    await shared.start()
    raw = redis.asyncio.Redis.from_url(own_redis.url)
    tickets, amounts = hold_keys("cr:lim:", "h")
    later = clock() + 300

    def hold(ticket: str, amount: int) -> Hold:
        return Hold(holds="h", ticket=ticket, amount=amount, expires=later)

    try:
        await timed(shared, Operation(holds=(hold("before", 5), hold("kept", 7))))
        own_redis.signal(signal.SIGSTOP)
        await timed(
            shared, Operation(adds=(Add(counter="n", amount=1),))
        )  # reaches Redis, runs later
        assert shared.status().pending == 1
        for i in range(50):  # requests admitted and settled during the outage
            await timed(
                shared,
                Operation(
                    checks=(Check(counters=("n",), cap=100, amount=1, holds="h"),),
                    holds=(hold(f"t{i}", 2),),
                ),
            )
            await timed(shared, Operation(releases=(Release(holds="h", ticket=f"t{i}"),)))
            await timed(
                shared,
                Operation(
                    holds=(hold(f"u{i}", 1),), releases=(Release(holds="h", ticket=f"u{i}"),)
                ),
            )
        assert shared.status().pending == 1
        # holds Redis has: their releases are pending (also after placing one again)
        await timed(shared, Operation(holds=(hold("kept", 9),)))
        await timed(
            shared,
            Operation(
                releases=(Release(holds="h", ticket="kept"), Release(holds="h", ticket="before"))
            ),
        )
        await timed(shared, Operation(holds=(hold("open", 4),)))
        assert shared.status().pending == 4
        assert shared.local.hold_total("h") == 4
        own_redis.signal(signal.SIGCONT)
        await until_shared(shared, clock)
        assert shared.status().pending == 0
        assert await raw.zrange(tickets, 0, -1) == [b"open"]
        assert await raw.hgetall(amounts) == {b"": b"4", b"open": b"4"}
    finally:
        await shared.close()
        await raw.aclose()
