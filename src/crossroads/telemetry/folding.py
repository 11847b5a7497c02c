"""The statistics folder: live statistics' buckets into the database, and back at start.

Every `interval` seconds (settings.stats_flush_interval_seconds) `StatsFolder` takes the
buckets of this replica changed since its previous round (`LiveStats.take_dirty("db")`)
and saves them (`BucketStore.save`: insert or replace by instance, endpoint, grain and
start), once more at `close()`. When the database cannot be reached the rows are kept
(newest of each bucket) and saved at the next round: nothing is lost but what a crash
takes with it (at most one interval's changes); while it lasts, rows that leave their
grain's ring are dropped (memory stays bounded). It logs the first failure and the
recovery, not every round.

At start, `load()` hands `LiveStats.restore` every stored row still within its grain's
ring (this replica's own rows, and other instances' as the archive layer), so a restart
forgets nothing of the last 30 days. Rows past their ring are pruned at start and every
`prune_every` seconds: a stored endpoint keeps at most 60 minute, 25 hour and 31 day rows
per replica.

The folder writes through `BucketSink`, a protocol (telemetry does not import storage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from crossroads.telemetry.buckets import GRAIN_BY_NAME, GRAINS, BucketRow, in_ring
from crossroads.telemetry.stats import LiveStats

log = logging.getLogger("crossroads.stats")

CONSUMER = "db"  # this folder's name for LiveStats.take_dirty


class BucketSink(Protocol):
    """Where the buckets go (`storage.BucketStore`). Cutoffs are epoch seconds per grain."""

    async def save(self, rows: Sequence[BucketRow]) -> None:
        """Insert or replace each row by (instance, endpoint_id, grain, start)."""

    async def load(self, since: Mapping[str, int]) -> Sequence[BucketRow]:
        """Every instance's rows starting at or after their grain's cutoff."""

    async def prune(self, before: Mapping[str, int]) -> int:
        """Delete the rows starting before their grain's cutoff."""


def ring_cutoffs(now: float) -> dict[str, int]:
    """Per grain, the earliest start a bucket still in its ring can have at `now`."""
    return {g.name: g.start(now) - g.span() + g.seconds for g in GRAINS}


class StatsFolder:
    """Folds `stats`' buckets into `store` (module docstring)."""

    def __init__(
        self,
        stats: LiveStats,
        store: BucketSink,
        *,
        interval: float = 10.0,
        prune_every: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stats = stats
        self._store = store
        self._interval = interval
        self._prune_every = prune_every
        self._clock = clock
        self._unsaved: dict[tuple[str, str, str, int], BucketRow] = {}
        self._failing = False
        self._pruned_at = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one fold at a time: the task and close()
        self.saved = 0  # rows saved since start
        self.failures = 0  # rounds that could not reach the database

    async def load(self) -> int:
        """Restore the stored buckets into the live statistics; how many rows were read.
        A database that cannot be read leaves them empty (logged), never fails the start."""
        now = self._clock()
        try:
            await self._prune(now)
        except Exception as error:
            log.warning("cannot prune old endpoint statistics (%s)", error)
        try:
            stored = await self._store.load(ring_cutoffs(now))
        except Exception:
            log.exception("cannot load the stored endpoint statistics; starting without them")
            return 0
        rows = [BucketRow(r.instance, r.endpoint_id, r.grain, int(r.start), r.data) for r in stored]
        self._stats.restore(rows)
        return len(rows)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="crossroads-stats-folder")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.fold()
            except Exception:  # a bug here must not stop the folder
                log.exception("the statistics folder's round failed; retrying")

    async def fold(self) -> bool:
        """Save the buckets changed since the last round; False if the database could not
        take them (they are kept for the next round)."""
        async with self._lock:
            for row in self._stats.take_dirty(CONSUMER):
                self._unsaved[(row.instance, row.endpoint_id, row.grain, row.start)] = row
            if self._failing:  # a long outage: what left its ring will not be loaded again
                now = self._clock()
                for key, row in list(self._unsaved.items()):
                    grain = GRAIN_BY_NAME.get(row.grain)
                    if grain is None or not in_ring(grain, row.start, now):
                        del self._unsaved[key]
            if self._unsaved:
                rows = list(self._unsaved.values())
                try:
                    await self._store.save(rows)
                except Exception as error:
                    self.failures += 1
                    if not self._failing:
                        log.error("cannot save endpoint statistics (%s); retrying", error)
                    self._failing = True
                    return False
                self._unsaved.clear()  # the lock: nothing was added meanwhile
                self.saved += len(rows)
                if self._failing:
                    log.warning("endpoint statistics are saved again")
                    self._failing = False
            now = self._clock()
            if now - self._pruned_at >= self._prune_every:
                try:
                    await self._prune(now)
                except Exception as error:
                    log.warning("cannot prune old endpoint statistics (%s)", error)
            return True

    async def _prune(self, now: float) -> None:
        self._pruned_at = now
        await self._store.prune(ring_cutoffs(now))

    async def close(self) -> None:
        """Stop the task and save what changed since its last round (a few tries)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for attempt in range(3):
            if await self.fold():
                return
            await asyncio.sleep(0.2 * 2**attempt)
        log.error("%d endpoint statistics rows could not be saved at shutdown", len(self._unsaved))
