"""The Gateway: the one object that owns catalog, keys, router, HTTP client, stats and records.

Nothing lives at module level; `create_app()` builds a Gateway and starts/stops it
with the application's lifespan.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.keys import KeyRing
from crossroads.catalog import Catalog, load_catalog, read_config
from crossroads.catalog.discovery import discover_local
from crossroads.providers import builtin_adapters
from crossroads.providers.base import Adapter
from crossroads.providers.http import UpstreamClient
from crossroads.routing.executor import Executor
from crossroads.settings import Settings
from crossroads.storage import GenerationStore, KeyStore, make_engine, migrate
from crossroads.telemetry.recorder import Recorder
from crossroads.telemetry.stats import LiveStats


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
    def build(cls, settings: Settings) -> Gateway:
        config = read_config(settings.config)
        created = int(Path(settings.config).stat().st_mtime) if settings.config else int(time.time())
        adapters = builtin_adapters()
        catalog = load_catalog(config, adapters=adapters, created=created)
        engine = make_engine(settings.database_url)
        client = UpstreamClient()
        stats = LiveStats()
        keys = KeyRing(KeyStore(engine))
        recorder = Recorder(GenerationStore(engine), interval=settings.recorder_interval_seconds,
                            spool=Path(settings.data_dir) / "unwritten-generations.jsonl")
        rng = random.Random(settings.routing_seed)
        executor = Executor(catalog, adapters, client, stats, recorder, keys, rng)
        return cls(settings, catalog, adapters, engine, client, stats, keys, recorder, executor, created=created)

    async def start(self) -> None:
        await migrate(self.engine)
        await self.keys.load(GenerationStore(self.engine))
        if self.settings.management_key:
            self.keys.add_ephemeral(self.settings.management_key, "management (environment)", is_management=True)
        elif not self.keys.has_stored_management_key():
            self.generated_management_key, _ = await self.keys.create("management", is_management=True)
        await self.client.start()
        await self.recorder.start()
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
