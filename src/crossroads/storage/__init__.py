"""Persistence: SQLAlchemy Core on SQLite (default) or PostgreSQL, Alembic migrations."""

from crossroads.storage.engine import make_engine, migrate
from crossroads.storage.repos import BucketStore, GenerationStore, KeyStore
from crossroads.storage.rollups import (
    AppUsage,
    ModelUsage,
    Popularity,
    Rollups,
    RollupStore,
    Usage,
)

__all__ = [
    "AppUsage",
    "BucketStore",
    "GenerationStore",
    "KeyStore",
    "ModelUsage",
    "Popularity",
    "RollupStore",
    "Rollups",
    "Usage",
    "make_engine",
    "migrate",
]
