"""The ledger: the account's credits and the charges against them, in pico-USD.

Credits are added by an operator (`LedgerStore.add_credit`, `crossroads credits add`).
A charge is added by `GenerationStore.insert_many`, in the transaction that inserts its
generation, for each new record with `balance_charged` and a cost: one per generation
(`generation_id` is unique), so a replayed record is not charged twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.money import PICO, to_pico
from crossroads.schema.accounts import LedgerEntry, LedgerKind, LedgerTotals
from crossroads.storage.fit import RowFitter
from crossroads.storage.tables import ledger, ledger_totals

_MAX_AMOUNT = 2**63 - 1  # BigInteger
# Sums are taken in two parts (the amount's high and low 32 bits), each far from 64-bit
# overflow however many rows there are: SQLite's sum() of integers fails past 2**63 - 1.
_SPLIT = 2**32


def charge_amount(total_cost: Any) -> int:
    """The pico-USD a generation of cost `total_cost` (USD) is charged: 0 for no cost,
    a negative one or one that is not a finite number; at most 2**63 - 1 (an absurd cost
    must not keep its record from being stored)."""
    if isinstance(total_cost, bool) or not isinstance(total_cost, int | float):
        return 0
    if not math.isfinite(total_cost) or total_cost <= 0:
        return 0
    return min(to_pico(min(total_cost, _MAX_AMOUNT // PICO + 1)), _MAX_AMOUNT)


def charge_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The ledger charges of inserted generation rows (with `id`, `created_at`,
    `api_key_hash`, `total_cost` and `balance_charged`): one per row charged a cost."""
    charges = []
    for row in rows:
        amount = charge_amount(row.total_cost) if row.balance_charged else 0
        if amount > 0:
            charges.append(
                {
                    "created_at": _utc(row.created_at),
                    "kind": "charge",
                    "amount": amount,
                    "generation_id": row.id,
                    "api_key_hash": row.api_key_hash,
                    "note": None,
                }
            )
    charges.sort(key=lambda c: c["generation_id"])  # one lock order for every writer
    return charges


def charge_insert(dialect: str) -> sa.Insert:
    """INSERT of charges that skips a generation charged already."""
    insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(ledger)
    statement: sa.Insert = insert.on_conflict_do_nothing(index_elements=[ledger.c.generation_id])
    return statement


def count_in_totals(kind: str, amounts: Iterable[int]) -> sa.Update:
    """The UPDATE that adds `amounts` (pico-USD, new rows of `kind`) to the ledger's totals;
    to run in the transaction that inserted them."""
    values = list(amounts)
    t = ledger_totals.c
    return (
        ledger_totals.update()
        .where(t.kind == kind)
        .values(
            high=t.high + sum(a // _SPLIT for a in values),
            low=t.low + sum(a % _SPLIT for a in values),
            rows=t.rows + len(values),
        )
    )


def _utc(at: datetime) -> datetime:
    """`at` in UTC (a naive time, as SQLite returns it, is UTC already)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _whole(high: Any, low: Any) -> int:
    return int(high or 0) * _SPLIT + int(low or 0)


class LedgerStore:
    """Reads and credits of the `ledger` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._fitter = RowFitter(ledger)

    async def add_credit(
        self, amount: int, *, note: str | None, at: datetime | None = None
    ) -> LedgerEntry:
        """Add `amount` pico-USD of credits (at `at`, else now); the row as stored. The note
        is cut to its column's length. ValueError unless 0 < amount < 2**63."""
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValueError(f"a credit is a whole number of pico-USD: {amount!r}")
        if not 0 < amount <= _MAX_AMOUNT:
            raise ValueError(f"a credit must be more than 0 and less than 2**63 pico: {amount}")
        row = self._fitter.fit(
            {
                "created_at": _utc(at or datetime.now(UTC)),
                "kind": "credit",
                "amount": amount,
                "generation_id": None,
                "api_key_hash": None,
                "note": note,
            }
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(ledger.insert().returning(ledger.c.id), [row])
            entry_id = int(result.scalar_one())
            await conn.execute(count_in_totals("credit", [amount]))
        return LedgerEntry(id=entry_id, **row)

    async def totals(self) -> LedgerTotals:
        """Every credit and charge summed, exactly: two rows of `ledger_totals`, kept with
        every insert (read every second by each replica; the ledger itself is not summed)."""
        async with self._engine.connect() as conn:
            rows = {r.kind: r for r in await conn.execute(ledger_totals.select())}
        credit, charge = rows.get("credit"), rows.get("charge")
        return LedgerTotals(
            credits=_whole(credit.high, credit.low) if credit else 0,
            charges=_whole(charge.high, charge.low) if charge else 0,
            credit_rows=int(credit.rows) if credit else 0,
        )

    async def summed(self) -> LedgerTotals:
        """The same totals summed from the ledger's rows (a full scan: for checks only)."""
        query = sa.select(ledger.c.kind, ledger.c.amount)
        sums, counts = {"credit": 0, "charge": 0}, {"credit": 0, "charge": 0}
        async with self._engine.connect() as conn:
            for kind, amount in await conn.execute(query):
                sums[kind] += int(amount)
                counts[kind] += 1
        return LedgerTotals(
            credits=sums["credit"], charges=sums["charge"], credit_rows=counts["credit"]
        )

    async def entries(self, limit: int = 100) -> list[LedgerEntry]:
        """The newest `limit` rows, newest first."""
        query = (
            ledger.select()
            .order_by(ledger.c.created_at.desc(), ledger.c.id.desc())
            .limit(max(limit, 0))
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LedgerEntry(
                id=int(r.id),
                created_at=_utc(r.created_at),
                kind=cast(LedgerKind, r.kind),
                amount=int(r.amount),
                generation_id=r.generation_id,
                api_key_hash=r.api_key_hash,
                note=r.note,
            )
            for r in rows
        ]
