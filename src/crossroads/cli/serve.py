"""`crossroads serve`: run the gateway."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import click
from sqlalchemy.engine import make_url

from crossroads.catalog import read_config
from crossroads.cli.keys import write_key_file
from crossroads.cli.workers import check_workers, hand_over, prepare, tune_collector
from crossroads.errors import ConfigError
from crossroads.settings import Settings

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from crossroads.gateway import Gateway


def _store_generated_key(settings: Settings, token: str) -> list[str]:
    """Write a generated management key to its file; the banner names the file only, since
    logs keep what a server prints."""
    try:
        path = write_key_file(settings.data_dir, token)
    except OSError as exc:
        return [
            f"A management key was generated but cannot be written to {settings.data_dir}: "
            f"{exc}. Run `crossroads keys rotate-management` to make a new one."
        ]
    return [
        f"A management key was generated and written to {path} (readable only by you).",
        "Rotate it with `crossroads keys rotate-management`.",
    ]


def _catalog_line(gateway: Gateway) -> str:
    usable = gateway.catalog.usable_providers()
    providers = gateway.catalog.providers
    routable = sum(
        1
        for m in gateway.catalog.models.values()
        if any(providers[e.provider].usable for e in m.endpoints)
    )
    return (
        f"Catalog: {len(gateway.catalog.models)} models, {routable} routable; "
        f"{len(usable)} of {len(providers)} providers usable: "
        + (
            ", ".join(p.slug for p in usable)
            or "none yet: set a provider key (e.g. GROQ_API_KEY), "
            "run `crossroads local`, or add providers in a config file (see README)"
        )
    )


def _announce(settings: Settings, gateway: Gateway) -> None:
    key, gateway.generated_management_key = gateway.generated_management_key, None  # file only
    _banner(settings, _catalog_line(gateway), generated=key)


def _banner(settings: Settings, detail: str, *, generated: str | None) -> None:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        f"Crossroads listening on {base}  (OpenAI/OpenRouter base URL: {base}/api/v1)",
        f"Database: {make_url(settings.database_url).render_as_string(hide_password=True)}",
        detail,
    ]
    if generated:
        lines += ["", *_store_generated_key(settings, generated)]
    lines += [
        "",
        "Create an API key with the management key:",
        f"    curl -s {base}/api/v1/keys -H 'Authorization: Bearer <management key>'"
        ' -d \'{"name": "my app"}\'',
    ]
    click.echo("\n".join(lines), err=False)


@click.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file with providers and models.",
)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option(
    "--database",
    help="sqlite:///file.db or postgresql://user@host/db (default: SQLite in the data folder).",
)
@click.option("--data-dir", help="Folder for the embedded SQLite database (default ./data).")
@click.option(
    "--redis",
    metavar="URL",
    help="redis://host:port/db shared by replicas: live statistics and circuits.",
)
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="One JSON line per request on standard error (default off).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Processes answering on the one port (more than 1 needs --redis).",
)
def serve(
    config: str | None,
    host: str | None,
    port: int | None,
    database: str | None,
    data_dir: str | None,
    redis: str | None,
    access_log: bool | None,
    workers: int,
) -> None:
    """Start the gateway."""
    from crossroads.app import create_app  # the server's stack: the other commands start fast
    from crossroads.gateway import Gateway

    flags = {
        "config": config,
        "host": host,
        "port": port,
        "database": database,
        "data_dir": data_dir,
        "redis": redis,
        "access_log": access_log,
    }
    try:
        parsed = read_config(config)  # {} without --config
        settings = Settings.load(flags, file_settings=parsed.get("server"))
        check_workers(settings, workers)
        # Without --config, CROSSROADS_CONFIG may still name a file: the Gateway reads that one.
        gateway = Gateway.build(settings, parsed if settings.config == config else None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if workers > 1:  # cli/workers.py: each worker builds its own app from the same flags
        hand_over(flags)
        generated = prepare(settings)
        _banner(settings, f"{workers} workers; {_catalog_line(gateway)}", generated=generated)
        _run(settings, "crossroads.cli.workers:worker_app", workers=workers)
        return
    app = create_app(settings, gateway)

    def started(gw: Gateway) -> None:
        _announce(settings, gw)
        tune_collector()

    app.state.on_started = started
    _run(settings, app, workers=1)


def _run(settings: Settings, app: ASGIApp | str, *, workers: int) -> None:
    """uvicorn, serving `app` (an import string of a factory for workers)."""
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        factory=isinstance(app, str),
        workers=workers if workers > 1 else None,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,  # nothing reads the client's address: no X-Forwarded-For pass
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )
