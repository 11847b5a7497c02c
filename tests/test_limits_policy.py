"""Admission policy in memory: key limits, the balance, free-tier windows and per-key rates,
with an injected clock (`limits.policy.Limits` over `LocalCounters`)."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio

from crossroads.accounting.keys import ApiKey, KeyRing, period_starts
from crossroads.accounting.money import PICO, to_pico
from crossroads.errors import GatewayError
from crossroads.limits.policy import MAX_CAP, Limits
from crossroads.limits.redis_counters import SharedCounters
from crossroads.limits.values import Account, Demand, FreeTier, WorstCase

START = datetime(2026, 11, 29, 23, 58, 30, tzinfo=UTC).timestamp()  # a Sunday, late


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rows:
    """Keys kept in memory (`KeyRows`)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    async def insert(self, row: dict[str, Any]) -> None:
        self.rows[row["hash"]] = row

    async def update(self, key_hash: str, values: dict[str, Any]) -> None:
        self.rows[key_hash].update(values)

    async def delete(self, key_hash: str) -> None:
        self.rows.pop(key_hash)

    async def all(self) -> list[dict[str, Any]]:
        return list(self.rows.values())

    async def signature(self) -> tuple[Any, ...]:
        return (len(self.rows),)


def demand(usd: float = 0.0, *, free: bool = False, prompt: int = 10) -> Demand:
    worst = WorstCase(cost=to_pico(usd), max_output=100)
    return Demand(prompt_tokens=prompt, free_model=free, estimate=lambda: worst)


async def setup(
    clock: Clock, *, account: Account | None = None, **key_fields: Any
) -> tuple[Limits, ApiKey]:
    ring = KeyRing(Rows())
    await ring.load(spend={}, starts=period_starts(datetime.fromtimestamp(clock(), UTC)))
    _, key = await ring.create("k", **key_fields)
    limits = Limits(
        SharedCounters(None, instance="test", clock=clock),
        keys=ring,
        free=FreeTier(),
        account=account or Account(),
        hold_seconds=600,
        clock=clock,
    )
    return limits, key


async def refused(limits: Limits, key: ApiKey, wanted: Demand) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await limits.admit(key, wanted)
    return caught.value


async def test_ten_n_concurrent_requests_against_a_limit_of_n() -> None:
    clock = Clock()
    limits, key = await setup(clock, limit=1.0)
    n = 7
    wanted = demand(1.0 / n)  # the limit covers exactly n worst cases
    outcomes = await asyncio.gather(
        *(limits.admit(key, wanted) for _ in range(10 * n)), return_exceptions=True
    )
    tickets = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, GatewayError)]
    assert len(tickets) == n and len(errors) == 9 * n
    assert {e.status for e in errors} == {402}
    assert "Key limit exceeded" in errors[0].message
    # each costs half its worst case: the other halves come back
    for ticket in tickets:
        assert limits.settle(ticket, cost=to_pico(0.5 / n), tokens=20) is False
    await limits.drain()
    usage = await limits.key_usage(key)
    assert usage.total == usage.daily == 7 * to_pico(0.5 / n)
    again = [await limits.admit(key, wanted) for _ in range(3)]  # 3.5 worst cases are left
    assert len(again) == 3
    assert (await refused(limits, key, wanted)).status == 402
    for ticket in again:
        limits.settle(ticket, cost=to_pico(1.0 / n), tokens=20)
    await limits.drain()
    assert (await limits.key_usage(key)).total <= to_pico(1.0)


async def test_a_daily_limit_starts_over_the_next_utc_day() -> None:
    clock = Clock()
    limits, key = await setup(clock, limit=0.5, limit_reset="daily")
    ticket = await limits.admit(key, demand(0.5))
    limits.settle(ticket, cost=to_pico(0.5), tokens=1)
    await limits.drain()
    assert (await refused(limits, key, demand(0.01))).status == 402
    clock.now += 120  # Monday, 00:00:30 UTC: a new day, week and month
    usage = await limits.key_usage(key)
    assert (usage.total, usage.daily, usage.weekly) == (to_pico(0.5), 0, 0)
    await limits.admit(key, demand(0.5))


async def test_free_variants_twenty_a_minute_per_key_then_429_with_headers() -> None:
    clock = Clock(START - 28.5)  # 23:58:02
    limits, key = await setup(clock)
    for _ in range(20):
        await limits.admit(key, demand(free=True))
    error = await refused(limits, key, demand(free=True))
    assert error.status == 429 and "free-models-per-min" in error.message
    minute_end = (int(clock.now // 60) + 1) * 60
    assert error.headers["X-RateLimit-Limit"] == "20"
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert error.headers["X-RateLimit-Reset"] == str(minute_end * 1000)
    assert error.headers["Retry-After"] == str(math.ceil(minute_end - clock.now))
    await limits.admit(key, demand(0.0))  # a paid variant has no request cap
    clock.now = minute_end
    await limits.admit(key, demand(free=True))  # a new minute


async def test_free_variants_fifty_a_day_per_account_then_a_thousand_with_credits() -> None:
    clock = Clock(datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp())
    account = Account()
    limits, key = await setup(clock, account=account)
    _, other = await limits.keys.create("other")
    for i in range(50):
        clock.now += 4  # 15 a minute: under the per-minute limit
        await limits.admit(key if i % 2 else other, demand(free=True))
    error = await refused(limits, other, demand(free=True))
    assert error.status == 429 and "free-models-per-day" in error.message
    assert error.headers["X-RateLimit-Limit"] == "50"
    midnight = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    assert error.headers["X-RateLimit-Reset"] == str(int(midnight * 1000))
    assert (await limits.free_day()).remaining == 0
    account.credits, account.credit_rows = 10 * PICO, 1  # ten credits were added
    assert (await limits.free_day()).limit == 1000
    await limits.admit(key, demand(free=True))
    clock.now = midnight + 1
    assert (await limits.free_day()).used == 0


async def test_the_balance_once_in_force_holds_worst_cases_and_refuses_when_negative() -> None:
    clock = Clock()
    account = Account(credits=to_pico(1.0), credit_rows=1)
    limits, key = await setup(clock, account=account)
    first = await limits.admit(key, demand(0.6))
    error = await refused(limits, key, demand(0.6))  # 0.6 is held
    assert error.status == 402 and "Insufficient credits" in error.message
    assert limits.settle(first, cost=to_pico(0.25), tokens=5) is True  # drawn from the balance
    await limits.drain()
    assert await limits.account_usage() == to_pico(0.25)
    second = await limits.admit(key, demand(0.75))
    assert limits.settle(second, cost=0, tokens=0) is False  # nothing to draw
    await limits.drain()
    account.credits = to_pico(0.2)  # below what was charged: the balance is negative
    error = await refused(limits, key, demand(free=True))
    assert error.status == 402 and "negative" in error.message


async def test_a_new_installation_does_not_enforce_the_balance() -> None:
    limits, key = await setup(Clock())
    ticket = await limits.admit(key, demand(1000.0))
    assert ticket.reserved == 0 and not ticket.balance
    assert limits.settle(ticket, cost=to_pico(12.5), tokens=1) is False
    await limits.drain()
    assert (await limits.key_usage(key)).total == to_pico(12.5)
    assert await limits.account_usage() == 0


async def test_requests_and_tokens_per_minute_set_by_an_operator() -> None:
    clock = Clock(START - 28.5)
    limits, key = await setup(clock, requests_per_minute=3, tokens_per_minute=1000)
    ticket = await limits.admit(key, demand(prompt=100))
    limits.settle(ticket, cost=0, tokens=700)  # 600 more tokens than the prompt estimate
    await limits.drain()
    await limits.admit(key, demand(prompt=250))
    error = await refused(limits, key, demand(prompt=51))  # 950 + 51 > 1000
    assert error.status == 429 and "tokens-per-minute" in error.message
    await limits.admit(key, demand(prompt=10))
    error = await refused(limits, key, demand(prompt=1))  # the 4th request this minute
    assert error.status == 429 and "requests-per-minute" in error.message
    assert error.headers["X-RateLimit-Limit"] == "3"
    clock.now += 60
    await limits.admit(key, demand(prompt=900))


async def test_holds_of_a_request_that_never_settles_expire() -> None:
    clock = Clock()
    limits, key = await setup(clock, limit=1.0)
    await limits.admit(key, demand(1.0))  # its replica died: no settlement ever comes
    assert (await refused(limits, key, demand(0.5))).status == 402
    clock.now += limits.hold_seconds + 1
    await limits.admit(key, demand(0.5))


class Counted:
    """A demand whose worst case counts how often it was computed."""

    def __init__(self, usd: float) -> None:
        self.calls = 0
        self.worst = WorstCase(cost=to_pico(usd), max_output=100)

    def __call__(self) -> WorstCase:
        self.calls += 1
        return self.worst

    def demand(self) -> Demand:
        return Demand(prompt_tokens=10, free_model=False, estimate=self)


async def test_the_worst_case_is_computed_only_when_a_limit_needs_it() -> None:
    clock = Clock()
    account = Account()
    limits, key = await setup(clock, account=account)
    _, limited = await limits.keys.create("limited", limit=1.0)
    worst = Counted(2.0)
    ticket = await limits.admit(key, worst.demand())  # no limit, balance not in force
    assert worst.calls == 0 and ticket.reserved == 0 and not limits.needs_worst_case(key)
    error = await refused(limits, limited, worst.demand())
    assert worst.calls == 1 and "may cost up to $2 " in error.message
    account.enforce = True  # the balance is in force: every request holds its worst case
    assert limits.needs_worst_case(key)
    error = await refused(limits, key, worst.demand())
    assert worst.calls == 2 and "Insufficient credits" in error.message


async def test_a_settlement_that_changes_nothing_touches_no_counter() -> None:
    clock = Clock()
    limits, key = await setup(clock)
    ticket = await limits.admit(key, demand(1.0))
    before = await limits.counters.values(["key:" + key.hash + ":spend:total"])
    assert limits.settle(ticket, cost=0, tokens=5) is False
    assert await limits.counters.values(["key:" + key.hash + ":spend:total"]) == before
    assert limits.settle(ticket, cost=7, tokens=5) is False  # applied at once, in memory
    assert (await limits.key_usage(key)).total == 7


@pytest.mark.parametrize("stored", [1e30, 9e15, math.inf, math.nan, -5.0])
async def test_a_stored_limit_of_any_size_never_breaks_admission(stored: float) -> None:
    clock = Clock()
    limits, key = await setup(clock, limit=1.0)
    key.limit = stored  # an older row, written before the API bounded the limit
    wanted = demand(1000.0)
    if stored > 1e6:
        ticket = await limits.admit(key, wanted)
        assert ticket.reserved == to_pico(1000.0)
        limits.settle(ticket, cost=to_pico(1.0), tokens=1)
    else:  # NaN or negative: no spend allowed
        assert (await refused(limits, key, wanted)).status == 402
    assert await limits.admit(key, demand(0.0))
    assert MAX_CAP == 2**62


class CountingCounters(SharedCounters):
    reads = 0

    async def values(self, names: Any) -> dict[str, int | None]:
        self.reads += 1
        return await super().values(names)


async def test_key_usages_read_the_counters_once_for_every_key() -> None:
    clock = Clock()
    limits, key = await setup(clock)
    counters = CountingCounters(None, instance="test", clock=clock)
    limits.counters = counters
    others = [(await limits.keys.create(f"k{i}"))[1] for i in range(5)]
    for i, other in enumerate(others):
        limits.settle(await limits.admit(other, demand()), cost=i + 1, tokens=1)
    usages = await limits.key_usages([key, *others])
    assert counters.reads == 1
    assert [usages[k.hash].total for k in (key, *others)] == [0, 1, 2, 3, 4, 5]
    assert usages[others[2].hash].daily == 3


async def test_the_free_day_starts_from_the_stored_requests_of_that_day_only() -> None:
    clock = Clock(datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp())
    limits, key = await setup(clock)
    limits.set_free_baseline("20261129", 49)
    assert (await limits.free_day()).used == 49
    await limits.admit(key, demand(free=True))
    assert (await refused(limits, key, demand(free=True))).status == 429
    clock.now += 86400
    assert (await limits.free_day()).used == 0


async def test_shared_counters_are_raised_to_what_the_database_holds() -> None:
    """A replica killed between a record's journal write and its settlement leaves Redis
    short; the replayed record brings the ledger's charges and the key's spend back up."""
    clock = Clock(time.time())
    prefix = f"cr:test:{secrets.token_hex(4)}:"
    counters = SharedCounters(
        "redis://127.0.0.1:6379/5", instance="test", clock=clock, prefix=prefix
    )
    await counters.start()
    try:
        ring = KeyRing(Rows())
        now = datetime.fromtimestamp(clock(), UTC)
        await ring.load(spend={}, starts=period_starts(now))
        _, key = await ring.create("k", limit=1.0)
        account = Account(credits=to_pico(5.0), credit_rows=1)
        limits = Limits(
            counters, keys=ring, free=FreeTier(), account=account, hold_seconds=600, clock=clock
        )
        ticket = await limits.admit(key, demand(0.1))
        limits.settle(ticket, cost=to_pico(0.1), tokens=1)
        await limits.drain()
        assert await limits.account_usage() == to_pico(0.1)
        # the database knows more than Redis was told: a settlement that never came
        account.charges = to_pico(0.3)
        key.usage.total = key.usage.periods["daily"] = to_pico(0.3)
        await limits.reconcile([key])
        assert await limits.account_usage() == to_pico(0.3)
        usage = await limits.key_usage(key)
        assert usage.total == usage.daily == to_pico(0.3)
        account.charges = to_pico(0.2)  # never lowered
        await limits.reconcile([key])
        assert await limits.account_usage() == to_pico(0.3)
    finally:
        client = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/5")
        names = [n async for n in client.scan_iter(match=prefix + "*")]
        if names:
            await client.delete(*names)
        await client.aclose()
        await counters.close()
