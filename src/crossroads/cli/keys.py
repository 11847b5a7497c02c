"""`crossroads keys`: API keys and the management key, on the server's database.

`create`, `list`, `show`, `disable`, `enable` and `delete` manage API keys while a server
runs on the same database: the server reads the keys again when they change (within about a
second). A new key is printed once, when it is created; only its hash is stored. Management
keys are never listed or changed by these commands.

A generated management key is written once to `<data dir>/management-key` (mode 0600),
never printed. `crossroads keys rotate-management` replaces the stored management key,
also while a server runs on the same database: the server checks management keys
against the database, so the old key stops working at once.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.keys import ApiKey, KeyRing, period_starts
from crossroads.cli.key_text import (
    HEADERS,
    create_options,
    describe,
    hash_prefix,
    key_fields,
    key_name,
    row,
)
from crossroads.cli.store import database_options, echo_json, load_target, run, table
from crossroads.settings import Settings
from crossroads.storage import GenerationStore, KeyStore

T = TypeVar("T")
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


async def _ring(engine: AsyncEngine) -> KeyRing:
    """Every stored key with its spend so far, read as the server reads them at start."""
    starts = period_starts(datetime.now(UTC))
    spend = await GenerationStore(engine).spend_by_key(starts)
    ring = KeyRing(KeyStore(engine))
    await ring.load(spend=spend, starts=starts)
    return ring


def _find(ring: KeyRing, prefix: str) -> ApiKey:
    """The API key whose hash starts with `prefix` (see `hash_prefix`), naming one only."""
    found = [k for k in ring.list() if k.hash.startswith(prefix)]
    if not found:
        raise click.ClickException(f"no API key with hash {prefix}")
    if len(found) > 1:
        raise click.ClickException(
            f"{len(found)} API keys have a hash starting with {prefix}: give more of it"
        )
    return found[0]


def _on_key(
    settings: Settings, reference: str, change: Callable[[KeyRing, ApiKey], Awaitable[T]]
) -> T:
    """`change` done to the API key `reference` names."""

    async def work(engine: AsyncEngine) -> T:
        ring = await _ring(engine)
        return await change(ring, _find(ring, reference))

    return run(settings, work)


@click.group()
def keys() -> None:
    """Manage API keys and the management key."""


@keys.command("create")
@click.argument("name", callback=key_name)
@create_options
@click.option("--json", "as_json", is_flag=True, help="Print the key and its object as JSON.")
@database_options
def create(
    name: str,
    as_json: bool,
    config: str | None,
    database: str | None,
    data_dir: str | None,
    **options: Any,
) -> None:
    """Create an API key called NAME; the key is printed this once, never again."""
    fields = key_fields(options)
    target = load_target(config, database, data_dir)

    async def work(engine: AsyncEngine) -> tuple[str, ApiKey]:
        return await KeyRing(KeyStore(engine)).create(name, **fields)

    token, key = run(target.settings, work)
    if as_json:
        echo_json({"data": key.public(), "key": token})
        return
    click.echo(f"Created API key {key.name!r}.")
    click.echo(f"key:   {token}")
    click.echo(f"hash:  {key.hash}")
    click.echo("The key is shown only this once: store it now.")


@keys.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include disabled keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the `/keys` objects as JSON.")
@database_options
def list_keys(
    show_all: bool, as_json: bool, config: str | None, database: str | None, data_dir: str | None
) -> None:
    """List the API keys (not the disabled ones, without --all)."""
    target = load_target(config, database, data_dir)

    async def work(engine: AsyncEngine) -> list[dict[str, Any]]:
        ring = await _ring(engine)
        return [k.public() for k in ring.list() if show_all or not k.disabled]

    listed = run(target.settings, work)
    if as_json:
        echo_json({"data": listed})
    elif not listed:
        click.echo("No API keys." if show_all else "No enabled API keys (--all shows every key).")
    else:
        click.echo(table(HEADERS, [row(d) for d in listed]))


@keys.command("show")
@click.argument("key_hash", metavar="HASH", callback=hash_prefix)
@click.option("--json", "as_json", is_flag=True, help="Print the `/keys` object as JSON.")
@database_options
def show(
    key_hash: str, as_json: bool, config: str | None, database: str | None, data_dir: str | None
) -> None:
    """Show one API key, named by its hash or a unique prefix of it (8+ characters)."""
    target = load_target(config, database, data_dir)

    async def shown(_ring: KeyRing, key: ApiKey) -> dict[str, Any]:
        return key.public()

    data = _on_key(target.settings, key_hash, shown)
    if as_json:
        echo_json({"data": data})
    else:
        click.echo(describe(data))


def _set_disabled(settings: Settings, reference: str, *, disabled: bool) -> None:
    async def change(ring: KeyRing, key: ApiKey) -> tuple[ApiKey, bool]:
        if key.disabled == disabled:
            return key, False
        return await ring.update(key, disabled=disabled), True

    key, changed = _on_key(settings, reference, change)
    word = "disabled" if disabled else "enabled"
    click.echo(
        f"API key {key.name!r} ({key.hash[:12]}) is {word if changed else 'already ' + word}."
    )


@keys.command("disable")
@click.argument("key_hash", metavar="HASH", callback=hash_prefix)
@database_options
def disable(key_hash: str, config: str | None, database: str | None, data_dir: str | None) -> None:
    """Disable an API key: a running server refuses it within seconds."""
    _set_disabled(load_target(config, database, data_dir).settings, key_hash, disabled=True)


@keys.command("enable")
@click.argument("key_hash", metavar="HASH", callback=hash_prefix)
@database_options
def enable(key_hash: str, config: str | None, database: str | None, data_dir: str | None) -> None:
    """Enable a disabled API key again."""
    _set_disabled(load_target(config, database, data_dir).settings, key_hash, disabled=False)


@keys.command("delete")
@click.argument("key_hash", metavar="HASH", callback=hash_prefix)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@database_options
def delete(
    key_hash: str, yes: bool, config: str | None, database: str | None, data_dir: str | None
) -> None:
    """Delete an API key for good (its past generations stay)."""
    target = load_target(config, database, data_dir)

    async def change(ring: KeyRing, key: ApiKey) -> ApiKey:
        if not yes:
            click.confirm(f"Delete API key {key.name!r} ({key.hash[:12]})?", abort=True)
        await ring.delete(key)
        return key

    key = _on_key(target.settings, key_hash, change)
    click.echo(f"API key {key.name!r} ({key.hash[:12]}) was deleted.")


async def _rotate(engine: AsyncEngine) -> str:
    keys = KeyRing(KeyStore(engine))
    await keys.load(spend={}, starts=period_starts(datetime.now(UTC)))
    return await keys.rotate_management()


@keys.command("rotate-management")
@database_options
def rotate_management(config: str | None, database: str | None, data_dir: str | None) -> None:
    """Replace the stored management key with a new one.

    The new key is written to <data dir>/management-key (mode 0600); the old one stops
    working, also on a server that is running on the same database.
    """
    settings = load_target(config, database, data_dir).settings
    token = run(settings, _rotate)
    path = write_key_file(settings.data_dir, token)
    click.echo(f"A new management key was written to {path} (readable only by you).")
    click.echo("The previous management key no longer works.")
    if settings.management_key:
        click.echo(
            "CROSSROADS_MANAGEMENT_KEY is set: that key keeps working until it is removed "
            "from the server's environment."
        )
