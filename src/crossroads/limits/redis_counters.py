"""Limit counters in Redis (`RedisCounters`), and `SharedCounters`: Redis with a local copy
that takes over while Redis is unreachable.

`RedisCounters.apply` runs one Lua script (EVALSHA; the script is sent again when Redis lost
it): the whole `Operation` is atomic on the Redis server, so every replica sees the same
counters. Counters are integer keys (`INCRBY`; a missing one is first `SET` to its seed; a
floor `SET`s it, its TTL kept). A hold set is two keys (`hold_keys`): a sorted set of its
tickets, score = expiry, and a hash ticket -> amount whose field "" holds the total of the
amounts, kept as holds come and go; dead holds are pruned oldest first (`ZRANGEBYSCORE ...
LIMIT`, `PRUNE_LIMIT` per hold set and run) with the caller's clock (`now` is an argument of
the script), so a run is O(log n) in a hold set's size. The script adds integers exactly
(Lua numbers are doubles: it works on 9-digit limbs).

`SharedCounters` (what the server uses):
- no URL: the local counters only, never a network call;
- Redis up: every operation is one EVALSHA round trip; the reply carries the touched
  counters' values and TTLs after it, copied into the local counters (with the operation's
  holds and releases), so the local copy can take over at any moment. A counter the local
  copy knows is seeded (in Redis, when missing there) with the local value;
- Redis unreachable (a connect, a timeout or any error; sockets time out after 0.25 s, an
  operation waits 0.5 s at most): the operation is applied locally and what it changed is
  remembered as pending (`limits.pending`: merged per counter and per hold; a hold placed
  and released during the outage leaves nothing). An operation whose request may have
  reached Redis (it failed on the way) is remembered whole, under its sequence number:
  every operation claims its number in Redis (`<prefix>~claims:<instance>:<boot>`, the
  last 1024 kept), so one that still runs late and its pending copy are never both
  counted. Logged on "crossroads.limits" at most once a minute. At most once a second (by
  the clock) a background probe PINGs Redis; when it answers, the pending changes are
  pushed (added with `INCRBY`, a counter Redis lost set to the local value; floors as
  floors, after the deltas counted before them), then operations go to Redis again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
    PRUNE_LIMIT,
    CountersStatus,
    LocalCounters,
    Operation,
    Result,
)
from crossroads.limits.pending import Pending
from crossroads.redis_url import redacted

log = logging.getLogger("crossroads.limits")

SOCKET_TIMEOUT = 0.25  # connect and read timeouts of the Redis client
OP_TIMEOUT = 0.5  # the most an operation waits on Redis before counting locally
RETRY_EVERY = 1.0  # seconds (by the clock) between reconnection attempts
LOG_EVERY = 60.0  # seconds (by the clock) between warnings while Redis is unreachable
FAILURES = (RedisError, OSError, TimeoutError)
MAX_REFUSALS = 3  # a pending batch Redis answers with an error this often is dropped

SCRIPT = resources.files("crossroads.limits").joinpath("counters.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ScriptRun:
    """One script run: the result (None when its claim was taken before: it ran already)
    and the touched counters after it, name -> (value, PTTL in ms, -1: no expiry)."""

    result: Result | None
    after: dict[str, tuple[int, int]]


def _number(value: float) -> str:
    return repr(float(value))


def hold_keys(prefix: str, holds: str) -> tuple[str, str]:
    """The Redis keys of the hold set `holds`: its tickets by expiry (a sorted set) and
    their amounts (a hash; field "" is their total)."""
    return f"{prefix}{holds}~exp", f"{prefix}{holds}~amt"


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
    ) -> ScriptRun:
        """Apply `op`; `seeds` override the seeds it names; `claim`: (claims set name, number):
        the op runs only if that number was not claimed before."""
        counters = op.counter_names()
        holds = op.hold_names()
        index = {name: i for i, name in enumerate(counters, 1)}
        hold_index = {name: i for i, name in enumerate(holds, 1)}
        keys = [self._prefix + n for n in counters]
        for name in holds:
            keys += hold_keys(self._prefix, name)
        args: list[str | int] = [_number(self._clock()), "", len(counters), len(holds)]
        args.append(PRUNE_LIMIT)
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
        args.append(len(op.floors))
        for floor in op.floors:
            args += [index[floor.counter], floor.minimum, floor.ttl or 0]
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
            return ScriptRun(None, state)
        values = {names[before[i] - 1]: int(before[i + 1]) for i in range(0, len(before), 2)}
        result = Result(passed=status == 1, failed=failed if failed >= 0 else None, values=values)
        return ScriptRun(result, state)


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
        self._pending = Pending(self._local, clock)
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
        return CountersStatus(
            shared=self._url is not None,
            redis=self._state,
            since=self._since,
            pending=self._pending.count(),
            error=self._error,
        )

    # -- operations --------------------------------------------------------------------------

    async def apply(self, op: Operation) -> Result:
        """Apply `op`: in Redis when it is reachable, else locally (module docstring)."""
        redis = self._redis
        if redis is None:
            return self._local.apply(op)
        if self._state != "ok":
            self._reconnect_soon()
            known = {
                (hold.holds, hold.ticket)
                for hold in op.holds
                if self._local.holding(hold.holds, hold.ticket)
            }
            result = self._local.apply(op)
            if result.passed:
                self._pending.remember(op, known)
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
            self._pending.keep_whole(seq, op if result.passed else None)
            return result
        self._mirror(outcome.after)
        if outcome.result is None:  # the number was claimed already: cannot happen
            return self._local.apply(op)
        if outcome.result.passed and (op.holds or op.releases):
            self._local.apply(Operation(holds=op.holds, releases=op.releases))
        return outcome.result

    def apply_local(self, op: Operation) -> Result:
        """Apply `op` synchronously to the local counters: only without a URL (they are then
        all there is). RuntimeError when networked (use `apply`)."""
        if self._redis is not None:
            raise RuntimeError("apply_local: the counters are shared through Redis")
        return self._local.apply(op)

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

    def _mirror(self, after: Mapping[str, tuple[int, int]]) -> None:
        """Copy Redis's counters into the local copy (plus what Redis does not have yet)."""
        if not after:
            return
        now = self._clock()
        values = self._pending.on_top({name: value for name, (value, _) in after.items()})
        for name, (_, pttl) in after.items():
            expires = now + pttl / 1000 if pttl >= 0 else None
            self._local.put(name, values[name], expires=expires)

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
                if self._pending.unsent():
                    self._seq += 1
                    self._pending.take(self._seq)
                if not self._pending.batches:
                    break
                batch = self._pending.batches[0]
                outstanding = self._pending.outstanding()
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
                    self._pending.batches.remove(batch)
                    continue
                self._pending.batches.remove(batch)
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
