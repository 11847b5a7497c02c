"""Rows made safe to insert, and which insert errors are the row's fault.

A generation record carries untrusted values (a provider's token counts, a client's
headers). Before it is inserted, each value is fitted to its column as the table
defines it: text cut to the column's length (and without NUL, which PostgreSQL text
cannot hold), integers clamped to the column's range (a 32-bit `Integer` on every
database, as PostgreSQL stores it), non-finite floats dropped where the column allows
null. The limits are read from the `sa.Table`, never copied by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

_INT_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))  # specific first


def _int_range(kind: sa.types.TypeEngine[Any]) -> tuple[int, int]:
    for cls, bits in _INT_BITS:
        if isinstance(kind, cls):
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    raise TypeError(kind)


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: str  # text, int, float, bool, time, other
    nullable: bool
    length: int | None = None
    low: int = 0
    high: int = 0

    def fit(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "text":
            text = value if isinstance(value, str) else _as_text(value)
            text = text.replace("\x00", "")
            return text[: self.length] if self.length is not None else text
        if self.kind == "int":
            number = _as_int(value)
            if number is None:
                return None
            return min(max(number, self.low), self.high)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return value  # the database decides; a refusal is quarantined
            real = float(value)
            return None if self.nullable and not math.isfinite(real) else real
        if self.kind == "bool":
            return bool(value)
        if self.kind == "time" and isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        if self.kind == "time" and isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _as_text(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _column(column: sa.Column[Any]) -> _Column:
    kind = column.type
    nullable = bool(column.nullable)
    name = str(column.name)  # a plain str (not `quoted_name`): rows are dumped as JSON
    if isinstance(kind, sa.String):
        return _Column(name, "text", nullable, length=kind.length)
    if isinstance(kind, sa.Integer):
        low, high = _int_range(kind)
        return _Column(name, "int", nullable, low=low, high=high)
    if isinstance(kind, sa.Float):
        return _Column(name, "float", nullable)
    if isinstance(kind, sa.Boolean):
        return _Column(name, "bool", nullable)
    if isinstance(kind, sa.DateTime):
        return _Column(name, "time", nullable)
    return _Column(name, "other", nullable)


class RowFitter:
    """Fits rows to one table's columns. A value that already fits is left as it is, and
    checked inline: this runs for every request."""

    def __init__(self, table: sa.Table) -> None:
        columns = [_column(c) for c in table.columns]
        self._texts = tuple((c.name, c.length, c) for c in columns if c.kind == "text")
        self._ints = tuple((c.name, c.low, c.high, c) for c in columns if c.kind == "int")
        self._rest = tuple((c.name, c) for c in columns if c.kind in ("float", "bool", "time"))

    def fit(self, row: Mapping[str, Any]) -> dict[str, Any]:
        fitted = dict(row)
        for name, length, column in self._texts:
            text = fitted.get(name)
            if text is not None and (
                type(text) is not str
                or (length is not None and len(text) > length)
                or "\x00" in text
            ):
                fitted[name] = column.fit(text)
        for name, low, high, column in self._ints:
            number = fitted.get(name)
            if number is not None and (type(number) is not int or not low <= number <= high):
                fitted[name] = column.fit(number)
        for name, column in self._rest:
            value = fitted.get(name)
            if value is None:
                continue
            kind = type(value)
            if column.kind == "float" and kind is float and value - value == 0.0:  # finite
                continue
            if column.kind == "bool" and kind is bool:
                continue
            if column.kind == "time" and kind is datetime and value.tzinfo is not None:
                continue
            fitted[name] = column.fit(value)
        return fitted


_CONTENT_STATES = ("22", "23")  # PostgreSQL: data exception, integrity constraint violation


def refused_for_content(error: BaseException) -> bool:
    """Whether the database (or its driver) refused the rows for what they hold, so the
    same rows would fail again, rather than failed to be reached or to answer.

    Walks the exception chain: Python value errors raised while binding parameters
    (SQLite's OverflowError, asyncpg's DataError, a TypeError), SQLAlchemy's
    `DataError`/`IntegrityError`, and PostgreSQL SQLSTATE classes 22 and 23."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.exc.DataError | sa.exc.IntegrityError):
            return True
        if isinstance(current, OverflowError | ValueError | TypeError | UnicodeError):
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_CONTENT_STATES):
            return True
        if type(current).__name__ in ("IntegrityError", "DataError"):  # sqlite3, DB-API
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False
