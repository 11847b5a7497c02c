"""`crossroads serve --workers N`: N processes answering on one port.

uvicorn's supervisor binds the port once and starts N worker processes that share the
listening socket (the kernel hands each new connection to one of them); it restarts a
worker that dies and, on SIGTERM, stops them all gracefully. Each worker builds its own
app from the flags the parent resolved (handed over in `FLAGS_ENV`), under its own name in
the shared statistics (`<host>:<port>/<pid>`), with its own journal directory in the data
folder (telemetry/journal.py: a worker that died leaves its records to the next one).

Limits and credits must be shared by the workers, so N > 1 needs Redis (`--redis`), on
SQLite as on PostgreSQL: without it the command refuses. What must happen once happens in
the parent before any worker starts: the schema is migrated and, when no management key
exists yet, one is generated and written to its file.
"""

from __future__ import annotations

import gc
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.catalog import read_config
from crossroads.cli.store import run
from crossroads.errors import ConfigError
from crossroads.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

FLAGS_ENV = "CROSSROADS_SERVE_FLAGS"  # the parent's flags, JSON, for the workers to read

# The collector's thresholds: a request allocates a few hundred objects, and the default
# (700) ran a young collection every couple of requests; cycles are rare in the request path.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_collector() -> None:
    """For a server process, once it has started: what start-up built (the catalog, the
    keys, the templates) lives as long as the process, so it leaves the collector's sight
    and full collections stay short; young collections run less often. Whole-process
    settings: the server's entry points call this, never `create_app` (tests build many)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse a number of workers that cannot keep the limits (module docstring)."""
    if workers < 1:
        raise click.ClickException(f"--workers must be 1 or more, not {workers}")
    if workers > 1 and not settings.redis:
        raise click.ClickException(
            f"--workers {workers} needs --redis redis://host:port/db: each worker would count "
            "keys' limits and the credits on its own, and together they would let through "
            f"up to {workers} times what a limit allows. Add --redis, or run one worker."
        )


def prepare(settings: Settings) -> str | None:
    """Migrate the database and, if the server has no management key at all, generate one:
    once, in the parent. The generated key (to announce), or None."""
    from crossroads.accounting.keys import KeyRing, period_starts
    from crossroads.storage import KeyStore

    async def work(engine: AsyncEngine) -> str | None:
        keys = KeyRing(KeyStore(engine))
        await keys.load(spend={}, starts=period_starts(datetime.now(UTC)))
        if settings.management_key or keys.has_stored_management_key():
            return None
        token, _ = await keys.create("management", is_management=True)
        return token

    return run(settings, work)


def hand_over(flags: dict[str, Any]) -> None:
    """Put the parent's flags where the workers read them (the environment is inherited)."""
    os.environ[FLAGS_ENV] = orjson.dumps(flags).decode()


def worker_app() -> Starlette:
    """The app of one worker: uvicorn's factory, called in each worker process."""
    from crossroads.app import create_app
    from crossroads.gateway import Gateway

    flags = orjson.loads(os.environ[FLAGS_ENV])
    try:
        parsed = read_config(flags["config"])
        settings = Settings.load(flags, file_settings=parsed.get("server"))
        settings.instance_id = f"{settings.instance}/{os.getpid()}"
        gateway = Gateway.build(settings, parsed if settings.config == flags["config"] else None)
    except ConfigError as exc:  # read once by the parent already: changed since
        raise SystemExit(f"crossroads worker {os.getpid()}: {exc}") from None
    app = create_app(settings, gateway)
    app.state.on_started = lambda gw: tune_collector()
    return app
