"""Server settings: command-line flags over environment over the config file's `server:`
over defaults."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import msgspec

from crossroads.errors import ConfigError

_ENV_PREFIX = "CROSSROADS_"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


_POSITIVE = {
    "upstream_max_body_bytes",
    "upstream_max_event_bytes",
    "upstream_stream_timeout_seconds",
    "upstream_idle_timeout_seconds",
    "circuit_cooldown_seconds",
    "circuit_max_cooldown_seconds",
    "stats_flush_interval_seconds",
    "free_requests_per_minute",
    "free_requests_per_day",
    "free_requests_per_day_with_credits",
    "keys_refresh_seconds",
    "shutdown_grace_seconds",
}


def _boolean_text(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text not in _TRUE | _FALSE:
        raise ConfigError(f"setting {name}: cannot use {value!r}")
    return text in _TRUE


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
    # On SIGTERM: stop listening, let the requests and streams in flight finish for up to
    # this long (the rest are cancelled and recorded so), then write the records and exit.
    shutdown_grace_seconds: float = 30.0
    # What a provider may send: a whole answer, one stream event (bytes); how long a stream
    # may run, and stay silent between events (seconds; a provider's `timeout_seconds` lowers
    # the silence it is allowed). Past any of them the attempt fails as the provider's fault.
    upstream_max_body_bytes: int = 16 * 1024 * 1024
    upstream_max_event_bytes: int = 1024 * 1024
    upstream_stream_timeout_seconds: float = 1800.0
    upstream_idle_timeout_seconds: float = 300.0
    # Live statistics, circuits and observability (see ARCHITECTURE.md, "Live statistics").
    telemetry: bool = True  # live statistics and metrics; off only to measure their cost
    circuit_failures: int = 3  # consecutive failures that open a circuit; 0: no circuits
    circuit_cooldown_seconds: float = 5.0  # the first cooldown; it doubles while failures go on
    circuit_max_cooldown_seconds: float = 60.0
    stats_flush_interval_seconds: float = 10.0  # how often buckets are folded into the database
    access_log: bool = False  # one JSON line per request on the "crossroads.access" logger
    redis: str | None = None  # redis://host:port/db: replicas share statistics and circuits
    instance_id: str = ""  # this replica's name in shared statistics; <hostname>:<port> if empty
    # Accounts (see README, "Credits and limits"): the balance is in force from the first
    # `crossroads credits add`, or from the start with credits_enforce (config: `credits:
    # {enforce: true}`); free variants (`:free`) are limited as OpenRouter limits them.
    credits_enforce: bool = False
    free_requests_per_minute: int = 20  # per key
    free_requests_per_day: int = 50  # per account
    free_requests_per_day_with_credits: int = 1000  # once 10 USD of credits were ever added
    keys_refresh_seconds: float = 1.0  # how often keys and credits are read again

    @property
    def instance(self) -> str:
        return self.instance_id or f"{socket.gethostname()}:{self.port}"

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
        for name in _BOOLEAN & values.keys():  # "yes", "on", ... as well as "true" and "1"
            if isinstance(values[name], str):
                values[name] = _boolean_text(name, values[name])
        try:  # the types are the fields' own; text from the environment is converted
            settings = msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            name = str(exc).rpartition("$.")[2].rstrip("`")
            raise ConfigError(f"setting {name}: cannot use {values.get(name)!r}") from None
        for name in _POSITIVE & values.keys():
            if not 0 < getattr(settings, name) < float("inf"):
                raise ConfigError(
                    f"setting {name}: must be a positive number, not {values[name]!r}"
                )
        if settings.circuit_failures < 0:
            raise ConfigError("setting circuit_failures: must be 0 (no circuits) or more")
        if settings.circuit_max_cooldown_seconds < settings.circuit_cooldown_seconds:
            raise ConfigError(
                "setting circuit_max_cooldown_seconds: must be at least circuit_cooldown_seconds"
            )
        return settings


_BOOLEAN = frozenset(f.name for f in fields(Settings) if f.type == "bool")


def credits_enforced(settings: Settings, config: Mapping[str, Any]) -> bool:
    """Whether the balance is in force before any credits were added: the setting, or the
    config file's `credits: {enforce: true}`."""
    section = config.get("credits") or {}
    if not isinstance(section, Mapping) or set(section) - {"enforce"}:
        raise ConfigError("config: 'credits' takes one key, 'enforce' (true or false)")
    enforce = section.get("enforce", False)
    if not isinstance(enforce, bool):
        raise ConfigError("config: 'credits.enforce' must be true or false")
    return enforce or settings.credits_enforce
