"""API keys: created once, stored as a SHA-256 hash, checked against an in-memory ring.

The full key is shown exactly once, when it is created; only its hash and a masked
label are kept. Authentication is a dict lookup and never touches the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec

from crossroads.accounting.money import PICO, to_pico, to_usd
from crossroads.schema.guardrails import Guardrails, stored_guardrails

_NOT_STORED = ("usage", "last_used_at")
KEY_PREFIX = "sk-cr-v1-"
WORKSPACE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "crossroads:default-workspace"))  # the one
MAX_LIMIT = 9_000_000  # USD: the largest key `limit` the API and the CLI take
_MAX_SPENT = 2**62  # pico-USD: a spend sum is clamped to this (an absurd record's)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def mask_key(key: str) -> str:
    return f"{key[:12]}...{key[-4:]}"


def _aware(value: datetime) -> datetime:
    """A stored time read back without its zone (SQLite) is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _iso(value: datetime | None) -> str | None:
    return _aware(value).isoformat() if value is not None else None


def period_starts(now: datetime) -> dict[str, datetime]:
    """When the current UTC day, week (from Monday) and month began."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "daily": day,
        "weekly": day - timedelta(days=day.weekday()),
        "monthly": day.replace(day=1),
    }


def spent_pico(usd: float) -> int:
    """A sum of the records' costs (USD, as the database summed them) in pico-USD: rounded
    to the pico, clamped to +-2**62; a sum that is not a finite number counts as 0."""
    if not math.isfinite(usd):
        return 0
    bound = _MAX_SPENT / PICO
    return max(-_MAX_SPENT, min(to_pico(max(-bound, min(usd, bound))), _MAX_SPENT))


@dataclass(slots=True)
class SpendAtStart:
    """Spend in pico-USD as the records said at start: all time and for the UTC day, week
    (from Monday) and month of `starts`. Where the limits' counters start (`limits.policy`).

    The database sums the records' float costs (`GenerationStore.spend_by_key`, fast at
    start); each sum is rounded to the pico here. Every cost is a whole number of pico-USD,
    so a sum is off by float rounding only (far below a pico for any real spend), and only
    where a counter starts: the counters themselves add exact pico-USD."""

    total: int = 0
    periods: dict[str, int] = field(default_factory=lambda: {"daily": 0, "weekly": 0, "monthly": 0})
    starts: dict[str, datetime] = field(default_factory=lambda: period_starts(datetime.now(UTC)))


@dataclass(slots=True)
class ApiKey:
    hash: str
    name: str
    label: str
    created_at: datetime
    is_management: bool = False
    disabled: bool = False
    limit: float | None = None
    limit_reset: str | None = None
    include_byok_in_limit: bool = False
    creator_user_id: str | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    requests_per_minute: int | None = None  # optional limits set by an operator
    tokens_per_minute: int | None = None
    guardrails: Guardrails | None = None
    usage: SpendAtStart = field(default_factory=SpendAtStart)
    last_used_at: datetime | None = None  # this process's view; not persisted

    def row(self) -> dict[str, Any]:
        values = {f: getattr(self, f) for f in self.__slots__ if f not in _NOT_STORED}
        if self.guardrails is not None:
            values["guardrails"] = msgspec.to_builtins(self.guardrails)
        return values

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and _aware(self.expires_at) <= now

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ApiKey:
        """A stored key. Text columns are read as text even if an older version stored another
        type there, so that one bad row cannot break every listing of the keys."""
        values = dict(row)
        values["name"] = str(values["name"])
        if values.get("creator_user_id") is not None:
            values["creator_user_id"] = str(values["creator_user_id"])
        if values.get("limit_reset") not in (None, "daily", "weekly", "monthly"):
            values["limit_reset"] = None
        values["guardrails"] = stored_guardrails(values.get("guardrails"))
        return cls(**values)

    def public(self, spend: Mapping[str, float] | None = None) -> dict[str, Any]:
        """OpenRouter's key object (`/keys`), with this server's own fields (per-minute
        limits, guardrails). `spend`: USD by `total`, `daily`, `weekly`, `monthly` as the
        limits' counters hold it (every replica's); else this process's start-up view."""
        if spend is None:
            periods = {p: to_usd(v) for p, v in self.usage.periods.items()}
            spend = {"total": to_usd(self.usage.total), **periods}
        spent = spend[self.limit_reset or "total"]
        return {
            "hash": self.hash,
            "name": self.name,
            "label": self.label,
            "disabled": self.disabled,
            "limit": self.limit,
            "limit_remaining": None if self.limit is None else max(0.0, self.limit - spent),
            "limit_reset": self.limit_reset,
            "include_byok_in_limit": self.include_byok_in_limit,
            "usage": spend["total"],
            "usage_daily": spend["daily"],
            "usage_weekly": spend["weekly"],
            "usage_monthly": spend["monthly"],
            "byok_usage": 0.0,
            "byok_usage_daily": 0.0,
            "byok_usage_weekly": 0.0,
            "byok_usage_monthly": 0.0,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "expires_at": _iso(self.expires_at),
            "creator_user_id": self.creator_user_id,
            "workspace_id": WORKSPACE_ID,
            "external_user": None,
            "last_used_at": _iso(self.last_used_at),
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "guardrails": self.guardrails.public() if self.guardrails else None,
        }


class KeyRows(Protocol):
    """Where keys persist, one row per key (`storage.KeyStore`)."""

    async def insert(self, row: dict[str, Any]) -> None: ...

    async def update(self, key_hash: str, values: dict[str, Any]) -> None: ...

    async def delete(self, key_hash: str) -> None: ...

    async def all(self) -> list[dict[str, Any]]: ...

    async def signature(self) -> tuple[Any, ...]: ...


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a shared refresh's failure as seen (its waiters may all have gone)."""
    if not future.cancelled():
        future.exception()


class KeyRing:
    """Every key, by hash, in memory; writes go through to the store."""

    def __init__(self, store: KeyRows) -> None:
        self._store = store
        self._keys: dict[str, ApiKey] = {}
        self._ephemeral: set[str] = set()  # hashes of keys that are not stored
        self._next: asyncio.Future[None] | None = None  # the next refresh, for unknown tokens
        self._refreshing: asyncio.Task[None] | None = None  # runs them, one at a time
        self._signature: tuple[Any, ...] | None = None  # the store's, as of the last read
        self._writes = 0  # writes made through this ring: a read they overlap is dropped
        self._reads = 0  # reads of the store begun, numbered
        self._swapped = 0  # the number of the read the ring holds

    async def load(
        self, *, spend: Mapping[str, Mapping[str, float]], starts: Mapping[str, datetime]
    ) -> None:
        """Every stored key, with its spend so far.

        `spend` is the records' sum per key hash in USD since each of `starts` (see
        `period_starts`) and all time (`total`), as `GenerationStore.spend_by_key` reads it.
        """
        await self._read()
        for key_hash, spent in spend.items():
            if key_hash in self._keys:
                usage = self._keys[key_hash].usage
                usage.total = spent_pico(spent["total"])
                usage.periods = {p: spent_pico(spent[p]) for p in usage.periods}
                usage.starts = dict(starts)

    async def _read(self) -> None:
        """Every stored key as stored now; a key known already keeps its spend so far. The
        ring is swapped whole, never emptied meanwhile. A read that a write of this process
        overlapped is dropped (that write is in the ring already; the next refresh reads
        again), and so is one that a later read overtook."""
        writes = self._writes
        self._reads += 1
        number = self._reads
        signature = await self._store.signature()
        rows = await self._store.all()
        if writes != self._writes or number < self._swapped:
            self._signature = None
            return
        keys: dict[str, ApiKey] = {}
        for row in rows:
            key = ApiKey.from_row(row)
            if (old := self._keys.get(key.hash)) is not None:
                key.usage, key.last_used_at = old.usage, old.last_used_at
            keys[key.hash] = key
        for key_hash in self._ephemeral:
            if key_hash in self._keys and key_hash not in keys:
                keys[key_hash] = self._keys[key_hash]
        self._keys, self._signature, self._swapped = keys, signature, number

    async def refresh(self) -> bool:
        """Read the stored keys again if they changed since the last read (created, changed
        or deleted by another replica or by `crossroads keys`); whether they had."""
        if await self._store.signature() == self._signature:
            return False
        await self._read()
        return True

    def authenticate(self, token: str) -> ApiKey | None:
        key = self._keys.get(hash_key(token))
        now = datetime.now(UTC)
        if key is None or key.disabled or key.expired(now):
            return None
        key.last_used_at = now
        return key

    def get(self, key_hash: str) -> ApiKey | None:
        return self._keys.get(key_hash)

    def list(self) -> list[ApiKey]:
        """The API keys; management keys are not listed."""
        return [k for k in self._keys.values() if not k.is_management]

    def add_ephemeral(self, token: str, name: str, *, is_management: bool) -> ApiKey:
        """A key known for this process only (the management key from the environment)."""
        key = ApiKey(
            hash_key(token), name, mask_key(token), datetime.now(UTC), is_management=is_management
        )
        self._keys[key.hash] = key
        self._ephemeral.add(key.hash)
        return key

    def has_stored_management_key(self) -> bool:
        return any(k.is_management and h not in self._ephemeral for h, k in self._keys.items())

    def is_current(self, token: str) -> bool:
        """Whether this process's view of `token` cannot be stale: it is a known API key or a
        key from the environment. Management keys are stored, and may be rotated by another
        process (`crossroads keys rotate-management`): see `reload`."""
        key_hash = hash_key(token)
        key = self._keys.get(key_hash)
        return key is not None and (not key.is_management or key_hash in self._ephemeral)

    async def reload(self, token: str) -> None:
        """Bring this process's view of `token` up to date before it is judged: a stored
        management key is checked against the store every time (a rotation made by another
        process takes effect at once: one cheap query, a full read only when keys changed).
        An unknown token waits for a refresh that begins after it arrived, so that a key
        created by another replica or worker works at once. One such refresh runs at a
        time and every token that arrives meanwhile shares the next one: a flood of junk
        tokens costs one cheap query at a time, never one per token in parallel."""
        if hash_key(token) in self._keys:
            await self.refresh()
            return
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieved)
        next_refresh = self._next
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh_for_unknown_tokens())
        await asyncio.shield(next_refresh)

    async def _refresh_for_unknown_tokens(self) -> None:
        try:
            while (waiting := self._next) is not None:
                self._next = None  # who arrives from now on waits for the next round
                try:
                    await self.refresh()
                    if self._signature is None:  # the read was dropped (see _read): again
                        await self.refresh()
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    waiting.set_exception(exc)
                else:
                    waiting.set_result(None)
        finally:
            self._refreshing = None

    async def rotate_management(self) -> str:
        """A new stored management key, returned once; every other stored management key is
        deleted. Keys from the environment are not stored and stay as they are."""
        token, new = await self.create("management", is_management=True)
        for key_hash, key in list(self._keys.items()):
            if key.is_management and key_hash not in self._ephemeral and key_hash != new.hash:
                await self.delete(key)
        return token

    async def create(
        self, name: str, *, is_management: bool = False, **fields: Any
    ) -> tuple[str, ApiKey]:
        token = KEY_PREFIX + secrets.token_hex(32)
        key = ApiKey(
            hash_key(token),
            name,
            mask_key(token),
            datetime.now(UTC),
            is_management=is_management,
            **fields,
        )
        self._writes += 1
        await self._store.insert(key.row())
        self._writes += 1  # a read that began while the row was written missed it
        self._keys[key.hash] = key
        return token, key

    async def update(self, key: ApiKey, **fields: Any) -> ApiKey:
        fields["updated_at"] = datetime.now(UTC)
        stored = {k: msgspec.to_builtins(v) if k == "guardrails" else v for k, v in fields.items()}
        self._writes += 1
        await self._store.update(key.hash, stored)
        self._writes += 1
        current = self._keys.get(key.hash)  # a refresh may have swapped in another object
        for target in {id(k): k for k in (key, current) if k is not None}.values():
            for name, value in fields.items():
                setattr(target, name, value)
        return current or key

    async def delete(self, key: ApiKey) -> None:
        self._writes += 1
        await self._store.delete(key.hash)
        self._writes += 1
        self._keys.pop(key.hash, None)
