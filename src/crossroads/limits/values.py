"""The values admission works with: the free tier's numbers, the account's balance as
stored, what a request asks for, and a key's spend as the counters hold it. Plain data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeTier:
    """OpenRouter's limits on free variants (`limits.mdx`)."""

    per_minute: int = 20  # requests per minute, per key
    per_day: int = 50  # requests per UTC day, per account
    per_day_with_credits: int = 1000  # ... once `credits_threshold` was ever added
    credits_threshold: int = 10 * 10**12  # pico-USD


@dataclass(slots=True, kw_only=True)
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
class WorstCase:
    """The most a request may cost, and the output it allows for."""

    cost: int  # pico-USD, the most any endpoint of its plan may bill
    max_output: int  # output tokens that worst case allows for


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """What a request asks of the limits, known before it goes upstream. Its worst case
    is work to compute (every endpoint of the plan, in decimal arithmetic): `estimate` is
    called only when a limit needs it (`Limits.needs_worst_case`), once per admission."""

    prompt_tokens: int  # the estimate
    free_model: bool  # it asks for a free variant
    estimate: Callable[[], WorstCase]  # pure: the worst case over the request's plan


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeDay:
    """The account's requests to free variants today, and the day's cap."""

    limit: int
    used: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)
