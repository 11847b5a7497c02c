"""`crossroads keys`: the management key, kept out of logs.

A generated management key is written once to `<data dir>/management-key` (mode 0600),
never printed. `crossroads keys rotate-management` replaces the stored management key,
also while a server runs on the same database: the server checks management keys
against the database, so the old key stops working at once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import click

from crossroads.accounting.keys import KeyRing, period_starts
from crossroads.catalog import read_config
from crossroads.errors import ConfigError
from crossroads.settings import Settings
from crossroads.storage import KeyStore, make_engine, migrate

KEY_FILE = "management-key"


def write_key_file(data_dir: str | Path, token: str) -> Path:
    """Write `token` to `<data_dir>/management-key`, readable by its owner only.

    The file is created new (O_EXCL, mode 0600) under a temporary name, then renamed over
    any older one: no one else can read it at any moment, and a link planted at the final
    name is replaced, not followed.
    """
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KEY_FILE
    temporary = folder / f".{KEY_FILE}.{secrets.token_hex(8)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


async def _rotate(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    try:
        await migrate(engine)
        keys = KeyRing(KeyStore(engine))
        await keys.load(spend={}, starts=period_starts(datetime.now(UTC)))
        return await keys.rotate_management()
    finally:
        await engine.dispose()


@click.group()
def keys() -> None:
    """Manage the management key."""


@keys.command("rotate-management")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file whose `server:` section names the database.",
)
@click.option("--database", help="The server's database URL (default: SQLite in the data folder).")
@click.option("--data-dir", help="The server's data folder (default ./data).")
def rotate_management(config: str | None, database: str | None, data_dir: str | None) -> None:
    """Replace the stored management key with a new one.

    The new key is written to <data dir>/management-key (mode 0600); the old one stops
    working, also on a server that is running on the same database.
    """
    try:
        parsed = read_config(config)
        settings = Settings.load(
            {"config": config, "database": database, "data_dir": data_dir},
            file_settings=parsed.get("server"),
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    token = asyncio.run(_rotate(settings))
    path = write_key_file(settings.data_dir, token)
    click.echo(f"A new management key was written to {path} (readable only by you).")
    click.echo("The previous management key no longer works.")
    if settings.management_key:
        click.echo(
            "CROSSROADS_MANAGEMENT_KEY is set: that key keeps working until it is removed "
            "from the server's environment."
        )
