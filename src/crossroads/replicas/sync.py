"""`ReplicaSync`: this replica's live statistics and circuits, shared with its peers through Redis.

A background task, never awaited by a request. Every `interval` (0.5 s) one round, a single
MULTI/EXEC transaction:

- heartbeat: `ZADD <prefix>:live <now> <instance>`; a replica whose heartbeat is older than
  `dead_after` (5 s) is dead;
- this replica's buckets changed since the last round (`stats.take_dirty("redis")`) go into
  its hash `<prefix>:rows:<instance>` (HSET; HDEL of buckets past their ring, checked once a
  minute; EXPIRE `hash_ttl`, 10 s, so the hash of a replica that stops beating goes away)
  and, with its circuit transitions (`circuits.take_changes()`), onto the pub/sub channel
  `<prefix>:events`; transitions are also kept in `<prefix>:circuits` for late joiners;
- the live set is read back: peers that appear have their database archive forgotten
  (`stats.forget_archive`: they share those buckets themselves), peers that disappear are
  noted.

A second task applies peers' messages: `stats.update_peer(rows)` and `circuits.apply(change)`,
its own ignored. A transition reaches every live peer within one round plus delivery: well
under a second.

On connecting (at start and after every outage) the sync subscribes first, then reads every
live peer's hash and the open circuits (`HGETALL`), and only then starts applying messages,
so no message is lost and none is overtaken by an older hash. Its first round replaces its
own hash by every bucket still in its ring (`stats.own_rows()`) and publishes them: peers
catch up on whatever they missed meanwhile. If its hash vanished without an outage (a stall
longer than `hash_ttl`), the next round rewrites it whole too.

Failures: any Redis error ends the connection; the error is logged once per outage (at
warning; repeats at debug), retried after a backoff (0.5 s doubling to 5 s), and recovery is
logged. Circuit transitions taken during a failed round are kept and sent again.

Dead peers (the choice made): a replica that stops beating is not dropped. Its last buckets
stay in this replica's peer layer and leave the windows as they age (a 5-minute window
forgets them after 5 minutes, the 30-day uptime after 30 days): traffic it served did
happen. They are dropped (`stats.drop_peer`) once even its day buckets are past their ring.
A replica that starts later does not see a dead peer's buckets through Redis (its hash
expires); with a shared database it reads them from the archive the peer flushed there.
A peer that comes back under the same name republishes its buckets, which replace the
ones kept by key: nothing counts twice.

Clocks: heartbeats and circuit deadlines are wall-clock epoch seconds of each host; replicas
should run NTP-synchronised clocks (a skew of a second or two is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from crossroads.redis_url import redacted as redacted  # re-exported: tests import it here
from crossroads.replicas.messages import (
    Keys,
    Message,
    chunks,
    circuit_value,
    circuits_from_hash,
    decode,
    encode,
    field_key,
    row_field,
    rows_from_hash,
)
from crossroads.telemetry.buckets import DAY, GRAIN_BY_NAME, BucketRow, in_ring
from crossroads.telemetry.circuit import CircuitChange, Circuits, CircuitState
from crossroads.telemetry.stats import LiveStats

MAX_PEERS = 64  # replicas whose figures one replica keeps

log = logging.getLogger("crossroads.replicas")

ROWS_PER_MESSAGE = 256  # a full republish is split into messages of at most this many rows
PRUNE_EVERY = 60.0  # seconds between checks for own hash fields past their ring
CIRCUITS_TTL = 3600  # the shared circuits hash expires when no transition refreshes it
FORGET_AFTER = float(DAY.span())  # heartbeats older than this leave the live set for good
MAX_BACKOFF = 5.0
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
STOP_TIMEOUT = 2.0  # a clean stop waits this long for the last round
START_WAIT = 1.0  # start() waits at most this long for the peers' buckets and open circuits


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What the sync knows now (for health checks and tests)."""

    connected: bool
    peers: tuple[str, ...]  # live peers, sorted
    bad_messages: int  # peers' messages that could not be read


class ReplicaSync:
    """Shares `stats` and `circuits` with the replicas using the same Redis and prefix
    (module docstring). `start()` waits a second at most, Redis reachable or not."""

    def __init__(
        self,
        url: str,
        *,
        instance: str,
        stats: LiveStats,
        circuits: Circuits,
        known: Callable[[str], bool] = lambda endpoint_id: True,
        prefix: str = "crossroads",
        interval: float = 0.5,
        dead_after: float = 5.0,
        hash_ttl: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0 or dead_after <= interval or hash_ttl < dead_after:
            raise ValueError("replica sync needs 0 < interval < dead_after <= hash_ttl")
        self.instance = instance
        self._url = url
        self._stats = stats
        self._circuits = circuits
        self._known = known  # endpoints whose figures are kept: a peer's others are ignored
        self._keys = Keys(prefix)
        self._interval = interval
        self._dead_after = dead_after
        self._hash_ttl = max(1, round(hash_ttl))
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._settled = asyncio.Event()  # the first connection loaded the peers, or failed
        self._connected = False
        self._outage: float | None = None  # when the current outage began
        self._full = True  # the next round rewrites the own hash whole
        self._written: set[tuple[str, str, int]] = set()  # own fields in the hash
        self._next_prune = 0.0
        self._pending: dict[str, CircuitChange] = {}  # taken, not yet sent
        self._live: set[str] = set()  # live peers
        self._dead: dict[str, float] = {}  # peer -> when it was last seen live
        self._bad_messages = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start sharing; waits (START_WAIT at most) for the first connection to load the
        peers' buckets and open circuits, so the first requests are routed knowing them.
        Redis unreachable: returns as soon as the first attempt failed."""
        if self._task is None:
            self._stopping.clear()
            self._settled.clear()
            self._task = asyncio.create_task(self._run(), name="crossroads-replicas")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), START_WAIT)

    async def stop(self) -> None:
        """One last round (buckets and transitions not sent yet; this replica leaves the live
        set and its hash is deleted) when connected, within STOP_TIMEOUT; then the end."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("redis: the last round did not finish within %.0f s", STOP_TIMEOUT)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._connected = False

    def status(self) -> SyncStatus:
        return SyncStatus(self._connected, tuple(sorted(self._live)), self._bad_messages)

    # -- connection --------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
            except Exception as exc:  # any failure: logged once per outage, retried
                self._failed(exc)
            self._settled.set()
            if self._stopping.is_set():
                return
            failures = 0 if self._connected else failures + 1
            self._connected = False
            await self._sleep(min(MAX_BACKOFF, self._interval * 2 ** max(0, failures - 1)))

    def _failed(self, exc: BaseException) -> None:
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        if self._outage is None:
            self._outage = self._clock()
            log.warning(
                "redis %s: %s: %s; statistics and circuits are not shared until it is back",
                redacted(self._url),
                type(exc).__name__,
                exc,
            )
        else:
            log.debug("redis still unavailable: %s: %s", type(exc).__name__, exc)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or less when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _session(self) -> None:
        client = Redis.from_url(
            self._url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self._keys.channel)
            await self._load_peers(client)
            self._settled.set()
            self._full = True
            listener = asyncio.create_task(self._listen(pubsub))
            beater = asyncio.create_task(self._beat(client))
            try:
                done, _ = await asyncio.wait(
                    {listener, beater}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (listener, beater):
                    task.cancel()
                await asyncio.gather(listener, beater, return_exceptions=True)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
        finally:
            await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
            await _quietly(client.aclose())

    # -- peers' news -------------------------------------------------------------------

    async def _load_peers(self, client: Redis) -> None:
        """Every live peer's buckets and the open circuits: what a joiner missed."""
        now = self._clock()
        names = await client.zrangebyscore(self._keys.live, now - self._dead_after, "+inf")
        peers = sorted({_text(n) for n in names} - {self.instance})
        async with client.pipeline(transaction=False) as pipe:
            for peer in peers:
                pipe.hgetall(self._keys.rows(peer))
            pipe.hgetall(self._keys.circuits)
            results = await pipe.execute()
        skipped = 0
        for peer, fields in zip(peers, results, strict=False):
            rows, bad = rows_from_hash(peer, fields)
            skipped += bad
            self._joined(peer)
            self._stats.update_peer(r for r in rows if self._known(r.endpoint_id))
        changes, bad = circuits_from_hash(results[-1])
        skipped += bad
        for change in changes:  # CLOSED ones may be older than what happened here since
            if change.state is CircuitState.OPEN and self._known(change.endpoint_id):
                self._circuits.apply(change)
        if skipped:
            log.warning("redis: %d unreadable fields skipped", skipped)

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                self.receive(message["data"])

    def receive(self, data: bytes) -> None:
        """Apply one message from the channel (this replica's own are ignored)."""
        try:
            message = decode(data)
        except ValueError as exc:
            self._bad_messages += 1
            log.debug("redis: unreadable message skipped: %s", exc)
            return
        if message.sender == self.instance:
            return
        if message.sender not in self._live and len(self._live) >= MAX_PEERS:
            return  # bounded memory whatever the channel carries
        if message.rows:
            self._stats.update_peer(r for r in message.rows if self._known(r.endpoint_id))
        for change in message.circuits:
            if self._known(change.endpoint_id):
                self._circuits.apply(change)

    def _joined(self, peer: str) -> None:
        if peer not in self._live:
            self._live.add(peer)
            self._dead.pop(peer, None)
            self._stats.forget_archive(peer)  # it shares its own buckets, old ones included
            log.info("replica %s is live", peer)

    def _seen(self, live: set[str], now: float) -> None:
        for peer in live - self._live:
            self._joined(peer)
        for peer in self._live - live:
            self._live.discard(peer)
            self._dead[peer] = now
            log.info("replica %s stopped beating; its buckets age out of the windows", peer)
        for peer, since in list(self._dead.items()):
            if now - since > FORGET_AFTER:
                del self._dead[peer]
                self._stats.drop_peer(peer)

    # -- own news ----------------------------------------------------------------------

    async def _beat(self, client: Redis) -> None:
        while True:
            began = time.monotonic()
            final = self._stopping.is_set()
            await self._round(client, final=final)
            if final:
                return
            await self._sleep(max(0.0, self._interval - (time.monotonic() - began)))

    async def _round(self, client: Redis, *, final: bool = False) -> None:
        """One heartbeat: own changes out, the live set in (module docstring)."""
        now = self._clock()
        keys, own = self._keys, self._keys.rows(self.instance)
        full = self._full
        rows = self._stats.take_dirty("redis")
        if full:
            rows = self._stats.own_rows()  # a superset of the dirty ones
        for change in self._circuits.take_changes():
            self._pending[change.endpoint_id] = change
        changes = list(self._pending.values())
        stale = [] if full or now < self._next_prune else self._stale(now)
        async with client.pipeline(transaction=True) as pipe:
            pipe.expire(own, self._hash_ttl)  # 0: the hash was gone
            if final:
                pipe.zrem(keys.live, self.instance)
            else:
                pipe.zadd(keys.live, {self.instance: now})
            pipe.zremrangebyscore(keys.live, "-inf", now - FORGET_AFTER)
            if full:
                pipe.delete(own)
            if rows:
                pipe.hset(own, mapping={row_field(r): r.data for r in rows})
            if stale:
                pipe.hdel(own, *(row_field(r) for r in stale))
            if final:
                pipe.delete(own)
            else:
                pipe.expire(own, self._hash_ttl)
            if changes:
                pipe.hset(
                    keys.circuits,
                    mapping={c.endpoint_id: circuit_value(c, self.instance) for c in changes},
                )
                pipe.expire(keys.circuits, CIRCUITS_TTL)
            batches = list(chunks(rows, ROWS_PER_MESSAGE)) or ([[]] if changes else [])
            for index, batch in enumerate(batches):
                news = Message(self.instance, batch, changes if index == 0 else [])
                pipe.publish(keys.channel, encode(news))
            pipe.zrangebyscore(keys.live, now - self._dead_after, "+inf")
            results = await pipe.execute()
        self._pending.clear()
        had_fields = bool(self._written)
        if full:
            self._written = {field_key(r) for r in rows}
        else:
            self._written.update(field_key(r) for r in rows)
            self._written.difference_update(field_key(r) for r in stale)
        if stale or full:
            self._next_prune = now + PRUNE_EVERY
        self._full = results[0] == 0 and not full and had_fields
        if self._full:
            log.warning("redis: this replica's hash had expired; it is written again")
        self._seen({_text(n) for n in results[-1]} - {self.instance}, now)
        self._up(now)

    def _stale(self, now: float) -> list[BucketRow]:
        """Own hash fields whose bucket is past its ring (as rows: only the keys matter)."""
        return [
            BucketRow(self.instance, endpoint_id, grain, start, b"")
            for endpoint_id, grain, start in self._written
            if not in_ring(GRAIN_BY_NAME[grain], start, now)
        ]

    def _up(self, now: float) -> None:
        self._connected = True
        if self._outage is not None:
            log.warning(
                "redis %s is back after %.1f s: statistics and circuits are shared again",
                redacted(self._url),
                now - self._outage,
            )
            self._outage = None


def _text(name: object) -> str:
    """A member name as Redis returned it (bytes: no decode_responses)."""
    return name.decode() if isinstance(name, bytes) else str(name)


async def _quietly(closing: Awaitable[object]) -> None:
    """Await a close that may fail or hang on a dead connection (bounded, errors ignored)."""
    try:
        await asyncio.wait_for(closing, 1.0)
    except Exception as exc:
        log.debug("redis: closing failed: %s", exc)
