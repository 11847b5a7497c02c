"""The Gateway: the one object that owns catalog, keys, router, HTTP client, stats and records.

Nothing lives at module level; `create_app()` builds a Gateway and starts/stops it
with the application's lifespan.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.keys import KeyRing, period_starts
from crossroads.catalog import Catalog, load_catalog, read_config
from crossroads.catalog.discovery import discover_local
from crossroads.providers import builtin_adapters
from crossroads.providers.base import Adapter
from crossroads.providers.http import UpstreamClient, UpstreamLimits
from crossroads.routing.attempt import Upstream
from crossroads.routing.executor import Executor
from crossroads.routing.run import Sinks
from crossroads.settings import Settings
from crossroads.storage import GenerationStore, KeyStore, make_engine, migrate
from crossroads.telemetry.journal import Journal
from crossroads.telemetry.recorder import Recorder
from crossroads.telemetry.stats import LiveStats


def upstream_limits(settings: Settings) -> UpstreamLimits:
    """The bounds on what a provider may send, from the server's settings."""
    return UpstreamLimits(
        max_body_bytes=settings.upstream_max_body_bytes,
        max_event_bytes=settings.upstream_max_event_bytes,
        stream_seconds=settings.upstream_stream_timeout_seconds,
        idle_seconds=settings.upstream_idle_timeout_seconds,
    )


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
    executor: Executor
    generated_management_key: str | None = field(default=None)
    created: int = 0
    _discovery: asyncio.Task[None] | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings, config: Mapping[str, Any] | None = None) -> Gateway:
        """Everything, not yet started; `config` is the parsed config file, read here when
        the caller has not read it already."""
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
        stats = LiveStats()
        keys = KeyRing(KeyStore(engine))
        data = Path(settings.data_dir)
        recorder = Recorder(  # the old shutdown spool is replayed like a journal segment
            GenerationStore(engine),
            journal=Journal(data / "journal", adopt=[data / "unwritten-generations.jsonl"]),
            quarantine=data / "rejected-generations.jsonl",
            interval=settings.recorder_interval_seconds,
        )
        rng = random.Random(settings.routing_seed)
        sinks = Sinks(providers=catalog.providers, stats=stats, spend=keys, records=recorder)
        upstream = Upstream(catalog.providers, adapters, client)
        executor = Executor(catalog=catalog, upstream=upstream, stats=stats, sinks=sinks, rng=rng)
        return cls(
            settings,
            catalog,
            adapters,
            engine,
            client,
            stats,
            keys,
            recorder,
            executor,
            created=created,
        )

    async def start(self) -> None:
        await migrate(self.engine)
        await self.recorder.start()  # replays the journal: spend below counts those records
        starts = period_starts(datetime.now(UTC))
        spend = await GenerationStore(self.engine).spend_by_key(starts)
        await self.keys.load(spend=spend, starts=starts)
        if self.settings.management_key:
            self.keys.add_ephemeral(
                self.settings.management_key, "management (environment)", is_management=True
            )
        elif not self.keys.has_stored_management_key():
            token, _ = await self.keys.create("management", is_management=True)
            self.generated_management_key = token
        await self.client.start()
        await self.discover()
        self._discovery = asyncio.create_task(self._rediscover(), name="crossroads-discovery")

    async def discover(self) -> None:
        """Find the local servers that run now, and their models."""
        own = (self.settings.host, self.settings.port)
        await discover_local(self.catalog, self.client, own=own, created=self.created)

    async def _rediscover(self) -> None:
        while True:
            await asyncio.sleep(self.settings.discovery_interval_seconds)
            await self.discover()

    async def stop(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
        await self.recorder.close()
        await self.client.close()
        await self.engine.dispose()
