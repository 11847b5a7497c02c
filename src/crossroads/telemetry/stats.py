"""Live per-endpoint figures from real traffic: latency, throughput, uptime, effective price.

`LiveStats.observe()` runs after every attempt (the router's `StatsSink`): it adds the
sample to the current bucket of each grain (`buckets.py`: minute x 60, hour x 25,
day x 31, wall clock, UTC), a few dict updates. Memory per endpoint is bounded whatever
the traffic: rings drop buckets past their length and histograms have a bounded number
of bins (relative resolution +-2%, see `buckets.py`).

Reads merge three layers of buckets for the window: this replica's own, live peers'
(`update_peer`, from Redis) and the archive (`restore`: other instances' rows loaded from
the database at start). A window of W seconds counts the buckets of the finest grain whose
ring covers it (300 s, 1800 s, 3600 s: minutes; 86400 s: hours; longer: days) that start
after `now - W`, the current partial one included: figures hold only samples of the last
W seconds, and may miss the part of one bucket that straddles the window's start (within
bucket resolution). Uptime is ok / (ok + failed): rate limits and the caller's own errors
don't count. Latency and throughput are nearest-rank p50/p75/p90/p99 of the successful
attempts, each read as its histogram bin's middle clamped to the window's smallest and
largest value.

Reads are on the request path (sorts and thresholds): the merged buckets of a window are
cached per (endpoint, window) for the current whole second of the clock, all but this
replica's open bucket, which is added again only after an `observe()` of that endpoint.

Persistence and sharing: `take_dirty(consumer)` hands each consumer ("db", "redis") every
own bucket changed since that consumer's previous call (its first call: every own bucket
changed or restored since start); `own_rows()` every own bucket still in its ring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from crossroads.telemetry.buckets import (
    DAY,
    GRAIN_BY_NAME,
    GRAINS,
    Bucket,
    BucketRow,
    Grain,
    Histogram,
    Ring,
    in_ring,
    point,
)
from crossroads.telemetry.sample import AttemptSample, Verdict

log = logging.getLogger("crossroads.stats")

PERFORMANCE_WINDOW = 30 * 60.0  # latency and throughput shown per endpoint
PREFERENCE_WINDOW = 5 * 60.0  # what the router's preferred_* thresholds look at
PRICE_WINDOW = 3600.0  # effective price: the past hour
_QUANTILES = (0.50, 0.75, 0.90, 0.99)
_NAMES = ("p50", "p75", "p90", "p99")
_CACHE_LIMIT = 4096  # cached windows (endpoint x window); cleared whole past it

_Key = tuple[str, str, int]  # endpoint id, grain name, start


@dataclass(frozen=True, slots=True)
class DayUptime:
    """One UTC day of one endpoint."""

    date: str  # YYYY-MM-DD
    uptime: float | None  # percent, 2 decimals; None without ok or failed attempts
    requests: int  # attempts counted: ok, failed and rate-limited


@dataclass(frozen=True, slots=True)
class EffectivePrice:
    """What the past hour's successful attempts actually cost, in USD per million tokens."""

    prompt: float | None  # None without prompt tokens
    completion: float | None  # None without completion tokens
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One bucket of one endpoint's history, every layer merged (`LiveStats.series`)."""

    start: int  # epoch seconds (UTC) the bucket starts at
    requests: int  # attempts counted: ok, failed and rate-limited
    uptime: float | None  # percent of ok among ok + failed, 2 decimals; None without any
    latency_p50: float | None  # ms to the first token, median of the ok attempts
    throughput_p50: float | None  # tokens/s after the first token, median of the ok attempts


def grain_for(window: float) -> Grain:
    """The finest grain whose ring covers the window (days when none does)."""
    for grain in GRAINS:
        if window <= grain.span():
            return grain
    return GRAINS[-1]


def _percentiles(histogram: Histogram) -> dict[str, float] | None:
    values = histogram.quantiles(_QUANTILES)
    return None if values is None else dict(zip(_NAMES, values, strict=True))


@dataclass(slots=True)
class _Window:
    """One endpoint's merged buckets of one window, valid for one second of the clock."""

    second: int  # the clock's whole second it was built in
    layers: int  # LiveStats._layers when built
    grain: Grain
    start: int  # the own open bucket's start (not in `base`)
    base: Bucket  # every bucket of the window but the own open one
    version: int = -1  # the own ring's version `total` was merged at
    total: Bucket = field(default_factory=Bucket)
    latency: dict[str, float] | None = None
    throughput: dict[str, float] | None = None
    derived: int = 0  # which of latency (1) and throughput (2) are computed from `total`


class LiveStats:
    """Per-endpoint buckets of this replica, its live peers and the archive (module docstring).

    `instance` names this replica in the rows it hands out; `clock` (epoch seconds) is
    injectable for tests.
    """

    def __init__(self, *, instance: str, clock: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self._clock = clock
        self._own: dict[str, Ring] = {}  # endpoint id -> this replica's buckets
        self._peers: dict[str, dict[str, Ring]] = {}  # instance -> endpoint id -> buckets
        self._archive: dict[str, dict[str, Ring]] = {}  # instance -> endpoint id -> buckets
        self._layers = 0  # bumped whenever buckets other than own open ones change
        # own bucket -> the generation it last changed in; ordered by that generation
        self._touched: dict[_Key, int] = {}
        self._generation = 0  # bumped by every take_dirty()
        self._seen: dict[str, int] = {}  # consumer -> the generation of its last take_dirty()
        self._cache: dict[tuple[str, float], _Window] = {}

    # -- counting ----------------------------------------------------------------------

    def observe(self, sample: AttemptSample) -> None:
        """Count one attempt (REFUSED ones: nothing) in the current bucket of each grain."""
        if sample.verdict is Verdict.REFUSED:
            return
        now = self._clock()
        endpoint = sample.endpoint_id
        ring = self._own.get(endpoint)
        if ring is None:
            ring = self._own[endpoint] = Ring()
        ring.version += 1
        generation, touched = self._generation, self._touched
        ok = sample.verdict is Verdict.OK
        latency = point(sample.latency_ms) if ok else None
        speed = point(sample.throughput) if ok else None
        for grain in GRAINS:
            start = grain.start(now)
            buckets = ring.buckets[grain.name]
            bucket = buckets.get(start)
            if bucket is None:
                bucket = buckets[start] = Bucket()
                for gone in ring.prune(grain, now):
                    touched.pop((endpoint, grain.name, gone), None)
            bucket.count(sample, latency, speed)
            key = (endpoint, grain.name, start)
            if touched.get(key) != generation:
                touched.pop(key, None)
                touched[key] = generation  # to the end: `touched` stays ordered

    # -- reads -------------------------------------------------------------------------

    def latency(
        self, endpoint_id: str, window: float = PERFORMANCE_WINDOW
    ) -> dict[str, float] | None:
        """Time to first token (to the whole answer when not streamed), ms, p50/p75/p90/p99."""
        merged = self._window(endpoint_id, window)
        if not merged.derived & 1:
            merged.latency = _percentiles(merged.total.latency)
            merged.derived |= 1
        return None if merged.latency is None else dict(merged.latency)

    def throughput(
        self, endpoint_id: str, window: float = PERFORMANCE_WINDOW
    ) -> dict[str, float] | None:
        """Output tokens per second after the first token, p50/p75/p90/p99."""
        merged = self._window(endpoint_id, window)
        if not merged.derived & 2:
            merged.throughput = _percentiles(merged.total.throughput)
            merged.derived |= 2
        return None if merged.throughput is None else dict(merged.throughput)

    def uptime(self, endpoint_id: str, window: float) -> float | None:
        """Percent of ok among ok + failed attempts in the window, 2 decimals (None: none)."""
        return self._window(endpoint_id, window).total.uptime()

    def requests(self, endpoint_id: str, window: float) -> int:
        """Attempts counted in the window: ok, failed and rate-limited."""
        return self._window(endpoint_id, window).total.requests

    def effective_price(self, endpoint_id: str) -> EffectivePrice | None:
        """Cost per million tokens of the past hour's successful attempts; None without tokens."""
        total = self._window(endpoint_id, PRICE_WINDOW).total
        prompt, completion = total.prompt_tokens, total.completion_tokens
        if not prompt and not completion:
            return None
        return EffectivePrice(
            prompt=total.prompt_cost / prompt * 1e6 if prompt else None,
            completion=total.completion_cost / completion * 1e6 if completion else None,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    def daily_uptime(self, endpoint_id: str, days: int = 30) -> list[DayUptime]:
        """Uptime per UTC day, the last `days` days (today, so far, last); oldest first."""
        today = DAY.start(self._clock())
        rings = self._rings(endpoint_id)
        out: list[DayUptime] = []
        for back in range(days - 1, -1, -1):
            start = today - back * DAY.seconds
            day = Bucket()
            for ring in rings:
                bucket = ring.buckets[DAY.name].get(start)
                if bucket is not None:
                    day.merge(bucket)
            date = datetime.fromtimestamp(start, UTC).date().isoformat()
            out.append(DayUptime(date=date, uptime=day.uptime(), requests=day.requests))
        return out

    def series(self, endpoint_id: str, grain: str = "hour") -> list[SeriesPoint]:
        """One point per bucket of `grain` ("minute" | "hour" | "day") still in its ring,
        oldest first, the current (partial) bucket last: 60 minutes, 25 hours or 31 days.
        A bucket without attempts is a point with 0 requests and None figures."""
        found = GRAIN_BY_NAME.get(grain)
        if found is None:
            raise ValueError(f"unknown grain {grain!r}: one of {', '.join(GRAIN_BY_NAME)}")
        current = found.start(self._clock())
        buckets = [ring.buckets[found.name] for ring in self._rings(endpoint_id)]
        out: list[SeriesPoint] = []
        for back in range(found.length - 1, -1, -1):
            start = current - back * found.seconds
            merged = Bucket()
            for ring in buckets:
                bucket = ring.get(start)
                if bucket is not None:
                    merged.merge(bucket)
            latency = merged.latency.quantiles((0.5,))
            speed = merged.throughput.quantiles((0.5,))
            out.append(
                SeriesPoint(
                    start=start,
                    requests=merged.requests,
                    uptime=merged.uptime(),
                    latency_p50=None if latency is None else latency[0],
                    throughput_p50=None if speed is None else speed[0],
                )
            )
        return out

    def _rings(self, endpoint_id: str) -> list[Ring]:
        """The endpoint's buckets from every layer: own, peers, archive."""
        rings = [layer[endpoint_id] for layer in self._peers.values() if endpoint_id in layer]
        rings += [layer[endpoint_id] for layer in self._archive.values() if endpoint_id in layer]
        own = self._own.get(endpoint_id)
        if own is not None:
            rings.append(own)
        return rings

    def _window(self, endpoint_id: str, window: float) -> _Window:
        now = self._clock()
        second = int(now)
        own = self._own.get(endpoint_id)
        key = (endpoint_id, window)
        merged = self._cache.get(key)
        if merged is None or merged.second != second or merged.layers != self._layers:
            merged = self._build(endpoint_id, window, now, own)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = merged
        version = 0 if own is None else own.version
        if merged.version != version:
            total = merged.base.copy()
            if own is not None:
                open_bucket = own.buckets[merged.grain.name].get(merged.start)
                if open_bucket is not None:
                    total.merge(open_bucket)
            merged.total, merged.version, merged.derived = total, version, 0
        return merged

    def _build(self, endpoint_id: str, window: float, now: float, own: Ring | None) -> _Window:
        grain = grain_for(window)
        since, start = now - window, grain.start(now)
        base = Bucket()
        for ring in self._rings(endpoint_id):
            is_own = ring is own
            for begin, bucket in ring.buckets[grain.name].items():
                if begin > since and not (is_own and begin == start):
                    base.merge(bucket)
        return _Window(int(now), self._layers, grain, start, base)

    # -- persistence and sharing -------------------------------------------------------

    def take_dirty(self, consumer: str) -> list[BucketRow]:
        """Own buckets changed since `consumer`'s previous call (its first: every one)."""
        seen = self._seen.get(consumer, -1)
        rows: list[BucketRow] = []
        for (endpoint, grain, start), generation in reversed(self._touched.items()):
            if generation <= seen:
                break
            bucket = self._own[endpoint].buckets[grain][start]
            rows.append(BucketRow(self.instance, endpoint, grain, start, bucket.to_json()))
        self._seen[consumer] = self._generation
        self._generation += 1
        rows.reverse()
        return rows

    def own_rows(self) -> list[BucketRow]:
        """Every own bucket still in its ring (for a peer that joins late)."""
        now = self._clock()
        rows: list[BucketRow] = []
        for endpoint, ring in self._own.items():
            for grain in GRAINS:
                for start, bucket in ring.buckets[grain.name].items():
                    if in_ring(grain, start, now):
                        rows.append(
                            BucketRow(self.instance, endpoint, grain.name, start, bucket.to_json())
                        )
        return rows

    def restore(self, rows: Iterable[BucketRow]) -> None:
        """At start: rows of this instance become own buckets again (added to any counted
        since start; handed out again by take_dirty), other instances' rows the archive.
        Call once. Rows older than their ring, or unreadable, are skipped."""
        now = self._clock()
        skipped = 0
        for row in rows:
            decoded = self._decode(row, now)
            if decoded is None:
                skipped += 1
                continue
            grain, bucket = decoded
            if row.instance == self.instance:
                ring = self._own.setdefault(row.endpoint_id, Ring())
                buckets = ring.buckets[grain.name]
                present = buckets.get(row.start)
                if present is None:
                    buckets[row.start] = bucket
                else:
                    present.merge(bucket)
                ring.version += 1
                key = (row.endpoint_id, grain.name, row.start)
                self._touched.pop(key, None)
                self._touched[key] = self._generation
            else:
                layer = self._archive.setdefault(row.instance, {})
                ring = layer.setdefault(row.endpoint_id, Ring())
                ring.buckets[grain.name][row.start] = bucket
        self._layers += 1
        if skipped:
            log.warning("restore: %d bucket rows skipped (too old or unreadable)", skipped)

    def update_peer(self, rows: Iterable[BucketRow]) -> None:
        """A live replica's buckets, each replacing the one of the same key (own rows:
        ignored)."""
        now = self._clock()
        skipped = 0
        for row in rows:
            if row.instance == self.instance:
                continue
            decoded = self._decode(row, now)
            if decoded is None:
                skipped += 1
                continue
            grain, bucket = decoded
            ring = self._peers.setdefault(row.instance, {}).setdefault(row.endpoint_id, Ring())
            ring.buckets[grain.name][row.start] = bucket
            ring.prune(grain, now)
        self._layers += 1
        if skipped:
            log.warning("update_peer: %d bucket rows skipped (too old or unreadable)", skipped)

    def drop_peer(self, instance: str) -> None:
        """A replica that stopped: its buckets no longer count."""
        if self._peers.pop(instance, None) is not None:
            self._layers += 1

    def forget_archive(self, instance: str) -> None:
        """Drop the archived rows of an instance (a live peer now shares them itself)."""
        if self._archive.pop(instance, None) is not None:
            self._layers += 1

    @staticmethod
    def _decode(row: BucketRow, now: float) -> tuple[Grain, Bucket] | None:
        grain = GRAIN_BY_NAME.get(row.grain)
        if grain is None or not in_ring(grain, row.start, now):
            return None
        try:
            return grain, Bucket.from_json(row.data)
        except ValueError as exc:
            log.debug("bucket row %s/%s/%s unreadable: %s", row.instance, row.grain, row.start, exc)
            return None


__all__ = [
    "Bucket",
    "BucketRow",
    "DayUptime",
    "EffectivePrice",
    "LiveStats",
    "SeriesPoint",
    "grain_for",
]
