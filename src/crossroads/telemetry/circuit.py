"""Per-endpoint circuits: an endpoint that keeps failing is set aside within seconds.

Each endpoint (model x provider) has a circuit, fed one `AttemptSample` per attempt:

- CLOSED (healthy). It opens after `failures` consecutive FAILED attempts (3 by default,
  `settings.circuit_failures`; 0 turns circuits off), or when failures are at least half
  of at least 6 attempts (OK + FAILED) in the last 10 s, whichever comes first. The share
  rule catches an endpoint that fails most of the time while the odd success keeps
  breaking the streak.
- OPEN for a cooldown: `cooldown` (5 s) the first time, doubled each time a half-open probe
  fails, capped at `max_cooldown` (60 s). `admit()` answers False meanwhile: the router
  moves the endpoint behind every admitted one (it is still tried when nothing else is left).
- HALF_OPEN once the cooldown has passed: `admit()` answers True for one request at a time,
  the probe. A probe that has not reported after `probe_timeout` (it was never tried, or its
  request is still running) is offered again. The probe's (or any) OK closes the circuit
  and resets the cooldown to `cooldown`; a FAILED opens it again for the doubled cooldown.
- RATE_LIMITED (429) opens the circuit for the `Retry-After` the provider sent (the base
  `cooldown` when it sent none; at most an hour), without doubling and without counting as
  a failure. A later cooldown already running is kept.
- REFUSED (the caller's request: 400, 413, 422) changes nothing: it neither counts as a
  failure nor resets a streak.
- Any OK closes the circuit, whatever its state, and resets the streak and the cooldown.

Memory per endpoint is bounded: a streak counter, the cooldown, and the share window as at
most 10 per-second counters. Only endpoints that were observed have a circuit.

Replicas share transitions: `take_changes()` hands over this process's own OPEN and CLOSED
transitions since the last call (the latest per endpoint), and `apply()` takes a peer's: an
OPEN that lasts longer than ours opens ours until then; a CLOSED (the peer's probe
succeeded) closes ours. HALF_OPEN is each replica's own probing and is not shared. `until`
is wall-clock epoch seconds, so `clock` must be `time.time`-like (injectable for tests).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from crossroads.telemetry.sample import AttemptSample, Verdict

SHARE_WINDOW = 10  # seconds of attempts the failure-share rule looks at
SHARE_MIN_ATTEMPTS = 6  # fewer attempts than this in the window never trip the share rule
SHARE_THRESHOLD = 0.5  # failures / attempts at or above this trip it
MAX_RETRY_AFTER = 3600.0  # a provider's Retry-After is believed up to an hour


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitChange:
    """One transition of one endpoint's circuit, as replicas share it."""

    endpoint_id: str
    state: CircuitState
    until: float  # epoch seconds the cooldown ends; 0 for closed
    cooldown: float  # the failure cooldown in force (s), doubled by the next failed probe;
    # 0 for closed, and for a circuit opened by a rate limit alone


@dataclass(slots=True)
class _Circuit:
    state: CircuitState = CircuitState.CLOSED
    streak: int = 0  # consecutive FAILED attempts
    until: float = 0.0  # OPEN: when the cooldown ends
    cooldown: float = 0.0  # the last failure cooldown; 0 since the circuit last closed
    probe_at: float | None = None  # HALF_OPEN: when the probe was handed out
    # [second, attempts, failures] per second, newest last: the share window
    seconds: deque[list[int]] = field(default_factory=lambda: deque(maxlen=SHARE_WINDOW))

    def count(self, now: float, *, failed: bool) -> None:
        second = int(now)
        if not self.seconds or self.seconds[-1][0] != second:
            self.seconds.append([second, 0, 0])
        self.seconds[-1][1] += 1
        self.seconds[-1][2] += failed

    def failure_share_tripped(self, now: float) -> bool:
        since = int(now) - SHARE_WINDOW
        attempts = failures = 0
        for second, total, failed in self.seconds:
            if second > since:
                attempts, failures = attempts + total, failures + failed
        return attempts >= SHARE_MIN_ATTEMPTS and failures >= SHARE_THRESHOLD * attempts


class Circuits:
    """Every endpoint's circuit, in memory; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        failures: int = 3,
        cooldown: float = 5.0,
        max_cooldown: float = 60.0,
        probe_timeout: float = 10.0,
    ) -> None:
        if failures < 0 or cooldown <= 0 or max_cooldown < cooldown or probe_timeout <= 0:
            raise ValueError(
                "circuits need failures >= 0, cooldown > 0, max_cooldown >= cooldown "
                "and probe_timeout > 0"
            )
        self._clock = clock
        self._failures = failures
        self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._probe_timeout = probe_timeout
        self._circuits: dict[str, _Circuit] = {}
        self._changes: dict[str, CircuitChange] = {}  # the latest own transition per endpoint

    # --- fed by the router ---------------------------------------------------------------

    def observe(self, sample: AttemptSample) -> None:
        """Count one attempt's outcome."""
        if sample.verdict is Verdict.REFUSED or not self._failures:
            return
        circuit = self._circuits.get(sample.endpoint_id)
        if circuit is None:
            circuit = self._circuits[sample.endpoint_id] = _Circuit()
        now = self._clock()
        if sample.verdict is Verdict.OK:
            circuit.count(now, failed=False)
            circuit.streak = 0
            if circuit.state is not CircuitState.CLOSED:
                self._close(sample.endpoint_id, circuit)
        elif sample.verdict is Verdict.RATE_LIMITED:
            wait = sample.retry_after if sample.retry_after else self._cooldown
            until = now + min(max(wait, 0.0), MAX_RETRY_AFTER)
            if circuit.state is not CircuitState.OPEN or until > circuit.until:
                self._open(sample.endpoint_id, circuit, until)
        else:  # FAILED
            circuit.count(now, failed=True)
            circuit.streak += 1
            state = self._current(circuit, now)
            if state is CircuitState.HALF_OPEN:  # the probe failed: a longer cooldown
                circuit.cooldown = (
                    min(2 * circuit.cooldown, self._max_cooldown)
                    if circuit.cooldown
                    else self._cooldown
                )
                circuit.streak = 0
                self._open(sample.endpoint_id, circuit, now + circuit.cooldown)
            elif state is CircuitState.CLOSED and (
                circuit.streak >= self._failures or circuit.failure_share_tripped(now)
            ):
                circuit.cooldown, circuit.streak = self._cooldown, 0
                self._open(sample.endpoint_id, circuit, now + circuit.cooldown)
            # OPEN: an attempt that was already on its way, or tried as a last resort;
            # the cooldown running is kept

    def admit(self, endpoint_id: str) -> bool:
        """May a request rank this endpoint among the healthy ones now? A half-open
        endpoint is admitted for one request (the probe) until that probe reports, or
        until `probe_timeout` has passed without a report."""
        circuit = self._circuits.get(endpoint_id)
        if circuit is None or circuit.state is CircuitState.CLOSED:
            return True
        now = self._clock()
        if self._current(circuit, now) is CircuitState.OPEN:
            return False
        circuit.state = CircuitState.HALF_OPEN
        if circuit.probe_at is not None and now - circuit.probe_at < self._probe_timeout:
            return False  # a probe is on its way
        circuit.probe_at = now
        return True

    # --- read (no side effects) ----------------------------------------------------------

    def state(self, endpoint_id: str) -> CircuitState:
        """The endpoint's state now: an OPEN circuit whose cooldown has passed is HALF_OPEN."""
        circuit = self._circuits.get(endpoint_id)
        if circuit is None:
            return CircuitState.CLOSED
        return self._current(circuit, self._clock())

    def states(self) -> dict[str, CircuitState]:
        """Every endpoint whose circuit is not closed."""
        now = self._clock()
        found = {eid: self._current(c, now) for eid, c in self._circuits.items()}
        return {eid: s for eid, s in found.items() if s is not CircuitState.CLOSED}

    # --- shared between replicas -----------------------------------------------------------

    def take_changes(self) -> list[CircuitChange]:
        """This process's own OPEN / CLOSED transitions since the last call, the latest per
        endpoint (a peer needs no older one)."""
        changes = list(self._changes.values())
        self._changes.clear()
        return changes

    def apply(self, change: CircuitChange) -> None:
        """A peer's transition: a longer OPEN opens ours until then; CLOSED closes ours."""
        circuit = self._circuits.get(change.endpoint_id)
        if change.state is CircuitState.OPEN:
            now = self._clock()
            if not math.isfinite(change.until) or change.until <= now:
                return  # over already, or nonsense
            # a peer's cooldown is believed no longer than one of ours could be
            change = CircuitChange(
                change.endpoint_id,
                CircuitState.OPEN,
                min(change.until, now + max(self._max_cooldown, MAX_RETRY_AFTER)),
                min(max(change.cooldown, 0.0), self._max_cooldown)
                if math.isfinite(change.cooldown)
                else 0.0,
            )
            if circuit is None:
                circuit = self._circuits[change.endpoint_id] = _Circuit()
            if circuit.state is CircuitState.OPEN and circuit.until >= change.until:
                return
            circuit.state, circuit.until, circuit.probe_at = CircuitState.OPEN, change.until, None
            circuit.cooldown = max(circuit.cooldown, change.cooldown)
        elif change.state is CircuitState.CLOSED and circuit is not None:
            circuit.state, circuit.until, circuit.probe_at = CircuitState.CLOSED, 0.0, None
            circuit.streak, circuit.cooldown = 0, 0.0
            circuit.seconds.clear()

    # --- transitions -----------------------------------------------------------------------

    @staticmethod
    def _current(circuit: _Circuit, now: float) -> CircuitState:
        if circuit.state is CircuitState.OPEN and now >= circuit.until:
            return CircuitState.HALF_OPEN
        return circuit.state

    def _open(self, endpoint_id: str, circuit: _Circuit, until: float) -> None:
        circuit.state, circuit.until, circuit.probe_at = CircuitState.OPEN, until, None
        self._changes[endpoint_id] = CircuitChange(
            endpoint_id, CircuitState.OPEN, until, circuit.cooldown
        )

    def _close(self, endpoint_id: str, circuit: _Circuit) -> None:
        circuit.state, circuit.until, circuit.probe_at = CircuitState.CLOSED, 0.0, None
        circuit.cooldown = 0.0
        circuit.seconds.clear()  # the failures before are over: a fresh window
        self._changes[endpoint_id] = CircuitChange(endpoint_id, CircuitState.CLOSED, 0.0, 0.0)
