"""Database engines: SQLite (WAL) as the embedded default, PostgreSQL for many replicas."""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

_MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """`sqlite:///x.db` / `postgresql://...` as the async drivers spell them."""
    if url.startswith("sqlite:"):
        return url.replace("sqlite:", "sqlite+aiosqlite:", 1)
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    json_codec = {"json_serializer": _json, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **json_codec)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **json_codec)


def _upgrade(connection: sa.Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


MIGRATION_LOCK = 0x63726F7373  # the advisory lock replicas take to migrate one at a time


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision. On PostgreSQL under an advisory
    lock held to the transaction's end: replicas that start together migrate one after
    the other (the later ones find nothing to do). SQLite's first write locks the file."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        await connection.run_sync(_upgrade)
