"""Fixed-size time buckets of one endpoint's attempts: what `LiveStats` keeps, stores and shares.

A `Bucket` counts the attempts of one endpoint in one stretch of wall-clock time (a UTC
minute, hour or day, its `Grain`): ok, failed and rate-limited attempts; latency (ms) and
throughput (tokens/s) of the successful ones as log-binned histograms; tokens and cost
of the successful ones. Buckets of the same stretch merge by adding, whichever replica
counted them, and travel as compact JSON (`to_json` / `from_json`) in a `BucketRow`
(the database table `endpoint_buckets`, Redis).

Histograms: bin i holds the values in [LOW * RATIO**i, LOW * RATIO**(i + 1)), RATIO = 1.04,
over [LOW, HIGH] = [0.01, 1e7] (values outside are clamped into the first or last bin), so
a histogram has at most `BINS` (529) bins however many values it counted. A bin is read as
its geometric middle, within a factor sqrt(1.04) of every value in it: relative resolution
+-2%. Each histogram also keeps the smallest and largest value it saw, so a read can be
clamped to them (a constant series reads exactly).

A `Ring` holds one endpoint's buckets of one source (this replica, a peer, the archive),
by grain and start, dropping buckets older than the grain's ring length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from crossroads.schema.stats import BucketRow as BucketRow  # where the statistics hand it out
from crossroads.telemetry.sample import AttemptSample, Verdict

LOW = 0.01
HIGH = 1e7
RATIO = 1.04
_LOG_RATIO = math.log(RATIO)
BINS = int(math.log(HIGH / LOW) / _LOG_RATIO) + 1  # 529
_FORMAT = 1  # bumped whenever the JSON shape or the binning changes


@dataclass(frozen=True, slots=True)
class Grain:
    """A bucket size: `seconds` long, `length` of them kept per endpoint."""

    name: str
    seconds: int
    length: int

    def start(self, now: float) -> int:
        """The start (epoch seconds, UTC) of the bucket holding the instant `now`."""
        return int(now // self.seconds) * self.seconds

    def span(self) -> int:
        return self.seconds * self.length


MINUTE = Grain("minute", 60, 60)  # 5 m and 30 m windows, the past hour's effective price
HOUR = Grain("hour", 3600, 25)  # the 1 d window
DAY = Grain("day", 86400, 31)  # per-day uptime for 30 days
GRAINS: tuple[Grain, ...] = (MINUTE, HOUR, DAY)  # finest first
GRAIN_BY_NAME: dict[str, Grain] = {g.name: g for g in GRAINS}


Point = tuple[int, float]  # a value's bin and the value, clamped into [LOW, HIGH]


def point(value: float | None) -> Point | None:
    """Where a value goes in a histogram (None for None or NaN)."""
    if value is None or value != value:
        return None
    if value <= LOW:
        return 0, LOW
    if value >= HIGH:
        return BINS - 1, HIGH
    return min(BINS - 1, int(math.log(value / LOW) / _LOG_RATIO)), value


def bin_value(index: int) -> float:
    """A bin's representative value: its geometric middle."""
    return float(LOW * RATIO ** (index + 0.5))


@dataclass(slots=True)
class Histogram:
    """Sparse log-binned counts (bin -> count), with the smallest and largest value seen."""

    counts: dict[int, int] = field(default_factory=dict)
    low: float = math.inf
    high: float = -math.inf

    def add(self, value: float) -> None:
        where = point(value)
        if where is not None:
            self.add_point(where)

    def add_point(self, where: Point) -> None:
        index, value = where
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value

    def merge(self, other: Histogram) -> None:
        counts = self.counts
        for index, count in other.counts.items():
            counts[index] = counts.get(index, 0) + count
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def copy(self) -> Histogram:
        return Histogram(dict(self.counts), self.low, self.high)

    def total(self) -> int:
        return sum(self.counts.values())

    def quantiles(self, qs: tuple[float, ...]) -> list[float] | None:
        """Nearest-rank quantiles (the value at 0-based rank min(n - 1, int(q * n)) in
        sorted order), each read as its bin's middle clamped to [low, high]; None when empty."""
        n = self.total()
        if n == 0:
            return None
        ranks = [min(n - 1, int(q * n)) for q in qs]
        order = sorted(range(len(ranks)), key=ranks.__getitem__)  # the lowest rank first
        out = [0.0] * len(ranks)
        found = seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            while found < len(order) and ranks[order[found]] < seen:
                out[order[found]] = min(self.high, max(self.low, bin_value(index)))
                found += 1
            if found == len(order):
                break
        return out

    def to_obj(self) -> dict[str, Any]:
        return {
            "bins": [[i, c] for i, c in sorted(self.counts.items())],
            "min": self.low if self.counts else None,
            "max": self.high if self.counts else None,
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Histogram:
        if not isinstance(obj, dict):
            raise ValueError("histogram: not an object")
        bins = obj.get("bins")
        if not isinstance(bins, list):
            raise ValueError("histogram: bins is not a list")
        counts: dict[int, int] = {}
        for pair in bins:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError("histogram: a bin is not a [index, count] pair")
            index, count = _int(pair[0]), _int(pair[1])
            if not 0 <= index < BINS or count < 0:
                raise ValueError(f"histogram: bin {index} x {count} out of range")
            if count:
                counts[index] = counts.get(index, 0) + count
        if not counts:
            return cls()
        low, high = _float(obj.get("min")), _float(obj.get("max"))
        return cls(counts, min(HIGH, max(LOW, low)), min(HIGH, max(LOW, high)))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"not a number: {value!r}")
    return float(value)


_COUNTS = ("ok", "failed", "rate_limited", "prompt_tokens", "completion_tokens")
_AMOUNTS = ("prompt_cost", "completion_cost")
_MAX_COST = 1e12  # USD in one bucket: anything more is not a reading, it is garbage


@dataclass(slots=True)
class Bucket:
    """One endpoint's attempts in one minute, hour or day (see the module docstring).

    Tokens, cost, latency and throughput count successful attempts only; a REFUSED
    attempt (the caller's own fault) changes nothing.
    """

    ok: int = 0
    failed: int = 0
    rate_limited: int = 0
    latency: Histogram = field(default_factory=Histogram)  # ms, time to first token
    throughput: Histogram = field(default_factory=Histogram)  # tokens/s after the first token
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_cost: float = 0.0  # USD
    completion_cost: float = 0.0  # USD

    def add(self, sample: AttemptSample) -> None:
        self.count(sample, point(sample.latency_ms), point(sample.throughput))

    def count(self, sample: AttemptSample, latency: Point | None, speed: Point | None) -> None:
        """Count a sample whose latency and throughput were already placed (`point`)."""
        verdict = sample.verdict
        if verdict is Verdict.OK:
            self.ok += 1
            if latency is not None:
                self.latency.add_point(latency)
            if speed is not None:
                self.throughput.add_point(speed)
            self.prompt_tokens += sample.prompt_tokens
            self.completion_tokens += sample.completion_tokens
            self.prompt_cost += sample.prompt_cost
            self.completion_cost += sample.completion_cost
        elif verdict is Verdict.FAILED:
            self.failed += 1
        elif verdict is Verdict.RATE_LIMITED:
            self.rate_limited += 1

    def merge(self, other: Bucket) -> None:
        """Add `other`'s counts into this bucket (in place)."""
        self.ok += other.ok
        self.failed += other.failed
        self.rate_limited += other.rate_limited
        self.latency.merge(other.latency)
        self.throughput.merge(other.throughput)
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.prompt_cost += other.prompt_cost
        self.completion_cost += other.completion_cost

    def copy(self) -> Bucket:
        return Bucket(
            self.ok,
            self.failed,
            self.rate_limited,
            self.latency.copy(),
            self.throughput.copy(),
            self.prompt_tokens,
            self.completion_tokens,
            self.prompt_cost,
            self.completion_cost,
        )

    @property
    def requests(self) -> int:
        """Attempts counted: ok, failed and rate-limited."""
        return self.ok + self.failed + self.rate_limited

    def uptime(self) -> float | None:
        """Percent of ok among ok + failed (rate limits aside), 2 decimals; None without any."""
        total = self.ok + self.failed
        return round(100.0 * self.ok / total, 2) if total else None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "v": _FORMAT,
                "ok": self.ok,
                "failed": self.failed,
                "rate_limited": self.rate_limited,
                "latency": self.latency.to_obj(),
                "throughput": self.throughput.to_obj(),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "prompt_cost": self.prompt_cost,
                "completion_cost": self.completion_cost,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Bucket:
        """The bucket `to_json` wrote; ValueError for anything else (another format too)."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"bucket: invalid JSON: {exc}") from None
        if not isinstance(obj, dict) or obj.get("v") != _FORMAT:
            raise ValueError("bucket: not a bucket of this format")
        counts = [_int(obj.get(name, 0)) for name in _COUNTS]
        if min(counts) < 0:
            raise ValueError("bucket: negative count")
        ok, failed, rate_limited, prompt_tokens, completion_tokens = counts
        prompt_cost, completion_cost = (_float(obj.get(name, 0.0)) for name in _AMOUNTS)
        if not (0.0 <= prompt_cost < _MAX_COST and 0.0 <= completion_cost < _MAX_COST):
            raise ValueError("bucket: cost out of range")
        return cls(
            ok,
            failed,
            rate_limited,
            Histogram.from_obj(obj.get("latency")),
            Histogram.from_obj(obj.get("throughput")),
            prompt_tokens,
            completion_tokens,
            prompt_cost,
            completion_cost,
        )


@dataclass(slots=True)
class Ring:
    """One endpoint's buckets from one source: grain name -> {start: bucket}."""

    buckets: dict[str, dict[int, Bucket]] = field(
        default_factory=lambda: {g.name: {} for g in GRAINS}
    )
    version: int = 0  # bumped on every change (read caches compare it)

    def prune(self, grain: Grain, now: float) -> list[int]:
        """Drop the buckets of `grain` older than its ring; the starts dropped."""
        oldest = grain.start(now) - grain.span()
        ring = self.buckets[grain.name]
        gone = [start for start in ring if start <= oldest]
        for start in gone:
            del ring[start]
        return gone

    def empty(self) -> bool:
        return not any(self.buckets.values())


def in_ring(grain: Grain, start: int, now: float) -> bool:
    """Whether a bucket starting at `start` is within its grain's ring at `now`: not older
    than the ring, and not later than the next bucket (a peer's clock a little ahead is
    tolerated; a bucket from further in the future would sit in every window forever)."""
    current = grain.start(now)
    return start % grain.seconds == 0 and current - grain.span() < start <= current + grain.seconds
