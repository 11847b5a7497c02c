"""Persistence: SQLAlchemy Core on SQLite (default) or PostgreSQL, Alembic migrations."""

from crossroads.storage.activity import ActivityStore
from crossroads.storage.apps import normalize_app_url
from crossroads.storage.engine import make_engine, migrate
from crossroads.storage.ledger import LedgerStore
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
    "ActivityStore",
    "AppUsage",
    "BucketStore",
    "GenerationStore",
    "KeyStore",
    "LedgerStore",
    "ModelUsage",
    "Popularity",
    "RollupStore",
    "Rollups",
    "Usage",
    "make_engine",
    "migrate",
    "normalize_app_url",
]
