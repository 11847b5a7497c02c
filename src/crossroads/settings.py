"""Server settings: command-line flags over environment over the config file's `server:`
over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from crossroads.errors import ConfigError

_ENV_PREFIX = "CROSSROADS_"


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database: str = ""  # sqlite:///<data_dir>/crossroads.db when empty
    data_dir: str = "data"
    config: str | None = None
    management_key: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    stream_keepalive_seconds: float = 1.0
    routing_seed: int | None = None  # fixes the price-weighted draw, for tests and reproductions
    recorder_interval_seconds: float = 0.25
    discovery_interval_seconds: float = 30.0  # how often local servers are probed again
    log_level: str = "warning"
    # What a provider may send: a whole answer, one stream event (bytes); how long a stream
    # may run, and stay silent between events (seconds; a provider's `timeout_seconds` lowers
    # the silence it is allowed). Past any of them the attempt fails as the provider's fault.
    upstream_max_body_bytes: int = 16 * 1024 * 1024
    upstream_max_event_bytes: int = 1024 * 1024
    upstream_stream_timeout_seconds: float = 1800.0
    upstream_idle_timeout_seconds: float = 300.0

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{Path(self.data_dir) / 'crossroads.db'}"

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        file_settings: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        known = {f.name: f for f in fields(cls)}
        unknown = set(file_settings or {}) - set(known)
        if unknown:
            raise ConfigError(f"unknown keys under 'server': {sorted(unknown)}")
        values.update(file_settings or {})
        for name in known:
            if (raw := env.get(_ENV_PREFIX + name.upper())) is not None:
                values[name] = raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        settings = cls()
        for name, value in values.items():
            default = getattr(settings, name)
            if default is not None:
                kind = type(default)
            else:  # the optional settings: routing_seed is a number, the rest are text
                kind = int if name == "routing_seed" else str
            try:
                setattr(settings, name, kind(value) if not isinstance(value, kind) else value)
            except (TypeError, ValueError):
                raise ConfigError(f"setting {name}: cannot use {value!r}") from None
            if name.startswith("upstream_") and not 0 < getattr(settings, name) < float("inf"):
                raise ConfigError(f"setting {name}: must be a positive number, not {value!r}")
        return settings
