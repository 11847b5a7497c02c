"""Database engines: SQLite (WAL) as the embedded default, PostgreSQL for many replicas."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger("crossroads.storage")
_MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision (tests/test_storage.py checks it is Alembic's head): a
# database already there is recognised with one query, without loading Alembic (about
# 11 MB a process would keep for nothing).
HEAD_REVISION = "0005"
_KNOWN = {p.name[:4] for p in (_MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")}


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
    from alembic import command
    from alembic.config import Config

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
        found = await _revision(connection)
        if found == HEAD_REVISION:
            return
        if found is not None and found not in _KNOWN:  # a newer version migrated it already
            log.warning(
                "the database is at schema revision %s, newer than this version's %s: "
                "starting without migrating (a rolling update, or a downgrade)",
                found,
                HEAD_REVISION,
            )
            return
        await connection.run_sync(_upgrade)


async def _revision(connection: AsyncConnection) -> str | None:
    """The schema's revision as Alembic recorded it; None for a new database."""
    exists = await connection.run_sync(lambda sync: sa.inspect(sync).has_table("alembic_version"))
    if not exists:
        return None
    found = await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
    return found.scalar()
