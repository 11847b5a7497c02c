"""The Gateway: the one object that owns catalog, keys, router, HTTP client, stats and records.

Nothing lives at module level; `create_app()` builds a Gateway and starts/stops it
with the application's lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.keys import KeyRing, period_starts
from crossroads.catalog import Catalog, load_catalog, read_config
from crossroads.catalog.discovery import discover_local
from crossroads.errors import ConfigError
from crossroads.ids import RandomIds
from crossroads.limits.policy import Limits
from crossroads.limits.redis_counters import SharedCounters
from crossroads.limits.values import Account, FreeTier
from crossroads.plugins.moderation import Moderator, moderation_config
from crossroads.plugins.search import WebSearch, search_config
from crossroads.providers import builtin_adapters
from crossroads.providers.base import Adapter
from crossroads.providers.http import UpstreamClient, UpstreamLimits
from crossroads.replicas import ReplicaSync
from crossroads.routing.attempt import Upstream
from crossroads.routing.run import Sinks
from crossroads.routing.service import InferenceService
from crossroads.settings import Settings, credits_enforced
from crossroads.storage import (
    ActivityStore,
    BucketStore,
    GenerationStore,
    KeyStore,
    LedgerStore,
    Rollups,
    RollupStore,
    make_engine,
    migrate,
)
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.folding import StatsFolder
from crossroads.telemetry.journal import Journal
from crossroads.telemetry.live import Telemetry
from crossroads.telemetry.metrics import Metrics, RecordFanout
from crossroads.telemetry.recorder import Recorder
from crossroads.telemetry.stats import LiveStats
from crossroads.telemetry.tracing import Tracing

log = logging.getLogger("crossroads.limits")


def upstream_limits(settings: Settings) -> UpstreamLimits:
    """The bounds on what a provider may send, from the server's settings."""
    return UpstreamLimits(
        max_body_bytes=settings.upstream_max_body_bytes,
        max_event_bytes=settings.upstream_max_event_bytes,
        stream_seconds=settings.upstream_stream_timeout_seconds,
        idle_seconds=settings.upstream_idle_timeout_seconds,
    )


def _moderator(
    config: Mapping[str, Any], catalog: Catalog, client: UpstreamClient
) -> Moderator | None:
    """The moderation plugin's service, as the config file's `moderation` names it."""
    wanted = moderation_config(config)
    if wanted is None:
        return None
    provider = catalog.providers.get(wanted.provider)
    if provider is None or not provider.base_url:
        raise ConfigError(f"config: moderation.provider {wanted.provider!r} is not a provider")
    return Moderator(client, provider, wanted)


def _searcher(config: Mapping[str, Any], client: UpstreamClient) -> WebSearch | None:
    """The web plugin's engine, as the config file's `web_search` names it."""
    wanted = search_config(config)
    return WebSearch(client, wanted) if wanted is not None else None


@dataclass
class Gateway:
    settings: Settings
    catalog: Catalog
    adapters: dict[str, Adapter]
    engine: AsyncEngine
    client: UpstreamClient
    stats: LiveStats
    keys: KeyRing
    recorder: Recorder
    inference: InferenceService  # a chat request from its parse to its record
    circuits: Circuits
    telemetry: Telemetry  # the router's stats sink: live statistics and circuits
    metrics: Metrics  # GET /metrics
    tracing: Tracing  # OpenTelemetry spans, when OTEL_EXPORTER_OTLP_ENDPOINT is set
    records: RecordFanout  # the router's record sink: the recorder, then metrics
    folder: StatsFolder  # live statistics' buckets into the database, and back at start
    rollups: Rollups  # usage rollups (per-process cache; popularity refreshed in the background)
    limits: Limits  # admission: key limits, the balance, free-tier and per-key rates
    counters: SharedCounters  # the limits' counters: per process, or shared through Redis
    ledger: LedgerStore  # credits added and charges drawn from the balance
    activity: ActivityStore  # GET /activity: usage per day, model and endpoint
    generations: GenerationStore  # the stored records: spend at start, GET /generations
    ids: RandomIds  # generation and ticket ids
    generated_management_key: str | None = field(default=None)
    created: int = 0
    _running: AsyncExitStack = field(default_factory=AsyncExitStack)  # stops what started
    replicas: ReplicaSync | None = field(default=None)  # with settings.redis

    @classmethod
    def build(
        cls,
        settings: Settings,
        config: Mapping[str, Any] | None = None,
        *,
        tracing: Tracing | None = None,
    ) -> Gateway:
        """Everything, not yet started; `config` is the parsed config file, read here when
        the caller has not read it already. `tracing` defaults to the environment's
        (`Tracing.from_environment`); tests hand in one with an in-memory exporter."""
        if config is None:
            config = read_config(settings.config)
        if settings.config:
            created = int(Path(settings.config).stat().st_mtime)
        else:
            created = int(time.time())
        adapters = builtin_adapters()
        catalog = load_catalog(config, adapters=adapters, created=created)
        engine = make_engine(settings.database_url)
        client = UpstreamClient(limits=upstream_limits(settings))
        stats = LiveStats(instance=settings.instance)
        circuits = Circuits(
            clock=time.time,
            failures=settings.circuit_failures,
            cooldown=settings.circuit_cooldown_seconds,
            max_cooldown=settings.circuit_max_cooldown_seconds,
        )
        telemetry = Telemetry(stats, circuits, feed_stats=settings.telemetry)
        keys = KeyRing(KeyStore(engine))
        counters = SharedCounters(settings.redis, instance=settings.instance)
        ids = RandomIds()
        limits = Limits(
            counters,
            keys=keys,
            free=FreeTier(
                per_minute=settings.free_requests_per_minute,
                per_day=settings.free_requests_per_day,
                per_day_with_credits=settings.free_requests_per_day_with_credits,
            ),
            account=Account(enforce=credits_enforced(settings, config)),
            hold_seconds=settings.upstream_stream_timeout_seconds + 60,
            clock=time.time,
            ids=ids,
        )
        data = Path(settings.data_dir)
        generations = GenerationStore(engine)
        recorder = Recorder(  # the old shutdown spool is replayed like a journal segment
            generations,
            journal=Journal(data / "journal", adopt=[data / "unwritten-generations.jsonl"]),
            quarantine=data / "rejected-generations.jsonl",
            interval=settings.recorder_interval_seconds,
        )
        rng = random.Random(settings.routing_seed)
        metrics = Metrics(
            enabled=settings.telemetry,
            recorder_stats=recorder.stats,
            circuit_states=circuits.states,
        )
        tracing = tracing or Tracing.from_environment()
        records = RecordFanout(recorder, metrics, hold=settings.access_log or tracing.enabled)
        sinks = Sinks(providers=catalog.providers, stats=telemetry, spend=limits, records=records)
        upstream = Upstream(catalog.providers, adapters, client, tracing=tracing)
        inference = InferenceService(
            catalog=catalog,
            upstream=upstream,
            stats=stats,
            circuits=circuits,
            limits=limits,
            sinks=sinks,
            rng=rng,
            moderator=_moderator(config, catalog, client),
            searcher=_searcher(config, client),
        )
        return cls(
            settings,
            catalog,
            adapters,
            engine,
            client,
            stats,
            keys,
            recorder,
            inference,
            circuits=circuits,
            telemetry=telemetry,
            metrics=metrics,
            tracing=tracing,
            records=records,
            folder=StatsFolder(
                stats, BucketStore(engine), interval=settings.stats_flush_interval_seconds
            ),
            rollups=Rollups(
                RollupStore(engine),
                ttl=min(5.0, settings.stats_flush_interval_seconds),
                refresh=settings.stats_flush_interval_seconds,
            ),
            limits=limits,
            counters=counters,
            ledger=LedgerStore(engine),
            activity=ActivityStore(engine),
            generations=generations,
            ids=ids,
            created=created,
            replicas=ReplicaSync(
                settings.redis,
                instance=settings.instance,
                stats=stats,
                circuits=circuits,
                known=catalog.has_endpoint,
            )
            if settings.redis
            else None,
        )

    async def start(self) -> None:
        """Start every service, each one's stop pushed onto `_running` as it starts: `stop`
        runs them in the reverse order, and a start that fails stops what had started."""
        async with AsyncExitStack() as running:
            await self._start(running)
            self._running = running.pop_all()

    async def _start(self, running: AsyncExitStack) -> None:
        running.push_async_callback(self.engine.dispose)
        await migrate(self.engine)
        running.push_async_callback(asyncio.to_thread, self.tracing.shutdown)  # the last spans
        running.push_async_callback(self.client.close)
        running.push_async_callback(self.rollups.close)
        running.push_async_callback(self.folder.close)  # the last buckets
        running.push_async_callback(self.recorder.close)
        await self.recorder.start()  # replays the journal: spend below counts those records
        await self.folder.load()  # the stored statistics buckets, before any request counts
        self.folder.start()
        await self.rollups.start()
        starts = period_starts(datetime.now(UTC))
        generations = self.generations
        spend = await generations.spend_by_key(starts)
        await self.keys.load(spend=spend, starts=starts)
        free_today = await generations.free_requests_today(starts["daily"])
        today = starts["daily"].strftime("%Y%m%d")
        self.limits.set_free_baseline(today, free_today)
        await self.read_account()
        running.push_async_callback(self.counters.close)
        running.push_async_callback(self.limits.drain)
        await self.counters.start()
        await self.limits.reconcile(self.keys.list())  # Redis never below the records
        if self.settings.management_key:
            self.keys.add_ephemeral(
                self.settings.management_key, "management (environment)", is_management=True
            )
        elif not self.keys.has_stored_management_key():
            token, _ = await self.keys.create("management", is_management=True)
            self.generated_management_key = token
        await self.client.start()
        await self.discover()
        settings = self.settings
        background = (
            (self.discover, settings.discovery_interval_seconds, "crossroads-discovery"),
            (self._reread, settings.keys_refresh_seconds, "crossroads-keys"),
        )
        for job, seconds, name in background:
            task = asyncio.create_task(_every(seconds, job), name=name)
            running.callback(task.cancel)
        if self.replicas is not None:  # after the statistics are restored: shares them too
            running.push_async_callback(self.replicas.stop)  # first to stop: its last changes
            await self.replicas.start()  # waits 1 s at most; requests never await Redis

    async def discover(self) -> None:
        """Find the local servers that run now, and their models."""
        own = (self.settings.host, self.settings.port)
        await discover_local(self.catalog, self.client, own=own, created=self.created)

    async def read_account(self) -> None:
        """The balance as the ledger holds it now."""
        totals = await self.ledger.totals()
        account = self.limits.account
        account.credits, account.charges = totals.credits, totals.charges
        account.credit_rows = totals.credit_rows

    async def _reread(self) -> None:
        """Keys and credits changed by another replica or by `crossroads keys|credits`,
        every `keys_refresh_seconds`: a disabled key is refused within that time."""
        try:
            await self.keys.refresh()
            await self.read_account()
            await self.limits.reconcile()  # the shared balance, never below the ledger
        except (SQLAlchemyError, OSError) as exc:  # the next round tries again
            log.warning("cannot read keys and credits: %s", exc)

    async def stop(self) -> None:
        """Stop what `start` started, in the reverse order."""
        await self._running.aclose()


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run `job` every `seconds`, until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        await job()
