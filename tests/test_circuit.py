"""Per-endpoint circuits in memory, each transition pinned with an injectable clock; and the
samples the router feeds them (and the live statistics), one per measured attempt."""

from __future__ import annotations

from typing import Any

import pytest

from crossroads.providers.base import UpstreamError
from crossroads.routing.context import RequestContext
from crossroads.routing.job import Job
from crossroads.routing.plan import Plan
from crossroads.routing.run import Run, Sinks
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.schema.chat import parse_chat_request
from crossroads.telemetry.circuit import CircuitChange, Circuits, CircuitState
from crossroads.telemetry.live import Telemetry
from crossroads.telemetry.sample import AttemptSample, Verdict

E = "acme/trio@alpha"
OTHER = "acme/trio@beta"
OPEN, CLOSED, HALF_OPEN = CircuitState.OPEN, CircuitState.CLOSED, CircuitState.HALF_OPEN
OK, FAILED, REFUSED = Verdict.OK, Verdict.FAILED, Verdict.REFUSED
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def circuits(clock: Clock) -> Circuits:
    return Circuits(clock=clock, failures=3, cooldown=5.0, max_cooldown=30.0, probe_timeout=10.0)


def sample(verdict: Verdict, endpoint: str = E, retry_after: float | None = None) -> AttemptSample:
    model, provider = endpoint.split("@")
    return AttemptSample(
        endpoint_id=endpoint,
        provider=provider,
        model=model,
        verdict=verdict,
        retry_after=retry_after,
    )


def feed(circuits: Circuits, *verdicts: Verdict, endpoint: str = E) -> None:
    for verdict in verdicts:
        circuits.observe(sample(verdict, endpoint))


def rate_limit(circuits: Circuits, retry_after: float | None) -> None:
    circuits.observe(sample(Verdict.RATE_LIMITED, retry_after=retry_after))


def trip(circuits: Circuits) -> None:
    feed(circuits, FAILED, FAILED, FAILED)
    assert circuits.state(E) is OPEN


def open_for(circuits: Circuits, clock: Clock) -> float:
    """How long the circuit stays open from now: the first moment `admit()` answers True
    (asked every 0.25 s, exact in binary; the answer claims the probe)."""
    start = clock.now
    for step in range(1, 10_000):
        clock.now = start + step / 4
        if circuits.admit(E):
            return clock.now - start
    raise AssertionError("never admitted")


# --- closed -> open ---------------------------------------------------------------------------


def test_three_consecutive_failures_open_the_circuit(circuits: Circuits) -> None:
    assert circuits.state(E) is CLOSED and circuits.admit(E) and circuits.states() == {}
    feed(circuits, FAILED, FAILED)
    assert circuits.state(E) is CLOSED and circuits.admit(E)
    feed(circuits, FAILED)
    assert circuits.state(E) is OPEN and not circuits.admit(E)
    assert circuits.states() == {E: OPEN}
    assert circuits.admit(OTHER) and circuits.state(OTHER) is CLOSED  # others untouched


def test_a_success_between_failures_resets_the_streak(circuits: Circuits) -> None:
    feed(circuits, FAILED, FAILED, OK, FAILED, FAILED)
    assert circuits.state(E) is CLOSED and circuits.admit(E)
    feed(circuits, FAILED)
    assert circuits.state(E) is OPEN


def test_the_failure_threshold_is_a_setting(clock: Clock) -> None:
    circuits = Circuits(clock=clock, failures=5)
    feed(circuits, *[FAILED] * 4)
    assert circuits.state(E) is CLOSED
    feed(circuits, FAILED)
    assert circuits.state(E) is OPEN


def test_failure_share_opens_without_a_streak(circuits: Circuits) -> None:
    """Half of 6 attempts within 10 s failed, never 2 in a row: the share rule trips."""
    feed(circuits, OK, FAILED, OK, FAILED, OK)
    assert circuits.state(E) is CLOSED  # 2 of 5
    feed(circuits, FAILED)
    assert circuits.state(E) is OPEN  # 3 of 6


def test_failure_share_below_half_stays_closed(circuits: Circuits) -> None:
    feed(circuits, OK, OK, FAILED, OK, OK, FAILED, OK, FAILED, OK, FAILED)
    assert circuits.state(E) is CLOSED  # 4 of 10
    feed(circuits, FAILED, OK, FAILED)
    assert circuits.state(E) is CLOSED  # 6 of 13
    feed(circuits, FAILED)
    assert circuits.state(E) is OPEN  # 7 of 14, a streak of 2


@pytest.mark.parametrize(("later", "tripped"), [(9, True), (10, False), (30, False)])
def test_failure_share_looks_at_the_last_10_seconds(
    circuits: Circuits, clock: Clock, later: float, tripped: bool
) -> None:
    feed(circuits, OK, FAILED, OK, FAILED, OK)
    clock.now += later
    feed(circuits, FAILED)  # 3 of 6 with the earlier ones, 1 of 1 without
    assert circuits.state(E) is (OPEN if tripped else CLOSED)


# --- open -> half-open -> closed or open again -------------------------------------------------


def test_open_until_the_cooldown_then_one_probe(circuits: Circuits, clock: Clock) -> None:
    trip(circuits)
    clock.now += 4.9
    assert circuits.state(E) is OPEN and not circuits.admit(E)
    clock.now = T0 + 5
    assert circuits.state(E) is HALF_OPEN  # reading it claims nothing
    assert circuits.states() == {E: HALF_OPEN}
    assert circuits.admit(E)  # the probe
    assert not circuits.admit(E) and not circuits.admit(E)  # one request at a time
    assert circuits.state(E) is HALF_OPEN


def test_an_unreported_probe_is_offered_again_after_the_probe_timeout(
    circuits: Circuits, clock: Clock
) -> None:
    trip(circuits)
    clock.now += 5
    assert circuits.admit(E)
    clock.now = T0 + 5 + 9.75
    assert not circuits.admit(E)
    clock.now = T0 + 5 + 10
    assert circuits.admit(E)  # the first probe never reported: another request probes
    assert not circuits.admit(E)


def test_probe_success_closes_and_resets_the_cooldown(circuits: Circuits, clock: Clock) -> None:
    trip(circuits)
    assert open_for(circuits, clock) == 5.0
    feed(circuits, FAILED)  # the probe failed: 10 s
    assert open_for(circuits, clock) == 10.0
    feed(circuits, OK)  # the probe succeeded
    assert circuits.state(E) is CLOSED and circuits.admit(E) and circuits.states() == {}
    feed(circuits, FAILED, FAILED)
    assert circuits.state(E) is CLOSED  # a fresh streak
    feed(circuits, FAILED)
    assert open_for(circuits, clock) == 5.0  # back to the first cooldown


def test_failed_probes_double_the_cooldown_up_to_the_cap(circuits: Circuits, clock: Clock) -> None:
    trip(circuits)
    cooldowns = [open_for(circuits, clock)]
    for _ in range(4):
        feed(circuits, FAILED)  # each probe fails
        cooldowns.append(open_for(circuits, clock))
    assert cooldowns == [5.0, 10.0, 20.0, 30.0, 30.0]  # max_cooldown is 30 here


def test_a_failure_while_open_keeps_the_running_cooldown(circuits: Circuits, clock: Clock) -> None:
    trip(circuits)
    clock.now += 2
    feed(circuits, FAILED, FAILED, FAILED, FAILED)  # requests already on their way
    clock.now = T0 + 5
    assert circuits.admit(E)  # neither extended nor doubled


# --- rate limits and refusals -------------------------------------------------------------------


def test_429_opens_for_retry_after_without_doubling(circuits: Circuits, clock: Clock) -> None:
    rate_limit(circuits, 2.0)
    assert circuits.state(E) is OPEN and not circuits.admit(E)
    assert open_for(circuits, clock) == 2.0
    feed(circuits, OK)
    assert circuits.state(E) is CLOSED
    trip(circuits)
    assert open_for(circuits, clock) == 5.0  # the rate limit doubled nothing


def test_429_without_retry_after_cools_for_the_base_cooldown(
    circuits: Circuits, clock: Clock
) -> None:
    rate_limit(circuits, None)
    assert open_for(circuits, clock) == 5.0
    feed(circuits, FAILED)  # a probe failing after a rate limit: the first cooldown
    assert open_for(circuits, clock) == 5.0


def test_429_is_not_a_failure_and_keeps_a_longer_cooldown(circuits: Circuits, clock: Clock) -> None:
    rate_limit(circuits, 0.5)
    clock.now += 1
    assert circuits.admit(E)
    feed(circuits, OK)
    feed(circuits, FAILED, FAILED)
    rate_limit(circuits, 0.5)  # no third failure: opened by the rate limit, for 0.5 s
    assert open_for(circuits, clock) == 0.5
    feed(circuits, OK)
    trip(circuits)  # 5 s
    clock.now += 1
    rate_limit(circuits, 1.0)  # ends before the running cooldown: the cooldown is kept
    assert open_for(circuits, clock) == 4.0


@pytest.mark.parametrize("times", [1, 10])
def test_refusals_are_ignored_and_do_not_reset_a_streak(circuits: Circuits, times: int) -> None:
    feed(circuits, *[REFUSED] * times)
    assert circuits.state(E) is CLOSED and circuits.states() == {}
    feed(circuits, FAILED, FAILED, *[REFUSED] * times)
    assert circuits.state(E) is CLOSED
    feed(circuits, FAILED)
    assert circuits.state(E) is OPEN
    feed(circuits, REFUSED)
    assert circuits.state(E) is OPEN


def test_refusal_does_not_report_a_probe(circuits: Circuits, clock: Clock) -> None:
    trip(circuits)
    clock.now += 5
    assert circuits.admit(E)
    feed(circuits, REFUSED)  # the caller's request says nothing of the endpoint
    assert circuits.state(E) is HALF_OPEN and not circuits.admit(E)


# --- sharing between replicas ---------------------------------------------------------------------


def test_take_changes_hands_over_own_transitions_once(circuits: Circuits, clock: Clock) -> None:
    assert circuits.take_changes() == []
    trip(circuits)
    assert circuits.take_changes() == [CircuitChange(E, OPEN, T0 + 5, 5.0)]
    assert circuits.take_changes() == []
    clock.now += 5
    assert circuits.admit(E)  # half-open is each replica's own: not handed over
    assert circuits.take_changes() == []
    feed(circuits, FAILED)
    feed(circuits, FAILED, endpoint=OTHER)
    rate_limit(circuits, 3.0)  # already open for longer: no transition
    assert circuits.take_changes() == [CircuitChange(E, OPEN, T0 + 15, 10.0)]
    clock.now += 10
    assert circuits.admit(E)
    feed(circuits, OK)
    assert circuits.take_changes() == [CircuitChange(E, CLOSED, 0.0, 0.0)]


def test_only_the_latest_change_per_endpoint_is_kept(circuits: Circuits, clock: Clock) -> None:
    for _ in range(100):
        trip(circuits)
        clock.now += 5
        assert circuits.admit(E)
        feed(circuits, OK)
    rate_limit(circuits, 7.0)
    feed(circuits, FAILED, FAILED, FAILED, endpoint=OTHER)
    changes = circuits.take_changes()
    assert changes == [
        CircuitChange(E, OPEN, clock.now + 7, 0.0),  # a rate limit: no failure cooldown
        CircuitChange(OTHER, OPEN, clock.now + 5, 5.0),
    ]


def test_apply_a_peers_longer_open(circuits: Circuits, clock: Clock) -> None:
    circuits.apply(CircuitChange(E, OPEN, T0 + 20, 10.0))
    assert circuits.state(E) is OPEN and not circuits.admit(E)
    assert circuits.take_changes() == []  # a peer's transition is not ours to hand over
    circuits.apply(CircuitChange(E, OPEN, T0 + 8, 5.0))  # ends sooner than ours: ignored
    assert open_for(circuits, clock) == 20.0
    feed(circuits, FAILED)  # our probe fails: the peer's cooldown doubles
    assert open_for(circuits, clock) == 20.0


def test_apply_ignores_an_open_that_is_over(circuits: Circuits, clock: Clock) -> None:
    circuits.apply(CircuitChange(E, OPEN, T0 - 1, 5.0))
    assert circuits.state(E) is CLOSED and circuits.admit(E)


def test_apply_a_peers_close(circuits: Circuits, clock: Clock) -> None:
    trip(circuits)
    circuits.apply(CircuitChange(E, CLOSED, 0.0, 0.0))  # the peer's probe succeeded
    assert circuits.state(E) is CLOSED and circuits.admit(E)
    feed(circuits, FAILED, FAILED)
    assert circuits.state(E) is CLOSED  # the streak started over
    circuits.apply(CircuitChange(OTHER, CLOSED, 0.0, 0.0))  # unknown here: nothing to do
    assert circuits.states() == {}


def test_apply_a_peers_open_ends_our_probe(circuits: Circuits, clock: Clock) -> None:
    trip(circuits)
    clock.now += 5
    assert circuits.admit(E)
    circuits.apply(CircuitChange(E, OPEN, clock.now + 10, 10.0))  # the peer's probe failed
    assert circuits.state(E) is OPEN and open_for(circuits, clock) == 10.0


# --- construction and fan-out -------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{"failures": -1}, {"cooldown": 0}, {"cooldown": 10, "max_cooldown": 5}, {"probe_timeout": 0}],
)
def test_nonsense_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Circuits(**settings)  # type: ignore[arg-type]


def test_zero_failures_turns_circuits_off(clock: Clock) -> None:
    circuits = Circuits(clock=clock, failures=0)
    feed(circuits, *[Verdict.FAILED] * 20)
    rate_limit(circuits, 30)
    assert circuits.state(E) is CircuitState.CLOSED and circuits.admit(E)
    assert circuits.states() == {} and circuits.take_changes() == []


def test_a_peers_cooldown_is_bounded(circuits: Circuits, clock: Clock) -> None:
    circuits.apply(CircuitChange(E, OPEN, clock.now + 1e12, 1e12))
    assert circuits.state(E) is OPEN
    clock.now += 3600.0  # an hour at most, however far the peer's `until`
    assert circuits.admit(E)
    circuits.apply(CircuitChange("acme/trio@beta", OPEN, float("inf"), 5.0))
    assert circuits.state("acme/trio@beta") is CLOSED


def test_a_rate_limit_does_not_break_a_failure_streak(circuits: Circuits, clock: Clock) -> None:
    feed(circuits, Verdict.FAILED, Verdict.FAILED)
    rate_limit(circuits, 1.0)
    clock.now += 1.0  # the rest is over; the probe fails: open again, longer
    feed(circuits, Verdict.FAILED)
    assert circuits.state(E) is OPEN


class Counting:
    def __init__(self) -> None:
        self.samples: list[AttemptSample] = []

    def observe(self, sample: AttemptSample) -> None:
        self.samples.append(sample)


@pytest.mark.parametrize("feed_stats", [True, False])
def test_telemetry_feeds_stats_when_on_and_circuits_always(
    circuits: Circuits, feed_stats: bool
) -> None:
    stats = Counting()
    telemetry = Telemetry(stats, circuits, feed_stats=feed_stats)  # type: ignore[arg-type]
    for _ in range(3):
        telemetry.observe(sample(FAILED))
    assert len(stats.samples) == (3 if feed_stats else 0)
    assert circuits.state(E) is OPEN


# --- what the router feeds: one sample per measured attempt -------------------------------------

PROVIDER = Provider(slug="p", name="P", api="openai", base_url="http://127.0.0.1:9/v1")
ENDPOINT = Endpoint(
    provider="p",
    model_id="acme/x",
    upstream_model="x",
    pricing={"prompt": "0.000001", "completion": "0.000002"},
)


class Sink(Counting):
    def settle(self, ticket: Any, *, cost: float, tokens: int) -> bool:
        return False

    def submit(self, record: Any) -> None:
        pass


def make_run(sink: Sink) -> Run:
    body = {"model": "acme/x", "messages": [{"role": "user", "content": "hi"}]}
    plan = Plan(endpoints=[ENDPOINT], requested=["acme/x"], prompt_tokens=3)
    ctx = RequestContext(generation_id="gen-1", api_key_hash="k")
    return Run(
        Sinks({"p": PROVIDER}, sink, sink, sink),
        Job(parse_chat_request(body), body, plan, ctx, None),
        streamed=False,
    )


def test_an_answer_is_one_ok_sample_with_tokens_and_costs() -> None:
    sink = Sink()
    run = make_run(sink)
    billed = run.bill(
        {"prompt_tokens": 10, "completion_tokens": 21}, ENDPOINT, text="", finish_reason="stop"
    )
    run.succeeded(ENDPOINT, billed, first_token_ms=100.0, total_ms=600.0)
    assert sink.samples == [
        AttemptSample(
            endpoint_id=ENDPOINT.id,
            provider="p",
            model="acme/x",
            verdict=Verdict.OK,
            latency_ms=100.0,
            throughput=pytest.approx(42.0),  # 21 tokens in 0.5 s after the first
            prompt_tokens=10,
            completion_tokens=21,
            prompt_cost=pytest.approx(10e-6),
            completion_cost=pytest.approx(42e-6),
        )
    ]
    run.succeeded(ENDPOINT, billed, first_token_ms=100.0, total_ms=600.0, measured=False)
    assert len(sink.samples) == 1  # a stream the client cut: no sample


@pytest.mark.parametrize(
    ("kind", "status", "verdict"),
    [
        ("http", 500, Verdict.FAILED),
        ("http", 503, Verdict.FAILED),
        ("http", 401, Verdict.FAILED),  # the provider's credentials: its fault
        ("timeout", None, Verdict.FAILED),
        ("connection", None, Verdict.FAILED),
        ("invalid_response", 200, Verdict.FAILED),
        ("http", 429, Verdict.RATE_LIMITED),
        ("http", 400, Verdict.REFUSED),
        ("http", 413, Verdict.REFUSED),
        ("http", 422, Verdict.REFUSED),
    ],
)
def test_a_failure_is_one_sample_by_its_cause(
    kind: str, status: int | None, verdict: Verdict
) -> None:
    sink = Sink()
    error = UpstreamError(PROVIDER, kind, "nope", status=status, retry_after=7.0)
    make_run(sink).failed(ENDPOINT, error, 12.0)
    (got,) = sink.samples
    assert (got.endpoint_id, got.verdict) == (ENDPOINT.id, verdict)
    assert got.retry_after == (7.0 if verdict is Verdict.RATE_LIMITED else None)
    assert got.prompt_tokens == got.completion_tokens == 0 and got.latency_ms is None


def test_a_failure_midstream_is_failed() -> None:
    sink = Sink()
    make_run(sink).failed(
        ENDPOINT, UpstreamError(PROVIDER, "incomplete", "cut"), 5.0, midstream=True
    )
    assert [s.verdict for s in sink.samples] == [Verdict.FAILED]
