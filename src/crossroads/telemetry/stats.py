"""Live per-endpoint figures from real traffic: latency, throughput, uptime, outages.

Kept in memory, per process; updated after every attempt, read by the router and the
catalog API. Percentiles are recomputed at most once a second per endpoint.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

OUTAGE_WINDOW = 30.0
PERFORMANCE_WINDOW = 30 * 60.0
PREFERENCE_WINDOW = 5 * 60.0
_MAX_SAMPLES = 4096
_PERCENTILES = (("p50", 0.50), ("p75", 0.75), ("p90", 0.90), ("p99", 0.99))


def percentiles(values: list[float]) -> dict[str, float] | None:
    """Nearest-rank percentiles, or None without data."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    return {name: ordered[min(last, int(q * len(ordered)))] for name, q in _PERCENTILES}


@dataclass(slots=True)
class EndpointStats:
    # (time, latency ms, throughput tokens/s or None) for successful attempts
    samples: deque = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    # (time, ok, counts for uptime) for every attempt: outages and short-window uptime
    outcomes: deque = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    # minute -> [ok, failed] for the day-long uptime
    minutes: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)


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
        stats.outcomes.append((now, ok, counts_for_uptime))
        if counts_for_uptime:
            minute = int(now // 60)
            bucket = stats.minutes.setdefault(minute, [0, 0])
            bucket[0 if ok else 1] += 1
            if len(stats.minutes) > 1500:
                for old in [m for m in stats.minutes if m < minute - 1440]:
                    del stats.minutes[old]
        stats._cache.clear()
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
        since = self._clock() - OUTAGE_WINDOW
        ok = failed = 0
        for t, success, _ in reversed(stats.outcomes):
            if t < since:
                break
            if success:
                ok += 1
            else:
                failed += 1
        return failed > 0 and failed >= ok

    def _figures(self, endpoint_id: str, window: float) -> tuple[dict | None, dict | None]:
        stats = self._endpoints.get(endpoint_id)
        if stats is None:
            return None, None
        now = self._clock()
        key = (window, int(now))
        cached = stats._cache.get(key)
        if cached is None:
            since = now - window
            recent = [s for s in stats.samples if s[0] >= since]
            cached = (
                percentiles([s[1] for s in recent]),
                percentiles([s[2] for s in recent if s[2] is not None]),
            )
            stats._cache[key] = cached
        return cached

    def latency(self, endpoint_id: str, window: float = PERFORMANCE_WINDOW) -> dict[str, float] | None:
        """Time to first token, in milliseconds, as p50/p75/p90/p99."""
        return self._figures(endpoint_id, window)[0]

    def throughput(self, endpoint_id: str, window: float = PERFORMANCE_WINDOW) -> dict[str, float] | None:
        """Output tokens per second after the first token, as p50/p75/p90/p99."""
        return self._figures(endpoint_id, window)[1]

    def uptime(self, endpoint_id: str, window: float) -> float | None:
        """Percent of attempts that succeeded in the window (rate limits excluded)."""
        stats = self._endpoints.get(endpoint_id)
        if stats is None:
            return None
        now = self._clock()
        if window <= OUTAGE_WINDOW * 20:  # short windows: exact, from the outcome log
            since = now - window
            hits = [ok for t, ok, counted in stats.outcomes if t >= since and counted]
            ok, total = sum(hits), len(hits)
        else:
            first = int((now - window) // 60)
            ok = total = 0
            for minute, (good, bad) in stats.minutes.items():
                if minute >= first:
                    ok, total = ok + good, total + good + bad
        return round(100.0 * ok / total, 2) if total else None
