"""Atomic limit counters: the typed operation every backend applies, and `LocalCounters`.

An `Operation` checks caps, then (only when every check passed) adds to counters, raises
counters to a floor, places holds and releases them, as one atomic step:

- a counter is an integer (pico-USD, requests, tokens) named by the caller, e.g.
  `key:{hash}:spend:daily:20250101`; a missing counter reads as its seed: the operation's
  `seeds[name]` when given, else the seed of the operation's first `Add` to it, else 0 (the
  same seed is where an `Add` starts a missing counter);
- a `Floor` raises a counter to at least its minimum (reconciliation with the database); a
  missing counter reads as its seed first;
- a hold set holds reservations ("tickets") of amounts that count against a cap until they
  are released or expire (`Hold.expires`, epoch seconds; a hold is live while
  `now <= expires`). Its total is kept as it changes, and dead holds are dropped oldest first,
  at most `PRUNE_LIMIT` per hold set and operation (the rest on the next ones: meanwhile the
  total still counts them, erring on refusal): every operation is O(log n) in the holds;
- `Check` passes when `sum(counters) + live holds + amount <= cap`. Any failing check and
  nothing changes (releases neither); `Result.failed` is the first failing check's index.

`Result.values` holds, as seen BEFORE the operation, every checked counter's value and the
live total of every hold set the operation names (in its checks, holds or releases).

`LocalCounters` keeps them in this process (synchronous dict work); `redis_counters` holds
the Redis backend, with the same semantics, and `SharedCounters`, what the server uses.
Time (windows, TTLs, hold expiry) is judged by the injected clock.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

SWEEP_EVERY = 60.0  # seconds (by the clock) between sweeps of expired counters and holds
PRUNE_LIMIT = 100  # dead holds a hold set drops per operation at most (the rest later)
HOLD_GRACE = 60.0  # seconds a hold set is kept after the latest expiry placed in it


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """Passes when the counters' sum, plus the live holds of `holds`, plus `amount` is at
    most `cap`."""

    counters: tuple[str, ...]
    cap: int
    amount: int
    holds: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """Remove `ticket` from the hold set `holds` (nothing when it is not there)."""

    holds: str
    ticket: str

    def __post_init__(self) -> None:
        if not self.ticket:
            raise ValueError("Release.ticket must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Floor:
    """`counter = max(counter, minimum)`, after the adds; a missing counter reads as its seed
    (the operation's `seeds`, else 0) and is created. `ttl`: seconds the counter is kept
    after this operation, whether it rose or not (None: as `Add.ttl`)."""

    counter: str
    minimum: int
    ttl: int | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None and self.ttl < 1:
            raise ValueError("Floor.ttl must be at least 1 second (or None)")


@dataclass(frozen=True, slots=True)
class Operation:
    """Checks, then (all passed) adds, floors, holds and releases, applied atomically in that
    order. `seeds`: the values missing counters read as (checked, added or floored)."""

    checks: tuple[Check, ...] = ()
    adds: tuple[Add, ...] = ()
    holds: tuple[Hold, ...] = ()
    releases: tuple[Release, ...] = ()
    seeds: Mapping[str, int] = field(default_factory=dict)
    floors: tuple[Floor, ...] = ()

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
        """Every counter the operation checks, adds to or floors, once each, in order."""
        names = dict.fromkeys(c for check in self.checks for c in check.counters)
        names.update(dict.fromkeys(add.counter for add in self.adds))
        names.update(dict.fromkeys(floor.counter for floor in self.floors))
        return list(names)

    def hold_names(self) -> list[str]:
        """Every hold set the operation checks, holds in or releases from, once each."""
        names = dict.fromkeys(c.holds for c in self.checks if c.holds is not None)
        names.update(dict.fromkeys(h.holds for h in self.holds))
        names.update(dict.fromkeys(r.holds for r in self.releases))
        return list(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """Whether every check passed; the index of the first that failed; the checked
    counters' values and the named hold sets' totals (after pruning: module docstring)
    before the operation."""

    passed: bool
    failed: int | None
    values: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
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


class _HoldSet:
    """One hold set: ticket -> (amount, expires); the running total of those amounts; a heap
    of (expires, ticket) finding the dead ones oldest first (entries of tickets released or
    placed again since are skipped when they come up, and dropped when the heap grows to
    twice the tickets); the latest expiry ever placed."""

    __slots__ = ("heap", "latest", "tickets", "total")

    def __init__(self) -> None:
        self.tickets: dict[str, tuple[int, float]] = {}
        self.heap: list[tuple[float, str]] = []
        self.total = 0
        self.latest = float("-inf")

    def place(self, ticket: str, amount: int, expires: float) -> None:
        old = self.tickets.get(ticket)
        if old is not None:
            self.total -= old[0]
        self.tickets[ticket] = (amount, expires)
        self.total += amount
        self.latest = max(self.latest, expires)
        heapq.heappush(self.heap, (expires, ticket))
        self._compact()

    def release(self, ticket: str) -> None:
        old = self.tickets.pop(ticket, None)
        if old is not None:
            self.total -= old[0]
            self._compact()

    def prune(self, now: float) -> None:
        """Drop the oldest dead holds, `PRUNE_LIMIT` at most (Redis: ZRANGEBYSCORE order)."""
        heap, tickets = self.heap, self.tickets
        pruned = 0
        while heap and heap[0][0] < now and pruned < PRUNE_LIMIT:
            expires, ticket = heapq.heappop(heap)
            cell = tickets.get(ticket)
            if cell is not None and cell[1] == expires:
                del tickets[ticket]
                self.total -= cell[0]
                pruned += 1

    def _compact(self) -> None:
        if len(self.heap) > 2 * len(self.tickets) + 64:
            self.heap = [(expires, ticket) for ticket, (_, expires) in self.tickets.items()]
            heapq.heapify(self.heap)


class LocalCounters:
    """Counters and hold sets in this process's memory. Expired counters are ignored when
    read; dead holds are pruned as in Redis (module docstring). A sweep once a minute (by
    the clock) drops expired counters and hold sets `HOLD_GRACE` seconds past their latest
    expiry."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float | None]] = {}  # name -> (value, expires)
        self._holds: dict[str, _HoldSet] = {}
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

    def _hold_total(self, holds: str, now: float) -> int:
        """The hold set's total after pruning its oldest dead holds."""
        held = self._holds.get(holds)
        if held is None:
            return 0
        held.prune(now)
        if not held.tickets:
            del self._holds[holds]
            return 0
        return held.total

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
        """The hold set's total, as an operation naming it sees it (its oldest dead holds
        pruned first)."""
        return self._hold_total(holds, self._clock())

    def holding(self, holds: str, ticket: str) -> bool:
        """Whether the hold set has `ticket` (live, or dead and not pruned yet)."""
        held = self._holds.get(holds)
        return held is not None and ticket in held.tickets

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
            values[name] = self._hold_total(name, now)
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
            return Result(passed=False, failed=failed, values=values)
        for add in op.adds:
            current, expires = self._current(op, add.counter, add.ttl, now)
            self._counters[add.counter] = (current + add.amount, expires)
        for floor in op.floors:
            current, expires = self._current(op, floor.counter, floor.ttl, now)
            self._counters[floor.counter] = (max(current, floor.minimum), expires)
        for hold in op.holds:
            held = self._holds.get(hold.holds)
            if held is None:
                held = self._holds[hold.holds] = _HoldSet()
            held.place(hold.ticket, hold.amount, hold.expires)
        for release in op.releases:
            held = self._holds.get(release.holds)
            if held is not None:
                held.release(release.ticket)
                if not held.tickets:
                    del self._holds[release.holds]
        return Result(passed=True, failed=None, values=values)

    def _current(
        self, op: Operation, name: str, ttl: int | None, now: float
    ) -> tuple[int, float | None]:
        """A counter about to change: its value (its seed when missing) and its expiry after
        the change (`ttl` as `Add.ttl`)."""
        current = self._get(name, now)
        expires = None
        if current is None:
            current = op.seed_of(name)
        else:
            expires = self._counters[name][1]
        if ttl is not None:
            expires = now + ttl
        return current, expires

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_EVERY
        gone = [n for n, (_, e) in self._counters.items() if e is not None and now >= e]
        for name in gone:
            del self._counters[name]
        dead = [n for n, held in self._holds.items() if now > held.latest + HOLD_GRACE]
        for name in dead:
            del self._holds[name]
