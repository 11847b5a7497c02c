"""Atomic limit counters: the typed operation every backend applies, and `LocalCounters`.

An `Operation` checks caps, then (only when every check passed) adds to counters, places
holds and releases them, as one atomic step:

- a counter is an integer (pico-USD, requests, tokens) named by the caller, e.g.
  `key:{hash}:spend:daily:20250101`; a missing counter reads as its seed: the operation's
  `seeds[name]` when given, else the seed of the operation's first `Add` to it, else 0 (the
  same seed is where an `Add` starts a missing counter);
- a hold set holds reservations ("tickets") of amounts that count against a cap until they
  are released or expire (`Hold.expires`, epoch seconds; a hold is live while
  `now <= expires`);
- `Check` passes when `sum(counters) + live holds + amount <= cap`. Any failing check and
  nothing changes (releases neither); `Result.failed` is the first failing check's index.

`Result.values` holds, as seen BEFORE the operation, every checked counter's value and the
live total of every hold set the operation names (in its checks, holds or releases).

`LocalCounters` keeps them in this process (synchronous dict work); `redis_counters` holds
the Redis backend, with the same semantics, and `SharedCounters`, what the server uses.
Time (windows, TTLs, hold expiry) is judged by the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

SWEEP_EVERY = 60.0  # seconds (by the clock) between sweeps of expired counters and holds


@dataclass(frozen=True, slots=True)
class Check:
    """Passes when the counters' sum, plus the live holds of `holds`, plus `amount` is at
    most `cap`."""

    counters: tuple[str, ...]
    cap: int
    amount: int
    holds: str | None = None


@dataclass(frozen=True, slots=True)
class Add:
    """`counter += amount`; a missing counter starts at its seed (`seed`, unless the
    operation's `seeds` names it). `ttl`: seconds the counter is kept after this change
    (None: any expiry it has is left as it is; a new counter never expires)."""

    counter: str
    amount: int
    ttl: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ttl is not None and self.ttl < 1:
            raise ValueError("Add.ttl must be at least 1 second (or None)")


@dataclass(frozen=True, slots=True)
class Hold:
    """Reserve `amount` under `ticket` in the hold set `holds` until `expires` (epoch
    seconds; dead after that). Placing a ticket again replaces it."""

    holds: str
    ticket: str
    amount: int
    expires: float

    def __post_init__(self) -> None:
        if not self.ticket:
            raise ValueError("Hold.ticket must not be empty")


@dataclass(frozen=True, slots=True)
class Release:
    """Remove `ticket` from the hold set `holds` (nothing when it is not there)."""

    holds: str
    ticket: str


@dataclass(frozen=True, slots=True)
class Operation:
    """Checks, then (all passed) adds, holds and releases, applied atomically. `seeds`: the
    values missing counters read as (checked or added)."""

    checks: tuple[Check, ...] = ()
    adds: tuple[Add, ...] = ()
    holds: tuple[Hold, ...] = ()
    releases: tuple[Release, ...] = ()
    seeds: Mapping[str, int] = field(default_factory=dict)

    def seed_of(self, counter: str) -> int:
        """What `counter` reads as (and starts at) when it is missing."""
        seed = self.seeds.get(counter)
        if seed is not None:
            return seed
        for add in self.adds:
            if add.counter == counter:
                return add.seed
        return 0

    def counter_names(self) -> list[str]:
        """Every counter the operation checks or adds to, once each, in order."""
        names = dict.fromkeys(c for check in self.checks for c in check.counters)
        names.update(dict.fromkeys(add.counter for add in self.adds))
        return list(names)

    def hold_names(self) -> list[str]:
        """Every hold set the operation checks, holds in or releases from, once each."""
        names = dict.fromkeys(c.holds for c in self.checks if c.holds is not None)
        names.update(dict.fromkeys(h.holds for h in self.holds))
        names.update(dict.fromkeys(r.holds for r in self.releases))
        return list(names)


@dataclass(frozen=True, slots=True)
class Result:
    """Whether every check passed; the index of the first that failed; the checked
    counters' values and the named hold sets' live totals before the operation."""

    passed: bool
    failed: int | None
    values: dict[str, int]


@dataclass(frozen=True, slots=True)
class CountersStatus:
    """Where the counters live now (for health checks). `shared`: a Redis URL is configured;
    `redis`: "off" (none), "ok" or "unreachable"; `since`: when that state began (clock
    seconds); `pending`: changes counted here and not yet in Redis; `error`: the last
    Redis error while unreachable."""

    shared: bool
    redis: Literal["off", "ok", "unreachable"]
    since: float | None
    pending: int
    error: str | None


class LocalCounters:
    """Counters and hold sets in this process's memory. Expired counters and dead holds are
    ignored when read and dropped by a sweep once a minute (by the clock)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float | None]] = {}  # name -> (value, expires)
        self._holds: dict[str, dict[str, tuple[int, float]]] = {}  # set -> ticket -> hold
        self._next_sweep = clock() + SWEEP_EVERY

    # -- reading -----------------------------------------------------------------------------

    def _get(self, name: str, now: float) -> int | None:
        cell = self._counters.get(name)
        if cell is None:
            return None
        expires = cell[1]
        if expires is not None and now >= expires:
            del self._counters[name]
            return None
        return cell[0]

    def _live_total(self, holds: str, now: float) -> int:
        tickets = self._holds.get(holds)
        if not tickets:
            return 0
        dead = [t for t, (_, expires) in tickets.items() if now > expires]
        for ticket in dead:
            del tickets[ticket]
        if not tickets:
            del self._holds[holds]
            return 0
        return sum(amount for amount, _ in tickets.values())

    def value(self, name: str) -> int | None:
        """The counter's value, None when it is missing (or expired)."""
        return self._get(name, self._clock())

    def expires(self, name: str) -> float | None:
        """When the counter expires (clock seconds); None when it never does or is missing."""
        now = self._clock()
        if self._get(name, now) is None:
            return None
        return self._counters[name][1]

    def hold_total(self, holds: str) -> int:
        """The live holds' total in the hold set `holds`."""
        return self._live_total(holds, self._clock())

    def names(self) -> list[str]:
        """The counters held now (expired ones excluded)."""
        now = self._clock()
        return [n for n, (_, e) in self._counters.items() if e is None or now < e]

    # -- changing ----------------------------------------------------------------------------

    def put(self, name: str, value: int, *, expires: float | None) -> None:
        """Set a counter outright (a copy of what another backend holds)."""
        self._counters[name] = (value, expires)

    def apply(self, op: Operation) -> Result:
        """Apply `op` atomically (module docstring)."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        values: dict[str, int] = {}
        for name in op.hold_names():
            values[name] = self._live_total(name, now)
        failed: int | None = None
        for index, check in enumerate(op.checks):
            total = check.amount
            for name in check.counters:
                current = self._get(name, now)
                if current is None:
                    current = op.seed_of(name)
                values[name] = current
                total += current
            if check.holds is not None:
                total += values[check.holds]
            if failed is None and total > check.cap:
                failed = index
        if failed is not None:
            return Result(False, failed, values)
        for add in op.adds:
            current = self._get(add.counter, now)
            expires = None
            if current is None:
                current = op.seed_of(add.counter)
            else:
                expires = self._counters[add.counter][1]
            if add.ttl is not None:
                expires = now + add.ttl
            self._counters[add.counter] = (current + add.amount, expires)
        for hold in op.holds:
            self._holds.setdefault(hold.holds, {})[hold.ticket] = (hold.amount, hold.expires)
        for release in op.releases:
            tickets = self._holds.get(release.holds)
            if tickets is not None:
                tickets.pop(release.ticket, None)
                if not tickets:
                    del self._holds[release.holds]
        return Result(True, None, values)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_EVERY
        gone = [n for n, (_, e) in self._counters.items() if e is not None and now >= e]
        for name in gone:
            del self._counters[name]
        for holds in list(self._holds):
            self._live_total(holds, now)
