"""LiveStats and its buckets, in memory with an injected clock: figures match what was injected."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from crossroads.telemetry.buckets import BINS, GRAINS, Bucket, BucketRow, Histogram
from crossroads.telemetry.sample import AttemptSample, Verdict
from crossroads.telemetry.stats import DayUptime, EffectivePrice, LiveStats

RESOLUTION = 0.0199  # sqrt(1.04) - 1: the stated relative resolution of a percentile
DAY0 = 1_700_006_400  # a UTC midnight (2023-11-15)
NAMES = ("p50", "p75", "p90", "p99")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(
    verdict: Verdict = Verdict.OK,
    *,
    endpoint: str = "m/x@p",
    latency: float | None = None,
    throughput: float | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    prompt_cost: float = 0.0,
    completion_cost: float = 0.0,
) -> AttemptSample:
    return AttemptSample(
        endpoint_id=endpoint,
        provider="p",
        model="m/x",
        verdict=verdict,
        latency_ms=latency,
        throughput=throughput,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_cost=prompt_cost,
        completion_cost=completion_cost,
    )


def near(value: float) -> object:
    """Equal within the stated resolution of a percentile."""
    return pytest.approx(value, rel=RESOLUTION)


def nearest_rank(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    n = len(ordered)
    return {
        name: ordered[min(n - 1, int(q * n))]
        for name, q in zip(NAMES, (0.5, 0.75, 0.9, 0.99), strict=True)
    }


def test_percentiles_match_injected_latency_and_throughput() -> None:
    clock = Clock(DAY0 + 3600)
    stats = LiveStats(instance="a", clock=clock)
    rng = random.Random(7)
    latencies = [100.0 + i for i in range(1000)]  # evenly over 100..1100 ms
    speeds = [rng.uniform(5, 400) for _ in range(1000)]
    rng.shuffle(latencies)
    for i, (latency, speed) in enumerate(zip(latencies, speeds, strict=True)):
        clock.now = DAY0 + 3600 + i * 0.9  # 15 minutes: spread over many minute buckets
        stats.observe(sample(latency=latency, throughput=speed))
    latency, throughput = stats.latency("m/x@p"), stats.throughput("m/x@p")
    assert latency is not None and throughput is not None
    want_latency, want_speed = nearest_rank(latencies), nearest_rank(speeds)
    for name in NAMES:
        assert latency[name] == pytest.approx(want_latency[name], rel=RESOLUTION)
        assert throughput[name] == pytest.approx(want_speed[name], rel=RESOLUTION)
    assert latency["p50"] == pytest.approx(600, rel=0.05)
    assert latency["p99"] == pytest.approx(1090, rel=0.05)
    assert latency["p50"] < latency["p75"] < latency["p90"] < latency["p99"] <= max(latencies)
    assert stats.latency("m/x@q") is None and stats.throughput("m/x@q") is None


def test_constant_series_reads_exactly_and_failures_have_no_latency() -> None:
    stats = LiveStats(instance="a", clock=Clock(DAY0))
    for _ in range(5):
        stats.observe(sample(latency=250.0, throughput=None))
    stats.observe(sample(Verdict.FAILED, latency=9000.0))
    stats.observe(sample(Verdict.RATE_LIMITED, latency=9000.0))
    assert stats.latency("m/x@p", 300) == dict.fromkeys(NAMES, 250.0)
    assert stats.throughput("m/x@p", 300) is None  # no ok attempt reported a speed


def test_windows_five_minutes_thirty_minutes_and_a_day() -> None:
    clock = Clock(DAY0 + 5)
    stats = LiveStats(instance="a", clock=clock)
    for _ in range(10):
        stats.observe(sample(latency=1000.0, throughput=20.0))
    clock.now = DAY0 + 20 * 60
    for _ in range(90):
        stats.observe(sample(latency=100.0, throughput=80.0))
    clock.now = DAY0 + 20 * 60 + 30
    assert stats.latency("m/x@p", 300) == dict.fromkeys(NAMES, 100.0)
    thirty = stats.latency("m/x@p", 1800)
    assert thirty is not None and thirty["p50"] == near(100.0) and thirty["p99"] == near(1000.0)
    assert thirty["p90"] == near(1000.0)  # 90 of 100 samples took 100 ms
    assert stats.latency("m/x@p", 86400) == thirty
    assert stats.throughput("m/x@p")["p50"] == near(80.0)  # type: ignore[index]
    assert stats.requests("m/x@p", 300) == 90 and stats.requests("m/x@p", 86400) == 100

    clock.now = DAY0 + 40 * 60  # the first samples left the 30 m window, not the day
    assert stats.latency("m/x@p", 1800) == dict.fromkeys(NAMES, 100.0)
    assert stats.latency("m/x@p", 300) is None
    day = stats.latency("m/x@p", 86400)
    assert day is not None and day["p99"] == near(1000.0)
    assert stats.requests("m/x@p", 1800) == 90 and stats.requests("m/x@p", 86400) == 100

    clock.now = DAY0 + 20 * 3600 + 30  # the first hour bucket is still within a day
    assert stats.requests("m/x@p", 86400) == 100
    clock.now = DAY0 + 25 * 3600
    assert stats.latency("m/x@p", 86400) is None and stats.requests("m/x@p", 86400) == 0


def test_uptime_per_window_ignores_rate_limits_and_refusals() -> None:
    clock = Clock(DAY0 + 7200)
    stats = LiveStats(instance="a", clock=clock)
    for _ in range(5):
        stats.observe(sample(Verdict.FAILED))
    clock.now += 10 * 60
    for verdict, times in ((Verdict.OK, 3), (Verdict.FAILED, 1), (Verdict.RATE_LIMITED, 5)):
        for _ in range(times):
            stats.observe(sample(verdict, latency=100.0))
    for _ in range(4):
        stats.observe(sample(Verdict.REFUSED, latency=100.0))
    assert stats.uptime("m/x@p", 300) == 75.0
    assert stats.uptime("m/x@p", 1800) == round(100 * 3 / 9, 2) == 33.33
    assert stats.uptime("m/x@p", 86400) == 33.33
    assert stats.requests("m/x@p", 300) == 9 and stats.requests("m/x@p", 1800) == 14
    clock.now += 3 * 3600
    assert stats.uptime("m/x@p", 1800) is None and stats.uptime("m/x@p", 86400) == 33.33
    only_limits = LiveStats(instance="a", clock=clock)
    only_limits.observe(sample(Verdict.RATE_LIMITED))
    only_limits.observe(sample(Verdict.REFUSED))
    assert only_limits.uptime("m/x@p", 300) is None
    assert only_limits.requests("m/x@p", 300) == 1


def test_daily_uptime_for_thirty_days() -> None:
    clock = Clock(DAY0)
    stats = LiveStats(instance="a", clock=clock)
    for d in range(35):
        if d == 20:
            continue  # a quiet day
        clock.now = DAY0 + d * 86400 + 12 * 3600
        for verdict, times in (
            (Verdict.OK, d + 1),
            (Verdict.FAILED, d % 4),
            (Verdict.RATE_LIMITED, 2),
            (Verdict.REFUSED, 3),
        ):
            for _ in range(times):
                stats.observe(sample(verdict, latency=50.0))
    clock.now = DAY0 + 34 * 86400 + 13 * 3600
    days = stats.daily_uptime("m/x@p")
    assert len(days) == 30
    expected = []
    for d in range(5, 35):
        date = datetime.fromtimestamp(DAY0 + d * 86400, UTC).date().isoformat()
        if d == 20:
            expected.append(DayUptime(date=date, uptime=None, requests=0))
        else:
            uptime = round(100 * (d + 1) / (d + 1 + d % 4), 2)
            expected.append(DayUptime(date=date, uptime=uptime, requests=d + 1 + d % 4 + 2))
    assert days == expected
    assert days[0].date == "2023-11-20" and days[-1].date == "2023-12-19"
    assert [d.date for d in stats.daily_uptime("m/x@p", days=2)] == ["2023-12-18", "2023-12-19"]


def test_effective_price_over_the_past_hour() -> None:
    clock = Clock(DAY0 + 10 * 3600)
    stats = LiveStats(instance="a", clock=clock)
    stats.observe(sample(prompt_tokens=10**6, prompt_cost=500.0, completion_tokens=10**6))
    clock.now += 2 * 3600
    assert stats.effective_price("m/x@p") is None  # older than an hour
    stats.observe(
        sample(prompt_tokens=1000, prompt_cost=0.002, completion_tokens=500, completion_cost=0.005)
    )
    clock.now += 30 * 60
    stats.observe(sample(prompt_tokens=3000, prompt_cost=0.003))
    stats.observe(sample(Verdict.FAILED, prompt_tokens=10**6, prompt_cost=9.0))
    price = stats.effective_price("m/x@p")
    assert isinstance(price, EffectivePrice)
    assert price.prompt == pytest.approx(1.25) and price.completion == pytest.approx(10.0)
    assert (price.prompt_tokens, price.completion_tokens) == (4000, 500)
    clock.now += 31 * 60  # the first of the two left the past hour
    price = stats.effective_price("m/x@p")
    assert price is not None and price.prompt == pytest.approx(1.0) and price.completion is None
    assert price.prompt_tokens == 3000 and price.completion_tokens == 0


def test_memory_is_bounded_whatever_the_traffic() -> None:
    clock = Clock(DAY0)
    stats = LiveStats(instance="a", clock=clock)
    rng = random.Random(3)
    for i in range(100_000):
        clock.now = DAY0 + i * 40.0  # 46 days
        value = 10 ** rng.uniform(-6, 12)  # past both ends of the binned range
        stats.observe(sample(latency=value, throughput=value))
    rows = stats.own_rows()
    per_grain = {g.name: sum(1 for r in rows if r.grain == g.name) for g in GRAINS}
    assert per_grain == {"minute": 60, "hour": 25, "day": 31}
    assert len(stats.take_dirty("db")) == len(rows) == 116
    for row in rows:
        bucket = Bucket.from_json(row.data)
        assert len(bucket.latency.counts) <= BINS and len(bucket.throughput.counts) <= BINS
    one = Histogram()
    for _ in range(100_000):
        one.add(10 ** rng.uniform(-6, 12))
    assert len(one.counts) == BINS and one.low == 0.01 and one.high == 1e7


def test_take_dirty_gives_each_consumer_every_change_once() -> None:
    clock = Clock(DAY0 + 60)
    stats = LiveStats(instance="a", clock=clock)
    stats.observe(sample(endpoint="e1", latency=10.0))

    def keys(rows: list[BucketRow]) -> set[tuple[str, str, str, int]]:
        return {(r.instance, r.endpoint_id, r.grain, r.start) for r in rows}

    first = {("a", "e1", "minute", DAY0 + 60), ("a", "e1", "hour", DAY0), ("a", "e1", "day", DAY0)}
    assert keys(stats.take_dirty("db")) == first
    assert stats.take_dirty("db") == []
    stats.observe(sample(endpoint="e2", latency=10.0))
    assert keys(stats.take_dirty("redis")) == first | {
        ("a", "e2", "minute", DAY0 + 60),
        ("a", "e2", "hour", DAY0),
        ("a", "e2", "day", DAY0),
    }
    assert {r.endpoint_id for r in stats.take_dirty("db")} == {"e2"}
    clock.now += 60
    stats.observe(sample(endpoint="e1", latency=10.0))
    stats.observe(sample(Verdict.FAILED, endpoint="e1"))
    for consumer in ("db", "redis"):
        rows = stats.take_dirty(consumer)
        assert keys(rows) == {
            ("a", "e1", "minute", DAY0 + 120),
            ("a", "e1", "hour", DAY0),
            ("a", "e1", "day", DAY0),
        }
        hour = next(Bucket.from_json(r.data) for r in rows if r.grain == "hour")
        assert (hour.ok, hour.failed) == (2, 1)
        assert stats.take_dirty(consumer) == []
    stats.observe(sample(Verdict.REFUSED, endpoint="e1"))
    assert stats.take_dirty("db") == []


def test_bucket_json_round_trip_and_merge() -> None:
    one, two, both = Bucket(), Bucket(), Bucket()
    samples = [
        sample(latency=120.5, throughput=33.0, prompt_tokens=10, prompt_cost=0.25),
        sample(latency=800.0, completion_tokens=7, completion_cost=0.5),
        sample(Verdict.FAILED),
        sample(Verdict.RATE_LIMITED),
        sample(Verdict.REFUSED, latency=5.0),
    ]
    for i, s in enumerate(samples):
        (one if i % 2 else two).add(s)
        both.add(s)
    assert (
        Bucket.from_json(one.to_json()) == one and Bucket.from_json(Bucket().to_json()) == Bucket()
    )
    one.merge(two)
    assert one == both
    assert (both.ok, both.failed, both.rate_limited, both.requests) == (2, 1, 1, 4)
    assert both.latency.counts != {} and both.latency.low == 120.5 and both.latency.high == 800.0
    assert (both.prompt_tokens, both.completion_tokens) == (10, 7)
    for bad in (
        b"{",
        b'{"v": 99}',
        b'{"v": 1, "ok": -1}',
        b'{"v": 1, "latency": {"bins": [[9999, 1]]}}',
        b'{"v": 1, "prompt_cost": -1.0}',
        b'{"v": 1, "completion_cost": 1e300}',
    ):
        with pytest.raises(ValueError):
            Bucket.from_json(bad)


def rows_of(instance: str, clock: Clock, samples: list[AttemptSample]) -> list[BucketRow]:
    stats = LiveStats(instance=instance, clock=clock)
    for s in samples:
        stats.observe(s)
    return stats.own_rows()


def test_restore_continues_own_series_and_archives_others() -> None:
    clock = Clock(DAY0 + 3 * 3600 + 10)
    old_own = rows_of("a", clock, [sample(latency=100.0)] * 3 + [sample(Verdict.FAILED)])
    other = rows_of("b", clock, [sample(latency=900.0)] * 4)
    full = Bucket.from_json(old_own[0].data).to_json()
    too_old = [
        BucketRow("a", "m/x@p", "minute", DAY0, full),  # 3 h ago: past the minutes' ring
        BucketRow("b", "m/x@p", "day", DAY0 - 40 * 86400, full),  # past the days' ring
        BucketRow("a", "m/x@p", "hour", DAY0 + 30, full),  # not the start of an hour
    ]
    garbage = BucketRow("b", "m/x@p", "hour", DAY0 + 3600, b"not json")
    clock.now += 20
    stats = LiveStats(instance="a", clock=clock)
    stats.observe(sample(latency=100.0))  # counted before the restore: kept
    stats.restore([*old_own, *other, *too_old, garbage])

    assert stats.requests("m/x@p", 300) == 9 and stats.uptime("m/x@p", 300) == 88.89
    latency = stats.latency("m/x@p", 300)
    assert latency is not None and latency["p50"] == near(900.0) and latency["p99"] == near(900.0)
    assert stats.latency("m/x@p", 300) != dict.fromkeys(NAMES, 900.0)  # 4 of 8 took 100 ms
    dirty = stats.take_dirty("db")
    assert {r.instance for r in dirty} == {"a"} and len(dirty) == 3
    assert sum(d.requests for d in stats.daily_uptime("m/x@p", days=45)) == 9
    assert all(Bucket.from_json(r.data).ok == 4 for r in dirty)
    stats.observe(sample(latency=100.0))
    minute = [r for r in stats.take_dirty("db") if r.grain == "minute"]
    assert len(minute) == 1 and Bucket.from_json(minute[0].data).ok == 5
    assert all(r.instance == "a" for r in stats.own_rows()) and len(stats.own_rows()) == 3

    stats.forget_archive("b")
    assert stats.requests("m/x@p", 300) == 6 and stats.uptime("m/x@p", 300) == round(500 / 6, 2)
    assert stats.latency("m/x@p", 300) == dict.fromkeys(NAMES, 100.0)


def test_peers_merge_into_reads_replace_by_key_and_drop() -> None:
    clock = Clock(DAY0 + 50_000.0)
    a = LiveStats(instance="a", clock=clock)
    b = LiveStats(instance="b", clock=clock)
    a.observe(sample(latency=100.0, throughput=10.0))
    assert a.requests("m/x@p", 1800) == 1  # cached for this second...
    b.observe(sample(latency=300.0, throughput=30.0))
    b.observe(sample(Verdict.FAILED))
    a.update_peer(b.take_dirty("redis"))
    assert a.requests("m/x@p", 1800) == 3  # ...and invalidated by a peer's rows
    assert a.uptime("m/x@p", 1800) == round(200 / 3, 2)
    b.observe(sample(latency=300.0, throughput=30.0))
    a.update_peer(b.take_dirty("redis"))  # the same keys again: replaced, not added
    assert a.requests("m/x@p", 1800) == 4 and a.requests("m/x@p", 86400) == 4
    assert a.latency("m/x@p", 1800)["p50"] == near(300.0)  # type: ignore[index]
    a.update_peer(a.own_rows())  # its own rows echoed back: ignored
    assert a.requests("m/x@p", 1800) == 4
    assert [d.requests for d in a.daily_uptime("m/x@p", days=1)] == [4]
    a.drop_peer("b")
    assert a.requests("m/x@p", 1800) == 1
    assert a.latency("m/x@p", 1800) == dict.fromkeys(NAMES, 100.0)
    for _ in range(1, 120):  # two hours of a peer's minutes: its ring stays bounded
        clock.now += 60
        b.observe(sample(latency=300.0))
        a.update_peer(b.take_dirty("redis"))
    assert len(a._peers["b"]["m/x@p"].buckets["minute"]) == 60  # (private: the memory bound)
    assert a.requests("m/x@p", 3600) == 60


def test_buckets_from_the_future_are_refused() -> None:
    """A peer whose clock is far ahead (or lies) must not sit in every window forever."""
    clock = Clock(DAY0 + 50_000.0)
    a = LiveStats(instance="a", clock=clock)
    ahead = LiveStats(instance="b", clock=Clock(DAY0 + 50_000.0 + 3600))
    ahead.observe(sample(Verdict.FAILED))
    a.update_peer(ahead.take_dirty("redis"))
    assert a.requests("m/x@p", 300) == 0 and a.uptime("m/x@p", 300) is None
    near_ahead = LiveStats(instance="c", clock=Clock(DAY0 + 50_000.0 + 30))  # next minute
    near_ahead.observe(sample(Verdict.FAILED))
    a.update_peer(near_ahead.take_dirty("redis"))
    assert a.requests("m/x@p", 300) == 1


def test_cached_reads_follow_observe_within_the_same_second() -> None:
    clock = Clock(DAY0 + 1000.25)
    stats = LiveStats(instance="a", clock=clock)
    stats.observe(sample(latency=100.0, throughput=50.0))
    first = stats.latency("m/x@p", 300)
    assert first == dict.fromkeys(NAMES, 100.0) and stats.uptime("m/x@p", 300) == 100.0
    first["p50"] = -1.0  # a caller's copy: the cache is not touched
    clock.now += 0.5
    stats.observe(sample(latency=5000.0, throughput=1.0))
    stats.observe(sample(Verdict.FAILED))
    latency = stats.latency("m/x@p", 300)
    assert latency is not None and latency["p50"] == near(5000.0) and latency["p99"] == near(5000.0)
    assert stats.throughput("m/x@p", 300)["p50"] == near(50.0)  # type: ignore[index]
    assert stats.uptime("m/x@p", 300) == round(200 / 3, 2)
    assert stats.effective_price("m/x@p") is None
    assert stats.latency("m/x@p", 300) == latency
