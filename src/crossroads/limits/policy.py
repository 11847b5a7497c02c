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
Redis (`SharedCounters`). Money is in pico-USD (`accounting.money`).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crossroads.accounting.keys import ApiKey, KeyRing, period_starts
from crossroads.accounting.money import to_pico, to_usd
from crossroads.errors import GatewayError
from crossroads.limits.counters import Add, Check, Hold, Operation, Release, Result
from crossroads.limits.redis_counters import SharedCounters
from crossroads.schema.limits import Ticket

_PERIODS = ("daily", "weekly", "monthly")
_PERIOD_TTL = {"daily": 3 * 86400, "weekly": 9 * 86400, "monthly": 40 * 86400}
_WINDOW_TTL = 120  # seconds a per-minute counter is kept
_DAY_TTL = 2 * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeTier:
    """OpenRouter's limits on free variants (`limits.mdx`)."""

    per_minute: int = 20  # requests per minute, per key
    per_day: int = 50  # requests per UTC day, per account
    per_day_with_credits: int = 1000  # ... once `credits_threshold` was ever added
    credits_threshold: int = 10 * 10**12  # pico-USD


@dataclass(slots=True)
class Account:
    """The installation's balance as the database last said (read again every second)."""

    credits: int = 0  # pico-USD, every top-up
    charges: int = 0  # pico-USD, the ledger's charges: where the shared counter starts
    credit_rows: int = 0
    enforce: bool = False  # `credits.enforce` in the config

    @property
    def enforced(self) -> bool:
        return self.enforce or self.credit_rows > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """What a request may cost at most, known before it goes upstream."""

    worst_case: int  # pico-USD, the most any endpoint of its plan may bill
    prompt_tokens: int  # the estimate
    max_output: int  # output tokens the worst case allows for
    free_model: bool  # it asks for a free variant


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """A key's spend in pico-USD: all time and for the current UTC day, week and month."""

    total: int
    daily: int
    weekly: int
    monthly: int

    def period(self, reset: str | None) -> int:
        return {"daily": self.daily, "weekly": self.weekly, "monthly": self.monthly}.get(
            reset or "", self.total
        )


@dataclass(frozen=True, slots=True)
class FreeDay:
    """The account's requests to free variants today, and the day's cap."""

    limit: int
    used: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def _day(at: datetime) -> str:
    return at.strftime("%Y%m%d")


def _usd(pico: int) -> str:
    return f"${to_usd(pico):.6f}".rstrip("0").rstrip(".")


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
        free_baseline: Callable[[str], int] = lambda day: 0,
        clock: Callable[[], float],
    ) -> None:
        self.counters = counters
        self.keys = keys
        self.free = free
        self.account = account
        self.hold_seconds = hold_seconds  # a hold outlives any request (a crashed replica's)
        self.free_baseline = free_baseline  # the day's free requests stored at start
        self.clock = clock
        self._settling: set[asyncio.Task[Result]] = set()

    # -- counter names ---------------------------------------------------------------------

    def _spend_counters(self, key_hash: str, at: datetime) -> dict[str, str]:
        """The key's spend counters: `total` and one per period, named by the period start."""
        starts = period_starts(at)
        names = {"total": f"key:{key_hash}:spend:total"}
        for period in _PERIODS:
            stamp = starts[period].strftime("%Y%m" if period == "monthly" else "%Y%m%d")
            names[period] = f"key:{key_hash}:spend:{period}:{stamp}"
        return names

    def _baselines(self, key: ApiKey | None, at: datetime) -> dict[str, int]:
        """What the database said a key spent when this process started, per period: where
        a counter starts when no replica has it yet. A period begun since counts from 0."""
        if key is None:
            return {"total": 0, **dict.fromkeys(_PERIODS, 0)}
        usage = key.usage
        starts = period_starts(at)
        values = {"total": to_pico(usage.total)}
        for period in _PERIODS:
            same = usage.starts[period] == starts[period]
            values[period] = to_pico(usage.periods[period]) if same else 0
        return values

    def _free_day_cap(self) -> int:
        if self.account.credits >= self.free.credits_threshold:
            return self.free.per_day_with_credits
        return self.free.per_day

    # -- admission ---------------------------------------------------------------------------

    async def admit(self, key: ApiKey, demand: Demand) -> Ticket:
        """Check every limit and hold the worst case; raise the first limit's error."""
        now = self.clock()
        at = datetime.fromtimestamp(now, UTC)
        minute = int(now // 60)
        ticket_id = secrets.token_hex(8)
        expires = now + self.hold_seconds
        checks: list[tuple[str, Check]] = []
        adds: list[Add] = []
        holds: list[Hold] = []
        seeds: dict[str, int] = {}
        if demand.free_model:
            per_key = f"free:key:{key.hash}:m:{minute}"
            per_day = f"free:acct:d:{_day(at)}"
            seeds[per_day] = self.free_baseline(_day(at))
            checks.append(("free-per-minute", Check((per_key,), self.free.per_minute, 1)))
            checks.append(("free-per-day", Check((per_day,), self._free_day_cap(), 1)))
            adds += [Add(per_key, 1, _WINDOW_TTL), Add(per_day, 1, _DAY_TTL, seeds[per_day])]
        if key.requests_per_minute is not None:
            rpm = f"rpm:{key.hash}:{minute}"
            checks.append(("requests-per-minute", Check((rpm,), key.requests_per_minute, 1)))
            adds.append(Add(rpm, 1, _WINDOW_TTL))
        if key.tokens_per_minute is not None:
            tpm = f"tpm:{key.hash}:{minute}"
            tokens = demand.prompt_tokens
            checks.append(("tokens-per-minute", Check((tpm,), key.tokens_per_minute, tokens)))
            adds.append(Add(tpm, tokens, _WINDOW_TTL))
        key_hold = key.limit is not None
        if key.limit is not None:
            names = self._spend_counters(key.hash, at)
            name = names[key.limit_reset or "total"]
            seeds[name] = self._baselines(key, at)[key.limit_reset or "total"]
            holds_name = f"key:{key.hash}:holds"
            cap = to_pico(key.limit)
            checks.append(("key-limit", Check((name,), cap, demand.worst_case, holds_name)))
            holds.append(Hold(holds_name, ticket_id, demand.worst_case, expires))
        balance = self.account.enforced
        if balance:
            seeds["acct:charged"] = self.account.charges
            cap = self.account.credits
            checks.append(
                ("balance", Check(("acct:charged",), cap, demand.worst_case, "acct:holds"))
            )
            holds.append(Hold("acct:holds", ticket_id, demand.worst_case, expires))
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
                raise self._refusal(label, check, result, key=key, demand=demand, at=at)
        return Ticket(
            id=ticket_id,
            key_hash=key.hash,
            reserved=demand.worst_case if (key_hold or balance) else 0,
            key_hold=key_hold,
            balance=balance,
            prompt_tokens=demand.prompt_tokens,
            minute=minute,
            tpm=key.tokens_per_minute is not None,
        )

    def _refusal(
        self,
        label: str,
        check: Check,
        result: Result,
        *,
        key: ApiKey,
        demand: Demand,
        at: datetime,
    ) -> GatewayError:
        """The error a failed check answers: 429 for a rate, 402 for money."""
        used = sum(result.values.get(c, 0) for c in check.counters)
        if check.holds:
            used += result.values.get(check.holds, 0)
        if label in ("key-limit", "balance"):
            left = max(0, check.cap - used)
            wants = (
                f"this request may cost up to {_usd(demand.worst_case)} "
                f"({demand.prompt_tokens} prompt tokens, up to {demand.max_output} output tokens)"
            )
            if label == "key-limit":
                period = f"{key.limit_reset} " if key.limit_reset else ""
                message = (
                    f"Key limit exceeded: {wants}, and this key has {_usd(left)} left of its "
                    f"{period}limit of {_usd(check.cap)}. "
                    "Lower max_tokens or raise the key's limit."
                )
            elif check.cap - used < 0 or demand.worst_case == 0:
                message = "Insufficient credits: the account balance is negative. Add credits."
            else:
                message = (
                    f"Insufficient credits: {wants}, and the account has {_usd(left)}. "
                    "Add credits (`crossroads credits add`) or lower max_tokens."
                )
            return GatewayError(402, message, metadata={"limit": label})
        if label == "free-per-day":
            tomorrow = at.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            reset = tomorrow.timestamp()
            more = ""
            if check.cap < self.free.per_day_with_credits:
                more = (
                    f"; once {_usd(self.free.credits_threshold)} of credits were added, the "
                    f"account may make {self.free.per_day_with_credits} a day"
                )
            message = (
                f"Rate limit exceeded: free-models-per-day. This account may make {check.cap} "
                f"requests a day to free model variants (:free){more}."
            )
        else:
            reset = (math.floor(at.timestamp() / 60) + 1) * 60.0
            what = {
                "free-per-minute": f"{check.cap} requests a minute to free model variants "
                "(:free), per key",
                "requests-per-minute": f"{check.cap} requests a minute with this key",
                "tokens-per-minute": f"{check.cap} tokens a minute with this key (this request "
                f"counts {check.amount})",
            }[label]
            name = {"free-per-minute": "free-models-per-min"}.get(label, label)
            message = f"Rate limit exceeded: {name}. The limit is {what}."
        retry = max(1, math.ceil(reset - at.timestamp()))
        return GatewayError(
            429,
            message,
            metadata={"limit": label},
            headers={
                "Retry-After": str(retry),
                "X-RateLimit-Limit": str(check.cap),
                "X-RateLimit-Remaining": str(max(0, check.cap - used)),
                "X-RateLimit-Reset": str(int(reset * 1000)),
            },
        )

    # -- settlement ------------------------------------------------------------------------

    def settle_operation(
        self, ticket: Ticket, key: ApiKey | None, *, cost: int, tokens: int
    ) -> Operation:
        """The counter operation that settles `ticket` at `cost` pico-USD and `tokens` tokens:
        the holds go, the cost is added to the key's spend (and the account's, when the
        balance is in force), the tokens beyond the prompt estimate to the key's minute."""
        now = self.clock()
        at = datetime.fromtimestamp(now, UTC)
        adds: list[Add] = []
        if cost > 0:
            names = self._spend_counters(ticket.key_hash, at)
            baselines = self._baselines(key, at)
            for period, name in names.items():
                adds.append(Add(name, cost, _PERIOD_TTL.get(period), baselines[period]))
            if ticket.balance:
                adds.append(Add("acct:charged", cost, None, self.account.charges))
        extra = tokens - ticket.prompt_tokens
        if ticket.tpm and extra:
            adds.append(Add(f"tpm:{ticket.key_hash}:{ticket.minute}", extra, _WINDOW_TTL))
        releases: list[Release] = []
        if ticket.key_hold:
            releases.append(Release(f"key:{ticket.key_hash}:holds", ticket.id))
        if ticket.balance:
            releases.append(Release("acct:holds", ticket.id))
        return Operation(adds=tuple(adds), releases=tuple(releases))

    def settle(self, ticket: Ticket | None, *, cost: float, tokens: int) -> bool:
        """Settle a request's ticket at its real cost (USD), in the background: the answer
        never waits on the counters. Whether the cost was drawn from the account balance."""
        if ticket is None:  # not admitted here (the router driven directly)
            return False
        pico = to_pico(cost)
        key = self.keys.get(ticket.key_hash)
        operation = self.settle_operation(ticket, key, cost=pico, tokens=tokens)
        if not self.counters.networked:  # in memory: at once, no task to schedule
            self.counters.local.apply(operation)
        elif operation.adds or operation.releases:
            task = asyncio.get_running_loop().create_task(self.counters.apply(operation))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
        return ticket.balance and pico > 0

    async def drain(self) -> None:
        """Wait for the settlements under way (at shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    # -- views ---------------------------------------------------------------------------------

    async def key_usage(self, key: ApiKey) -> KeyUsage:
        """The key's spend as the counters hold it (every replica's, with Redis)."""
        at = datetime.fromtimestamp(self.clock(), UTC)
        names = self._spend_counters(key.hash, at)
        baselines = self._baselines(key, at)
        values = await self.counters.values(list(names.values()))
        got = {p: values.get(n) for p, n in names.items()}
        spend = {p: v if v is not None else baselines[p] for p, v in got.items()}
        return KeyUsage(spend["total"], spend["daily"], spend["weekly"], spend["monthly"])

    async def free_day(self) -> FreeDay:
        """The account's requests to free variants today."""
        day = _day(datetime.fromtimestamp(self.clock(), UTC))
        name = f"free:acct:d:{day}"
        value = (await self.counters.values([name])).get(name)
        return FreeDay(
            self._free_day_cap(), value if value is not None else self.free_baseline(day)
        )

    async def account_usage(self) -> int:
        """The charges drawn from the balance so far, pico-USD."""
        value = (await self.counters.values(["acct:charged"])).get("acct:charged")
        return value if value is not None else self.account.charges
