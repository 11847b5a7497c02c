"""Limit counters in Redis (`RedisCounters`), and `SharedCounters`: Redis with a local copy
that takes over while Redis is unreachable.

`RedisCounters.apply` runs one Lua script (EVALSHA; the script is sent again when Redis lost
it): the whole `Operation` is atomic on the Redis server, so every replica sees the same
counters. Counters are integer keys (`INCRBY`; a missing one is first `SET` to its seed);
hold sets are sorted sets, score = expiry, member `<ticket>:<amount>`; dead holds are pruned
with the caller's clock (`now` is an argument of the script). The script adds integers of up
to 64 bits exactly (Lua numbers are doubles: it works on 9-digit limbs).

`SharedCounters` (what the server uses):
- no URL: the local counters only, never a network call;
- Redis up: every operation is one EVALSHA round trip; the reply carries the touched
  counters' values and TTLs after it, copied into the local counters (with the operation's
  holds and releases), so the local copy can take over at any moment. A counter the local
  copy knows is seeded (in Redis, when missing there) with the local value;
- Redis unreachable (a connect, a timeout or any error; sockets time out after 0.25 s, an
  operation waits 0.5 s at most): the operation is applied locally and what it changed is
  remembered as pending. An operation whose request may have reached Redis (it failed on
  the way) is remembered whole, under its sequence number: every operation claims its
  number in Redis (`<prefix>~claims:<instance>:<boot>`, the last 1024 kept), so one that
  still runs late and its pending copy are never both counted. Logged on
  "crossroads.limits" at most once a minute. At most once a second (by the clock) a
  background probe PINGs Redis; when it answers, the pending changes are pushed (added with
  `INCRBY`; a counter Redis lost is set to the local value), then operations go to Redis
  again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from crossroads.limits.counters import (
    Add,
    CountersStatus,
    Hold,
    LocalCounters,
    Operation,
    Release,
    Result,
)
from crossroads.replicas.sync import redacted

log = logging.getLogger("crossroads.limits")

SOCKET_TIMEOUT = 0.25  # connect and read timeouts of the Redis client
OP_TIMEOUT = 0.5  # the most an operation waits on Redis before counting locally
RETRY_EVERY = 1.0  # seconds (by the clock) between reconnection attempts
LOG_EVERY = 60.0  # seconds (by the clock) between warnings while Redis is unreachable
FAILURES = (RedisError, OSError, TimeoutError)
BATCH_SIZE = 500  # pending changes pushed by one script run
MAX_REFUSALS = 3  # a pending batch Redis answers with an error this often is dropped

SCRIPT = resources.files("crossroads.limits").joinpath("counters.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    """One script run: the result (None when its claim was taken before: it ran already)
    and the touched counters after it, name -> (value, PTTL in ms, -1: no expiry)."""

    result: Result | None
    after: dict[str, tuple[int, int]]


def _number(value: float) -> str:
    return repr(float(value))


class RedisCounters:
    """Counters and hold sets in Redis under `prefix`, applied by one Lua script."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "cr:lim:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock

    async def load(self) -> None:
        """Load the script into Redis (it is loaded on first use otherwise)."""
        await self._client.script_load(SCRIPT)

    async def apply(self, op: Operation) -> Result:
        """Apply `op` atomically (`counters` module docstring)."""
        outcome = await self.run(op)
        assert outcome.result is not None  # no claim: always runs
        return outcome.result

    async def values(self, names: Iterable[str]) -> dict[str, int | None]:
        """The counters' values, None for a missing one."""
        names = list(names)
        if not names:
            return {}
        raw = await self._client.mget([self._prefix + n for n in names])
        return {n: int(v) if v is not None else None for n, v in zip(names, raw, strict=True)}

    async def run(
        self,
        op: Operation,
        *,
        seeds: Mapping[str, int] | None = None,
        claim: tuple[str, int] | None = None,
    ) -> Outcome:
        """Apply `op`; `seeds` override the seeds it names; `claim`: (claims set name, number):
        the op runs only if that number was not claimed before."""
        counters = op.counter_names()
        holds = op.hold_names()
        index = {name: i for i, name in enumerate(counters, 1)}
        hold_index = {name: i for i, name in enumerate(holds, 1)}
        keys = [self._prefix + n for n in counters] + [self._prefix + n for n in holds]
        args: list[str | int] = [_number(self._clock()), "", len(counters), len(holds)]
        if claim is not None:
            keys.append(self._prefix + claim[0])
            args[1] = claim[1]
        for name in counters:
            seed = seeds.get(name) if seeds is not None else None
            args.append(seed if seed is not None else op.seed_of(name))
        args.append(len(op.checks))
        for check in op.checks:
            args.append(len(check.counters))
            args.extend(index[c] for c in check.counters)
            holds_at = hold_index[check.holds] if check.holds is not None else 0
            args += [check.cap, check.amount, holds_at]
        args.append(len(op.adds))
        for add in op.adds:
            args += [index[add.counter], add.amount, add.ttl or 0]
        args.append(len(op.holds))
        for hold in op.holds:
            args += [hold_index[hold.holds], hold.ticket, hold.amount, _number(hold.expires)]
        args.append(len(op.releases))
        for release in op.releases:
            args += [hold_index[release.holds], release.ticket]
        try:
            reply = await self._client.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
        except NoScriptError:
            reply = await self._client.eval(SCRIPT, len(keys), *keys, *args)
        names = counters + holds
        status, failed, before, after = reply
        state = {
            counters[after[i] - 1]: (int(after[i + 1]), int(after[i + 2]))
            for i in range(0, len(after), 3)
        }
        if status < 0:
            return Outcome(None, state)
        values = {names[before[i] - 1]: int(before[i + 1]) for i in range(0, len(before), 2)}
        result = Result(status == 1, failed if failed >= 0 else None, values)
        return Outcome(result, state)


@dataclass(slots=True)
class _Batch:
    """Changes counted locally that Redis must get once: under claim number `seq`."""

    seq: int
    op: Operation  # adds, holds and releases only
    refused: int = 0  # pushes Redis answered with an error


class SharedCounters:
    """The limits' counters for the server: Redis shared by every replica when `url` is
    given, with a local copy taking over while Redis is unreachable (module docstring)."""

    def __init__(
        self,
        url: str | None,
        *,
        clock: Callable[[], float] = time.time,
        instance: str,
        prefix: str = "cr:lim:",
        socket_timeout: float = SOCKET_TIMEOUT,
        op_timeout: float = OP_TIMEOUT,
    ) -> None:
        self.instance = instance
        self._url = url
        self._clock = clock
        self._local = LocalCounters(clock)
        self._op_timeout = op_timeout
        self._client: Redis | None = None
        self._redis: RedisCounters | None = None
        if url is not None:
            self._client = Redis.from_url(
                url,
                socket_connect_timeout=socket_timeout,
                socket_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
                protocol=2,  # no HELLO when connecting
                driver_info=None,  # no CLIENT SETINFO either
            )
            self._redis = RedisCounters(self._client, prefix=prefix, clock=clock)
        self._claims = f"~claims:{instance}:{secrets.token_hex(4)}"
        self._seq = 0
        self._state: Literal["off", "ok", "unreachable"] = "off" if url is None else "ok"
        self._since: float | None = None if url is None else clock()
        self._error: str | None = None
        self._unsent: dict[str, tuple[int, int | None]] = {}  # counter -> (delta, ttl)
        self._unsent_holds: dict[tuple[str, str], Hold] = {}
        self._unsent_releases: dict[tuple[str, str], Release] = {}
        self._batches: list[_Batch] = []  # may have reached Redis, or failed to push
        self._next_attempt = -math.inf
        self._next_log = -math.inf
        self._logged = False  # the current outage was logged
        self._probe: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def networked(self) -> bool:
        """Whether the counters are Redis's (with a URL); else the local copy is all."""
        return self._redis is not None

    @property
    def local(self) -> LocalCounters:
        """The local copy (to read: changing it bypasses Redis)."""
        return self._local

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the script into Redis (never waiting more than `op_timeout`) and start the
        background reconnection watch. Nothing to do without a URL."""
        if self._redis is None or self._watcher is not None:
            return
        try:
            async with asyncio.timeout(self._op_timeout):
                await self._redis.load()
        except FAILURES as error:
            self._failed(error)
        self._watcher = asyncio.create_task(self._watch())

    async def close(self) -> None:
        """Stop the background tasks and close the connections (pending changes are lost)."""
        for task in (self._watcher, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watcher = self._probe = None
        if self._client is not None:
            await self._client.aclose()

    def status(self) -> CountersStatus:
        """Where the counters live now."""
        pending = len(self._unsent) + len(self._unsent_holds) + len(self._unsent_releases)
        for batch in self._batches:
            pending += len(batch.op.adds) + len(batch.op.holds) + len(batch.op.releases)
        return CountersStatus(self._url is not None, self._state, self._since, pending, self._error)

    # -- operations --------------------------------------------------------------------------

    async def apply(self, op: Operation) -> Result:
        """Apply `op`: in Redis when it is reachable, else locally (module docstring)."""
        redis = self._redis
        if redis is None:
            return self._local.apply(op)
        if self._state != "ok":
            self._reconnect_soon()
            result = self._local.apply(op)
            if result.passed:
                self._remember(op)
            return result
        self._seq += 1
        seq = self._seq
        seeds = {n: v for n in op.counter_names() if (v := self._local.value(n)) is not None}
        try:
            async with asyncio.timeout(self._op_timeout):
                outcome = await redis.run(op, seeds=seeds, claim=(self._claims, seq))
        except FAILURES as error:
            self._failed(error)
            result = self._local.apply(op)
            self._batches.append(_Batch(seq, _changes(op) if result.passed else Operation()))
            return result
        self._mirror(outcome.after)
        if outcome.result is None:  # the number was claimed already: cannot happen
            return self._local.apply(op)
        if outcome.result.passed and (op.holds or op.releases):
            self._local.apply(Operation(holds=op.holds, releases=op.releases))
        return outcome.result

    async def values(self, names: Iterable[str]) -> dict[str, int | None]:
        """The counters' values (Redis's when reachable; the local value for a counter Redis
        does not have), None for a missing one."""
        names = list(names)
        if self._redis is not None and self._state == "ok":
            try:
                async with asyncio.timeout(self._op_timeout):
                    got = await self._redis.values(names)
            except FAILURES as error:
                self._failed(error)
            else:
                return {n: v if v is not None else self._local.value(n) for n, v in got.items()}
        return {n: self._local.value(n) for n in names}

    # -- the local copy ----------------------------------------------------------------------

    def _outstanding(self) -> dict[str, int]:
        """Per counter, what the local copy counted that Redis may not have yet."""
        totals = {name: delta for name, (delta, _) in self._unsent.items()}
        for batch in self._batches:
            for add in batch.op.adds:
                totals[add.counter] = totals.get(add.counter, 0) + add.amount
        return totals

    def _mirror(self, after: Mapping[str, tuple[int, int]]) -> None:
        """Copy Redis's counters into the local copy (plus what Redis does not have yet)."""
        if not after:
            return
        outstanding = self._outstanding() if self._unsent or self._batches else {}
        now = self._clock()
        for name, (value, pttl) in after.items():
            expires = now + pttl / 1000 if pttl >= 0 else None
            self._local.put(name, value + outstanding.get(name, 0), expires=expires)

    def _remember(self, op: Operation) -> None:
        """Note what a locally applied `op` changed, for Redis later."""
        for add in op.adds:
            delta, ttl = self._unsent.get(add.counter, (0, None))
            self._unsent[add.counter] = (delta + add.amount, add.ttl or ttl)
        for hold in op.holds:
            self._unsent_releases.pop((hold.holds, hold.ticket), None)
            self._unsent_holds[hold.holds, hold.ticket] = hold
        for release in op.releases:
            self._unsent_holds.pop((release.holds, release.ticket), None)
            self._unsent_releases[release.holds, release.ticket] = release

    def _take_unsent(self) -> _Batch:
        """Unsent changes (`BATCH_SIZE` at most) as one batch under a new claim number."""
        now = self._clock()
        adds: list[Add] = []
        for name in list(itertools.islice(self._unsent, BATCH_SIZE)):
            delta, ttl = self._unsent.pop(name)
            expires = self._local.expires(name)
            if expires is not None:
                ttl = max(1, math.ceil(expires - now))
            adds.append(Add(name, delta, ttl))
        holds: list[Hold] = []
        for key in list(itertools.islice(self._unsent_holds, BATCH_SIZE - len(adds))):
            hold = self._unsent_holds.pop(key)
            if hold.expires >= now:
                holds.append(hold)
        room = BATCH_SIZE - len(adds) - len(holds)
        releases = [self._unsent_releases.pop(k) for k in list(self._unsent_releases)[:room]]
        self._seq += 1
        op = Operation(adds=tuple(adds), holds=tuple(holds), releases=tuple(releases))
        return _Batch(self._seq, op)

    # -- outages -----------------------------------------------------------------------------

    def _failed(self, error: BaseException) -> None:
        """Redis failed: count locally from now on; log at most once a minute."""
        now = self._clock()
        text = f"{type(error).__name__}: {error}".rstrip(": ")
        first = self._state == "ok"
        if first:
            self._state = "unreachable"
            self._since = now
            self._logged = False
            self._next_attempt = max(self._next_attempt, now + RETRY_EVERY)
        self._error = text
        if now < self._next_log:
            log.debug("Redis for the limits still unreachable: %s", text)
            return
        self._next_log = now + LOG_EVERY
        self._logged = True
        assert self._url is not None
        if first:
            log.warning(
                "Redis at %s unreachable (%s): limits are counted by this replica alone "
                "until it answers",
                redacted(self._url),
                text,
            )
        else:
            log.warning(
                "Redis at %s still unreachable (%s), %d changes pending",
                redacted(self._url),
                text,
                self.status().pending,
            )

    def _reconnect_soon(self) -> None:
        """Start a probe in the background, at most once every `RETRY_EVERY` seconds."""
        now = self._clock()
        if (self._probe is not None and not self._probe.done()) or now < self._next_attempt:
            return
        self._next_attempt = now + RETRY_EVERY
        self._probe = asyncio.get_running_loop().create_task(self._recover())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RETRY_EVERY / 4)
            if self._state == "unreachable":
                self._reconnect_soon()

    async def _recover(self) -> None:
        """PING Redis; when it answers push the pending changes, then share again."""
        assert self._client is not None and self._redis is not None
        pushed = 0
        try:
            async with asyncio.timeout(self._op_timeout):
                await self._client.ping()
            while True:
                if self._unsent or self._unsent_holds or self._unsent_releases:
                    self._batches.append(self._take_unsent())
                if not self._batches:
                    break
                batch = self._batches[0]
                outstanding = self._outstanding()
                seeds = {}
                for name in batch.op.counter_names():
                    value = self._local.value(name)
                    if value is not None:
                        seeds[name] = value - outstanding.get(name, 0)
                try:
                    async with asyncio.timeout(self._op_timeout):
                        outcome = await self._redis.run(
                            batch.op, seeds=seeds, claim=(self._claims, batch.seq)
                        )
                except ResponseError as error:  # Redis answered: it may refuse it for good
                    batch.refused += 1
                    if batch.refused < MAX_REFUSALS:
                        raise
                    log.error("Redis refuses pending limit changes, dropped: %s", error)
                    self._batches.remove(batch)
                    continue
                self._batches.remove(batch)
                self._mirror(outcome.after)
                pushed += 1
        except FAILURES as error:
            self._failed(error)
            return
        self._state = "ok"
        self._since = self._clock()
        self._error = None
        if self._logged:
            assert self._url is not None
            log.info(
                "Redis at %s answers again: limits shared again (%d pending batches pushed)",
                redacted(self._url),
                pushed,
            )


def _changes(op: Operation) -> Operation:
    """What `op` changes, without its checks (it passed)."""
    return Operation(adds=op.adds, holds=op.holds, releases=op.releases, seeds=op.seeds)
