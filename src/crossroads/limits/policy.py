"""Admission: before a request goes upstream, every limit that applies to it is checked, and
its worst-case cost held, in one atomic counter operation; afterwards the real cost settles.

The limits, checked in this order (the first that fails answers):
1. free variants (`:free`): requests per minute per key, then requests per day for the
   account (more once enough credits were ever added): 429;
2. the key's own requests and tokens per minute, when an operator set them: 429;
3. the key's `limit` for its period (`limit_reset`), against spend plus what the key's
   requests in flight hold: 402;
4. the account balance, once it is in force (credits were added, or `credits.enforce`):
   402; a negative balance refuses free requests too.

Counters are `limits.counters` operations: per process, or shared by every replica through
Redis (`SharedCounters`). Money is in pico-USD (`accounting.money`). A request's worst case
is computed only when a limit needs it (`Limits.needs_worst_case`): a key without a limit,
on an installation that does not enforce its balance, costs admission next to nothing.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from crossroads.accounting.keys import ApiKey, KeyRing, period_starts
from crossroads.accounting.money import PICO, to_pico
from crossroads.ids import RandomIds
from crossroads.limits.counters import Add, Check, Floor, Hold, Operation, Release, Result
from crossroads.limits.redis_counters import SharedCounters
from crossroads.limits.refusals import refusal
from crossroads.limits.values import Account, Demand, FreeDay, FreeTier, KeyUsage
from crossroads.schema.limits import Ticket

_PERIODS = ("daily", "weekly", "monthly")
_PERIOD_TTL = {"daily": 3 * 86400, "weekly": 9 * 86400, "monthly": 40 * 86400}
_WINDOW_TTL = 120  # seconds a per-minute counter is kept
_DAY_TTL = 2 * 86400
MAX_CAP = 2**62  # pico-USD: a key limit beyond this (4.6 million USD) caps at it


@dataclass(frozen=True, slots=True)
class _Periods:
    """The current UTC day, week and month: when each began (`period_starts`), and the
    stamp that names its spend counter."""

    day: int  # epoch day
    starts: dict[str, datetime]
    stamps: dict[str, str]

    @classmethod
    def of(cls, day: int) -> _Periods:
        starts = period_starts(datetime.fromtimestamp(day * 86400, UTC))
        stamps = {p: starts[p].strftime("%Y%m" if p == "monthly" else "%Y%m%d") for p in _PERIODS}
        return cls(day, starts, stamps)


def _day(at: datetime) -> str:
    return at.strftime("%Y%m%d")


@functools.lru_cache(maxsize=1024)
def limit_pico(usd: float) -> int:
    """A key's stored `limit` (USD) as the cap its spend is checked against, in pico-USD;
    never raises: a limit beyond `MAX_CAP` (the API and CLI refuse one above 9 million USD,
    an older row may hold anything) caps at it, a negative one or NaN is 0."""
    if math.isnan(usd) or usd <= 0:
        return 0
    if usd >= MAX_CAP / PICO:
        return MAX_CAP
    return min(to_pico(usd), MAX_CAP)


class Limits:
    """Admits requests against every limit that applies, and settles them afterwards."""

    def __init__(
        self,
        counters: SharedCounters,
        *,
        keys: KeyRing,
        free: FreeTier,
        account: Account,
        hold_seconds: float,
        clock: Callable[[], float],
        ids: RandomIds | None = None,
    ) -> None:
        self.ids = ids or RandomIds()  # the tickets' ids
        self.counters = counters
        self.keys = keys
        self.free = free
        self.account = account
        self.hold_seconds = hold_seconds  # a hold outlives any request (a crashed replica's)
        self.clock = clock
        self._free_baseline: tuple[str, int] = ("", 0)  # (YYYYMMDD, free requests stored)
        self._current = _Periods.of(0)  # the periods of the last day seen
        self._settling: set[asyncio.Task[Result]] = set()

    def set_free_baseline(self, day: str, count: int) -> None:
        """The requests to free variants the records held for UTC day `day` (YYYYMMDD) at
        start: where that day's account counter starts when no replica has it yet."""
        self._free_baseline = (day, count)

    def _free_start(self, day: str) -> int:
        stored_day, count = self._free_baseline
        return count if day == stored_day else 0

    # -- counter names ---------------------------------------------------------------------

    def _periods(self, now: float) -> _Periods:
        """The periods `now` (epoch seconds) is in: computed once a day."""
        day = int(now // 86400)
        if self._current.day != day:
            self._current = _Periods.of(day)
        return self._current

    @staticmethod
    def _spend_counters(key_hash: str, periods: _Periods) -> dict[str, str]:
        """The key's spend counters: `total` and one per period, named by the period start."""
        names = {"total": f"key:{key_hash}:spend:total"}
        for period, stamp in periods.stamps.items():
            names[period] = f"key:{key_hash}:spend:{period}:{stamp}"
        return names

    @staticmethod
    def _baselines(key: ApiKey | None, periods: _Periods) -> dict[str, int]:
        """What the database said a key spent when this process started, per period: where
        a counter starts when no replica has it yet. A period begun since counts from 0."""
        if key is None:
            return {"total": 0, **dict.fromkeys(_PERIODS, 0)}
        usage = key.usage
        values = {"total": usage.total}
        for period, start in periods.starts.items():
            values[period] = usage.periods[period] if usage.starts[period] == start else 0
        return values

    def _free_day_cap(self) -> int:
        if self.account.credits >= self.free.credits_threshold:
            return self.free.per_day_with_credits
        return self.free.per_day

    # -- reconciliation ----------------------------------------------------------------------

    async def reconcile(self, keys: Iterable[ApiKey] = ()) -> None:
        """Raise the shared counters to at least what the database holds: the account's
        charges (read every second) and the spend of `keys` as loaded at start. A replica
        killed after a record was journaled but before its settlement reached Redis leaves
        the counters short; the record, replayed into the database, brings them back up.
        Counters in memory start from the database already: nothing to do without Redis."""
        if not self.counters.networked:
            return
        periods = self._periods(self.clock())
        floors = [Floor(counter="acct:charged", minimum=self.account.charges)]
        for key in keys:
            names = self._spend_counters(key.hash, periods)
            for period, minimum in self._baselines(key, periods).items():
                if minimum > 0:
                    ttl = _PERIOD_TTL.get(period)
                    floors.append(Floor(counter=names[period], minimum=minimum, ttl=ttl))
        await self.counters.apply(Operation(floors=tuple(floors)))

    # -- admission ---------------------------------------------------------------------------

    def needs_worst_case(self, key: ApiKey) -> bool:
        """Whether admitting a request of `key` needs its worst case: to hold it against
        the key's limit or the account balance. Without either it is never computed."""
        return key.limit is not None or self.account.enforced

    async def admit(self, key: ApiKey, demand: Demand) -> Ticket:
        """Check every limit and hold the worst case; raise the first limit's error."""
        now = self.clock()
        minute = int(now // 60)
        ticket_id = self.ids.hex(8)
        worst = demand.estimate() if self.needs_worst_case(key) else None
        checks: list[tuple[str, Check]] = []
        adds: list[Add] = []
        holds: list[Hold] = []
        seeds: dict[str, int] = {}
        if demand.free_model:
            day = _day(datetime.fromtimestamp(now, UTC))
            per_key = f"free:key:{key.hash}:m:{minute}"
            per_day = f"free:acct:d:{day}"
            seeds[per_day] = self._free_start(day)
            checks.append(
                ("free-per-minute", Check(counters=(per_key,), cap=self.free.per_minute, amount=1))
            )
            checks.append(
                ("free-per-day", Check(counters=(per_day,), cap=self._free_day_cap(), amount=1))
            )
            adds += [
                Add(counter=per_key, amount=1, ttl=_WINDOW_TTL),
                Add(counter=per_day, amount=1, ttl=_DAY_TTL, seed=seeds[per_day]),
            ]
        if key.requests_per_minute is not None:
            rpm = f"rpm:{key.hash}:{minute}"
            checks.append(
                (
                    "requests-per-minute",
                    Check(counters=(rpm,), cap=key.requests_per_minute, amount=1),
                )
            )
            adds.append(Add(counter=rpm, amount=1, ttl=_WINDOW_TTL))
        if key.tokens_per_minute is not None:
            tpm = f"tpm:{key.hash}:{minute}"
            tokens = demand.prompt_tokens
            checks.append(
                (
                    "tokens-per-minute",
                    Check(counters=(tpm,), cap=key.tokens_per_minute, amount=tokens),
                )
            )
            adds.append(Add(counter=tpm, amount=tokens, ttl=_WINDOW_TTL))
        reserved = worst.cost if worst is not None else 0
        expires = now + self.hold_seconds
        key_hold = key.limit is not None
        if key.limit is not None:
            periods = self._periods(now)
            period = key.limit_reset or "total"
            name = self._spend_counters(key.hash, periods)[period]
            seeds[name] = self._baselines(key, periods)[period]
            holds_name = f"key:{key.hash}:holds"
            cap = limit_pico(key.limit)
            checks.append(
                ("key-limit", Check(counters=(name,), cap=cap, amount=reserved, holds=holds_name))
            )
            holds.append(Hold(holds=holds_name, ticket=ticket_id, amount=reserved, expires=expires))
        balance = self.account.enforced
        if balance:
            seeds["acct:charged"] = self.account.charges
            cap = self.account.credits
            checks.append(
                (
                    "balance",
                    Check(counters=("acct:charged",), cap=cap, amount=reserved, holds="acct:holds"),
                )
            )
            holds.append(
                Hold(holds="acct:holds", ticket=ticket_id, amount=reserved, expires=expires)
            )
        if checks:
            operation = Operation(
                checks=tuple(c for _, c in checks),
                adds=tuple(adds),
                holds=tuple(holds),
                seeds=seeds,
            )
            result = await self.counters.apply(operation)
            if not result.passed:
                assert result.failed is not None
                label, check = checks[result.failed]
                at = datetime.fromtimestamp(now, UTC)
                raise refusal(
                    label,
                    check,
                    result,
                    limit_reset=key.limit_reset,
                    prompt_tokens=demand.prompt_tokens,
                    worst=worst,
                    free=self.free,
                    at=at,
                )
        return Ticket(
            id=ticket_id,
            key_hash=key.hash,
            reserved=reserved,
            key_hold=key_hold,
            balance=balance,
            prompt_tokens=demand.prompt_tokens,
            minute=minute,
            tpm=key.tokens_per_minute is not None,
        )

    # -- settlement ------------------------------------------------------------------------

    def settle_operation(
        self, ticket: Ticket, key: ApiKey | None, *, cost: int, tokens: int
    ) -> Operation:
        """The counter operation that settles `ticket` at `cost` pico-USD and `tokens` tokens:
        the holds go, the cost is added to the key's spend (and the account's, when the
        balance is in force), the tokens beyond the prompt estimate to the key's minute."""
        adds: list[Add] = []
        if cost > 0:
            periods = self._periods(self.clock())
            names = self._spend_counters(ticket.key_hash, periods)
            baselines = self._baselines(key, periods)
            for period, name in names.items():
                adds.append(
                    Add(
                        counter=name,
                        amount=cost,
                        ttl=_PERIOD_TTL.get(period),
                        seed=baselines[period],
                    )
                )
            if ticket.balance:
                adds.append(Add(counter="acct:charged", amount=cost, seed=self.account.charges))
        extra = tokens - ticket.prompt_tokens
        if ticket.tpm and extra:
            adds.append(
                Add(counter=f"tpm:{ticket.key_hash}:{ticket.minute}", amount=extra, ttl=_WINDOW_TTL)
            )
        releases: list[Release] = []
        if ticket.key_hold:
            releases.append(Release(holds=f"key:{ticket.key_hash}:holds", ticket=ticket.id))
        if ticket.balance:
            releases.append(Release(holds="acct:holds", ticket=ticket.id))
        return Operation(adds=tuple(adds), releases=tuple(releases))

    def settle(self, ticket: Ticket | None, *, cost: int, tokens: int) -> bool:
        """Settle a request's ticket at its real cost (`cost` pico-USD, `tokens` in all):
        in memory at once; with Redis in the background, the answer never waits on the
        counters. Whether the cost was drawn from the account balance."""
        if ticket is None:  # not admitted here (the router driven directly)
            return False
        if cost <= 0 and not (ticket.key_hold or ticket.balance):
            if not ticket.tpm or tokens == ticket.prompt_tokens:
                return False  # nothing held, nothing spent, no tokens to count: no change
        key = self.keys.get(ticket.key_hash)
        operation = self.settle_operation(ticket, key, cost=cost, tokens=tokens)
        if not self.counters.networked:  # in memory: at once, no task to schedule
            self.counters.apply_local(operation)
        elif operation.adds or operation.releases:
            task = asyncio.get_running_loop().create_task(self.counters.apply(operation))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
        return ticket.balance and cost > 0

    async def drain(self) -> None:
        """Wait for the settlements under way (at shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    # -- views ---------------------------------------------------------------------------------

    async def key_usages(self, keys: Iterable[ApiKey]) -> dict[str, KeyUsage]:
        """Each key's spend as the counters hold it (every replica's, with Redis), by key
        hash: one read of the counters for all of them."""
        periods = self._periods(self.clock())
        named = [(k, self._spend_counters(k.hash, periods)) for k in keys]
        values = await self.counters.values([n for _, names in named for n in names.values()])
        usages: dict[str, KeyUsage] = {}
        for key, names in named:
            baselines = self._baselines(key, periods)
            spend = {p: values.get(n) for p, n in names.items()}
            got = {p: v if v is not None else baselines[p] for p, v in spend.items()}
            usages[key.hash] = KeyUsage(
                total=got["total"], daily=got["daily"], weekly=got["weekly"], monthly=got["monthly"]
            )
        return usages

    async def key_usage(self, key: ApiKey) -> KeyUsage:
        """The key's spend as the counters hold it (every replica's, with Redis)."""
        return (await self.key_usages([key]))[key.hash]

    async def free_day(self) -> FreeDay:
        """The account's requests to free variants today."""
        day = _day(datetime.fromtimestamp(self.clock(), UTC))
        name = f"free:acct:d:{day}"
        value = (await self.counters.values([name])).get(name)
        used = value if value is not None else self._free_start(day)
        return FreeDay(limit=self._free_day_cap(), used=used)

    async def account_usage(self) -> int:
        """The charges drawn from the balance so far, pico-USD."""
        value = (await self.counters.values(["acct:charged"])).get("acct:charged")
        return value if value is not None else self.account.charges
