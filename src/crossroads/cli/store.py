"""What the operator commands (`crossroads keys`, `crossroads credits`) share: the server's
settings and database, opened the way the server opens them, and plain-text output.

The commands work on the same database as a running server: a change is written at once,
and the server reads it again on its own (see `KeyRing.refresh`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import click
import msgspec
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.money import PICO
from crossroads.catalog import read_config
from crossroads.errors import ConfigError
from crossroads.settings import Settings
from crossroads.storage import make_engine, migrate

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command works: the server's settings, and its whole config file ({} without
    one) for the sections that are not settings (`credits`)."""

    settings: Settings
    config: dict[str, Any]


def database_options(command: F) -> F:
    """`--config`, `--database` and `--data-dir`, as `crossroads serve` takes them."""
    options = (
        click.option(
            "--config",
            type=click.Path(exists=True, dir_okay=False),
            help="YAML file whose `server:` section names the database.",
        ),
        click.option(
            "--database", help="The server's database URL (default: SQLite in the data folder)."
        ),
        click.option("--data-dir", help="The server's data folder (default ./data)."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def load_target(config: str | None, database: str | None, data_dir: str | None) -> Target:
    """The settings a server started with these flags (and its environment) would use."""
    try:
        parsed = read_config(config)
        settings = Settings.load(
            {"config": config, "database": database, "data_dir": data_dir},
            file_settings=parsed.get("server"),
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return Target(settings, parsed)


def run(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """`work` on the server's database, brought to the newest schema first; the engine is
    disposed of afterwards. A database that cannot be reached or used is a clean error."""

    async def _main() -> T:
        engine = make_engine(settings.database_url)
        try:
            await migrate(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_main())
    except (SQLAlchemyError, OSError) as exc:
        raise click.ClickException(f"database {_safe_url(settings.database_url)}: {exc}") from None


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"


def usd(pico: int) -> str:
    """An amount of pico-USD as exact USD text: 300000000000 → `0.3`, -5 * 10**12 → `-5`."""
    text = format((Decimal(pico) / PICO).normalize(), "f")
    return "0" if text in ("-0", "0") else text


def dollars(value: float | None) -> str:
    """A USD float for display (`-` when there is none); at most 12 decimals."""
    if value is None:
        return "-"
    return usd(round(Decimal(repr(value)) * PICO))


def echo_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, with a header line."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)
