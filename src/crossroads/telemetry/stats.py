"""Live per-endpoint figures from real traffic: latency, throughput, uptime, outages.

Kept in memory, per process; updated after every attempt, read by the router and the
catalog API. Outcomes are counted in per-second buckets (outages, last 30 s) and
per-minute buckets (uptime, last day), so every read is bounded however busy an
endpoint is. Latency and throughput percentiles come from the latest 4,096 successful
attempts inside the window, recomputed at most once a second per endpoint.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

OUTAGE_WINDOW = 30.0
PERFORMANCE_WINDOW = 30 * 60.0
PREFERENCE_WINDOW = 5 * 60.0
_DAY_MINUTES = 1440
_MAX_SAMPLES = 4096
_Figures = tuple[dict[str, float] | None, dict[str, float] | None]  # latency, throughput
_PERCENTILES = (("p50", 0.50), ("p75", 0.75), ("p90", 0.90), ("p99", 0.99))


def percentiles(values: list[float]) -> dict[str, float] | None:
    """Nearest-rank percentiles, or None without data."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    return {name: ordered[min(last, int(q * len(ordered)))] for name, q in _PERCENTILES}


def _bump(buckets: deque[list[int]], key: int, index: int, limit: int) -> None:
    """Count one event in the bucket `key` (the newest), dropping buckets past `limit`."""
    if not buckets or buckets[-1][0] != key:
        buckets.append([key, 0, 0])
        while buckets[0][0] <= key - limit:
            buckets.popleft()
    buckets[-1][index] += 1


@dataclass(slots=True)
class EndpointStats:
    samples: deque[tuple[float, float, float | None]] = field(
        default_factory=lambda: deque(maxlen=_MAX_SAMPLES)
    )  # (t, latency ms, tokens/s)
    seconds: deque[list[int]] = field(
        default_factory=deque
    )  # [second, ok, failed]: every attempt, for outages
    minutes: deque[list[int]] = field(
        default_factory=deque
    )  # [minute, ok, failed]: rate limits excluded, for uptime
    cache: dict[tuple[float, int], _Figures] = field(default_factory=dict)


class LiveStats:
    """Rolling windows per endpoint id. `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._endpoints: dict[str, EndpointStats] = {}

    def _get(self, endpoint_id: str) -> EndpointStats:
        stats = self._endpoints.get(endpoint_id)
        if stats is None:
            stats = self._endpoints[endpoint_id] = EndpointStats()
        return stats

    def _outcome(self, stats: EndpointStats, ok: bool, counts_for_uptime: bool) -> float:
        now = self._clock()
        index = 1 if ok else 2
        _bump(stats.seconds, int(now), index, int(OUTAGE_WINDOW) + 1)
        if counts_for_uptime:
            _bump(stats.minutes, int(now // 60), index, _DAY_MINUTES)
        stats.cache.clear()
        return now

    def record_success(self, endpoint_id: str, latency_ms: float, throughput: float | None) -> None:
        stats = self._get(endpoint_id)
        now = self._outcome(stats, True, True)
        stats.samples.append((now, latency_ms, throughput))

    def record_failure(self, endpoint_id: str, *, rate_limited: bool = False) -> None:
        """A failed attempt; rate limits count toward outages but not against uptime."""
        self._outcome(self._get(endpoint_id), False, not rate_limited)

    def in_outage(self, endpoint_id: str) -> bool:
        """A significant outage: in the last 30 s, at least half of its attempts failed."""
        stats = self._endpoints.get(endpoint_id)
        if stats is None:
            return False
        since = int(self._clock() - OUTAGE_WINDOW)
        ok = failed = 0
        for second, good, bad in stats.seconds:
            if second >= since:
                ok, failed = ok + good, failed + bad
        return failed > 0 and failed >= ok

    def _figures(self, endpoint_id: str, window: float) -> _Figures:
        stats = self._endpoints.get(endpoint_id)
        if stats is None:
            return None, None
        now = self._clock()
        key = (window, int(now))
        cached = stats.cache.get(key)
        if cached is None:
            since = now - window
            recent = [s for s in stats.samples if s[0] >= since]
            cached = (
                percentiles([s[1] for s in recent]),
                percentiles([s[2] for s in recent if s[2] is not None]),
            )
            stats.cache[key] = cached
        return cached

    def latency(
        self, endpoint_id: str, window: float = PERFORMANCE_WINDOW
    ) -> dict[str, float] | None:
        """Time to first token, in milliseconds, as p50/p75/p90/p99."""
        return self._figures(endpoint_id, window)[0]

    def throughput(
        self, endpoint_id: str, window: float = PERFORMANCE_WINDOW
    ) -> dict[str, float] | None:
        """Output tokens per second after the first token, as p50/p75/p90/p99."""
        return self._figures(endpoint_id, window)[1]

    def uptime(self, endpoint_id: str, window: float) -> float | None:
        """Percent of attempts that succeeded in the window, by whole minutes (not rate limits)."""
        stats = self._endpoints.get(endpoint_id)
        if stats is None:
            return None
        first = int((self._clock() - window) // 60) + 1
        ok = total = 0
        for minute, good, bad in stats.minutes:
            if minute >= first:
                ok, total = ok + good, total + good + bad
        return round(100.0 * ok / total, 2) if total else None
