"""What `SharedCounters` counted in its local copy that Redis must still get (`Pending`).

While Redis is unreachable an operation is applied locally and what it changed is kept,
merged, until Redis answers again:
- per counter, the sum of its adds (a delta) and its latest TTL;
- per counter, the highest floor, applied after the delta: an add counted after a floor
  raises the floor as much, so `max(redis + delta, floor)` is what the local copy did;
- per hold, the latest placement; per ticket, its release, unless the hold was placed during
  the outage too and Redis never had that ticket (then both go: nothing grows per request).
An operation that may have reached Redis (it failed on the way) is kept whole instead, as a
`Batch` under its claim number, so it is counted once whether it ran or not.

`take` turns the merged changes into batches of `BATCH_SIZE` at most (a floor never goes
before its counter's delta); counters and holds that expired here meanwhile are dropped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from crossroads.limits.counters import Add, Floor, Hold, LocalCounters, Operation, Release

BATCH_SIZE = 500  # pending changes pushed by one script run


@dataclass(slots=True)
class Batch:
    """Changes counted locally that Redis must get once: under claim number `seq`."""

    seq: int
    op: Operation  # adds, floors, holds and releases only
    refused: int = 0  # pushes Redis answered with an error


class Pending:
    """The changes the local copy `local` has and Redis may not (module docstring)."""

    def __init__(self, local: LocalCounters, clock: Callable[[], float]) -> None:
        self._local = local
        self._clock = clock
        self._deltas: dict[str, tuple[int, int | None]] = {}  # counter -> (delta, ttl)
        self._floors: dict[str, tuple[int, int | None]] = {}  # counter -> (minimum, ttl)
        # (holds, ticket) -> (hold, whether Redis may have an older hold under the ticket)
        self._holds: dict[tuple[str, str], tuple[Hold, bool]] = {}
        self._releases: dict[tuple[str, str], Release] = {}
        self.batches: list[Batch] = []  # may have reached Redis, or failed to push

    def count(self) -> int:
        """How many changes are pending."""
        count = len(self._deltas) + len(self._floors) + len(self._holds) + len(self._releases)
        for batch in self.batches:
            op = batch.op
            count += len(op.adds) + len(op.floors) + len(op.holds) + len(op.releases)
        return count

    def unsent(self) -> bool:
        """Whether merged changes wait (not yet in a batch)."""
        return bool(self._deltas or self._floors or self._holds or self._releases)

    # -- noting ------------------------------------------------------------------------------

    def keep_whole(self, seq: int, op: Operation | None) -> None:
        """`op` (None: it failed its checks) may have reached Redis under claim `seq`."""
        if op is None:
            self.batches.append(Batch(seq, Operation()))
            return
        changes = Operation(
            adds=op.adds, floors=op.floors, holds=op.holds, releases=op.releases, seeds=op.seeds
        )
        self.batches.append(Batch(seq, changes))

    def remember(self, op: Operation, known: set[tuple[str, str]]) -> None:
        """Note what a locally applied (passed) `op` changed. `known`: the tickets it holds
        that the local copy had before (Redis may have them too)."""
        for add in op.adds:
            delta, ttl = self._deltas.get(add.counter, (0, None))
            self._deltas[add.counter] = (delta + add.amount, add.ttl or ttl)
            floor = self._floors.get(add.counter)
            if floor is not None:  # the floor is pushed after this delta: raise it as much
                self._floors[add.counter] = (floor[0] + add.amount, floor[1])
        for new in op.floors:
            floor = self._floors.get(new.counter)
            if floor is None:
                self._floors[new.counter] = (new.minimum, new.ttl)
            else:
                self._floors[new.counter] = (max(floor[0], new.minimum), new.ttl or floor[1])
        for hold in op.holds:
            key = (hold.holds, hold.ticket)
            if self._releases.pop(key, None) is not None:
                older = True  # released while pending: Redis has it
            elif key in self._holds:
                older = self._holds[key][1]
            else:
                older = key in known
            self._holds[key] = (hold, older)
        for release in op.releases:
            key = (release.holds, release.ticket)
            pending = self._holds.pop(key, None)
            if pending is None or pending[1]:  # else: Redis never got that ticket
                self._releases[key] = release

    # -- reading -----------------------------------------------------------------------------

    def outstanding(self) -> dict[str, int]:
        """Per counter, the adds the local copy counted that Redis may not have yet."""
        totals = {name: delta for name, (delta, _) in self._deltas.items()}
        for batch in self.batches:
            for add in batch.op.adds:
                totals[add.counter] = totals.get(add.counter, 0) + add.amount
        return totals

    def on_top(self, values: Mapping[str, int]) -> dict[str, int]:
        """Redis's `values` with what it does not have yet (the merged floors included)."""
        if not (self._deltas or self._floors or self.batches):
            return dict(values)
        outstanding = self.outstanding()
        result = {}
        for name, value in values.items():
            value += outstanding.get(name, 0)
            floor = self._floors.get(name)
            result[name] = value if floor is None else max(value, floor[0])
        return result

    # -- pushing -----------------------------------------------------------------------------

    def take(self, seq: int) -> Batch:
        """Merged changes (`BATCH_SIZE` at most) as one batch under claim number `seq`,
        appended to `batches`."""
        now = self._clock()
        adds: list[Add] = []
        for name in list(itertools.islice(self._deltas, BATCH_SIZE)):
            delta, ttl = self._deltas.pop(name)
            if self._local.value(name) is None:
                continue  # expired here meanwhile (its window is over)
            adds.append(Add(counter=name, amount=delta, ttl=self._ttl_left(name, now, ttl)))
        floors: list[Floor] = []
        for name in list(itertools.islice(self._floors, BATCH_SIZE - len(adds))):
            if name in self._deltas:
                continue  # its delta goes in a later batch: so does the floor
            minimum, ttl = self._floors.pop(name)
            if self._local.value(name) is not None:
                ttl = self._ttl_left(name, now, ttl)
                floors.append(Floor(counter=name, minimum=minimum, ttl=ttl))
        holds: list[Hold] = []
        room = BATCH_SIZE - len(adds) - len(floors)
        for key in list(itertools.islice(self._holds, room)):
            hold, _ = self._holds.pop(key)
            if hold.expires >= now:
                holds.append(hold)
        room -= len(holds)
        releases = [self._releases.pop(k) for k in list(self._releases)[:room]]
        op = Operation(
            adds=tuple(adds), floors=tuple(floors), holds=tuple(holds), releases=tuple(releases)
        )
        batch = Batch(seq, op)
        self.batches.append(batch)
        return batch

    def _ttl_left(self, name: str, now: float, ttl: int | None) -> int | None:
        """The TTL to push with a pending change: what the local copy has left, else `ttl`."""
        expires = self._local.expires(name)
        if expires is not None:
            return max(1, math.ceil(expires - now))
        return ttl
