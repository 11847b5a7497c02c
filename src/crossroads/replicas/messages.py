"""What replicas tell each other through Redis, as bytes: key names, the pub/sub message, and
the fields of the hashes late joiners read. Pure functions, no I/O.

The pub/sub message (`encode` / `decode`) is one orjson object::

    {"v": 1, "from": "<instance>",
     "rows": [[endpoint_id, grain, start, data], ...],
     "circuits": [[endpoint_id, state, until, cooldown], ...]}

`data` is a bucket's JSON (`Bucket.to_json()`), carried as a latin-1 string: every byte one
character, so any bytes survive the round trip. Rows always belong to the sender.

Hashes: `rows:<instance>` holds one replica's buckets, field `<grain>:<start>:<endpoint_id>`
(the endpoint id last: it may hold colons), value the bucket's JSON; `circuits` holds the
latest shared transition per endpoint, field the endpoint id, value `[state, until,
cooldown, instance]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from crossroads.telemetry.buckets import GRAIN_BY_NAME, BucketRow
from crossroads.telemetry.circuit import CircuitChange, CircuitState

FORMAT = 1  # bumped whenever the message shape changes; other formats are ignored


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis key names under one prefix (replicas that share a prefix share figures)."""

    prefix: str = "crossroads"

    @property
    def live(self) -> str:
        """Sorted set: instance -> the epoch seconds of its last heartbeat."""
        return f"{self.prefix}:live"

    @property
    def channel(self) -> str:
        """Pub/sub channel of bucket rows and circuit changes."""
        return f"{self.prefix}:events"

    @property
    def circuits(self) -> str:
        """Hash: endpoint id -> the latest shared circuit transition."""
        return f"{self.prefix}:circuits"

    def rows(self, instance: str) -> str:
        """Hash of one replica's buckets still in their rings."""
        return f"{self.prefix}:rows:{instance}"


@dataclass(frozen=True, slots=True)
class Message:
    """One replica's news: buckets changed and circuit transitions."""

    sender: str
    rows: list[BucketRow] = field(default_factory=list)
    circuits: list[CircuitChange] = field(default_factory=list)


def encode(message: Message) -> bytes:
    return orjson.dumps(
        {
            "v": FORMAT,
            "from": message.sender,
            "rows": [
                [r.endpoint_id, r.grain, r.start, r.data.decode("latin-1")] for r in message.rows
            ],
            "circuits": [
                [c.endpoint_id, c.state.value, c.until, c.cooldown] for c in message.circuits
            ],
        }
    )


def decode(data: bytes | str) -> Message:
    """The message `encode` wrote; ValueError for anything else (another format too)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"message: invalid JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != FORMAT:
        raise ValueError("message: not a message of this format")
    sender = _text(obj.get("from"), "from")
    rows = [_row(sender, item) for item in _list(obj.get("rows", []), "rows")]
    circuits = [_circuit(item) for item in _list(obj.get("circuits", []), "circuits")]
    return Message(sender, rows, circuits)


def row_field(row: BucketRow) -> bytes:
    """The field of a bucket in its replica's `rows:<instance>` hash."""
    return f"{row.grain}:{row.start}:{row.endpoint_id}".encode()


def field_key(row: BucketRow) -> tuple[str, str, int]:
    """(endpoint id, grain, start): what identifies a bucket within one replica."""
    return row.endpoint_id, row.grain, row.start


def rows_from_hash(instance: str, fields: dict[bytes, bytes]) -> tuple[list[BucketRow], int]:
    """A replica's hash as bucket rows, and how many fields were unreadable (skipped)."""
    rows: list[BucketRow] = []
    skipped = 0
    for name, data in fields.items():
        grain, _, rest = name.decode("utf-8", "replace").partition(":")
        start, _, endpoint_id = rest.partition(":")
        if grain not in GRAIN_BY_NAME or not start.isdigit() or not endpoint_id:
            skipped += 1
            continue
        rows.append(BucketRow(instance, endpoint_id, grain, int(start), bytes(data)))
    return rows, skipped


def circuit_value(change: CircuitChange, instance: str) -> bytes:
    """A transition as kept in the `circuits` hash (field: its endpoint id)."""
    return orjson.dumps([change.state.value, change.until, change.cooldown, instance])


def circuits_from_hash(fields: dict[bytes, bytes]) -> tuple[list[CircuitChange], int]:
    """The `circuits` hash as transitions, and how many fields were unreadable (skipped)."""
    changes: list[CircuitChange] = []
    skipped = 0
    for name, value in fields.items():
        try:
            state, until, cooldown, _instance = _list(orjson.loads(value), "circuit")
            endpoint_id = name.decode()
            changes.append(_circuit([endpoint_id, state, until, cooldown]))
        except (ValueError, UnicodeDecodeError):
            skipped += 1
    return changes, skipped


def chunks(rows: Iterable[BucketRow], size: int) -> Iterable[list[BucketRow]]:
    """Rows in lists of at most `size` (one message each: none grows unbounded)."""
    batch: list[BucketRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _row(sender: str, item: Any) -> BucketRow:
    if not (isinstance(item, list) and len(item) == 4):
        raise ValueError("message: a row is not [endpoint, grain, start, data]")
    endpoint_id, grain, start, data = item
    if grain not in GRAIN_BY_NAME:
        raise ValueError(f"message: unknown grain {grain!r}")
    try:
        raw = _text(data, "data").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("message: bucket data is not latin-1") from None
    return BucketRow(sender, _text(endpoint_id, "endpoint"), grain, _int(start), raw)


def _circuit(item: Any) -> CircuitChange:
    if not (isinstance(item, list) and len(item) == 4):
        raise ValueError("message: a circuit is not [endpoint, state, until, cooldown]")
    endpoint_id, state, until, cooldown = item
    try:
        parsed = CircuitState(state)
    except ValueError:
        raise ValueError(f"message: unknown circuit state {state!r}") from None
    return CircuitChange(_text(endpoint_id, "endpoint"), parsed, _number(until), _number(cooldown))


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"message: {what} is not a list")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"message: {what} is not a non-empty string")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"message: not a start time: {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"message: not a number: {value!r}")
    return float(value)
