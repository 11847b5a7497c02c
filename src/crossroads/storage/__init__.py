"""Persistence: SQLAlchemy Core on SQLite (default) or PostgreSQL, Alembic migrations."""

from crossroads.storage.engine import make_engine, migrate
from crossroads.storage.repos import GenerationStore, KeyStore

__all__ = ["GenerationStore", "KeyStore", "make_engine", "migrate"]
