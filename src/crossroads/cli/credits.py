"""`crossroads credits`: the account's credits, on the server's database.

`credits add` writes one credit row to the ledger; a running server reads the ledger again
within about a second. The balance is in force from the first top-up on, or from the start
when the config says `credits: {enforce: true}` (or CROSSROADS_CREDITS_ENFORCE is set).
Amounts are exact: the ledger counts pico-USD (`accounting.money`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.accounting.money import to_pico, to_usd
from crossroads.cli.store import database_options, echo_json, load_target, run, table, usd
from crossroads.errors import ConfigError
from crossroads.schema.accounts import LedgerEntry, LedgerTotals
from crossroads.settings import credits_enforced
from crossroads.storage import LedgerStore, RollupStore
from crossroads.storage.tables import CONTROL_CHARACTERS, column_length, ledger

SHOWN_ENTRIES = 10  # ledger rows `credits show` lists, newest first
NOTE_LENGTH = column_length(ledger.c.note)
_MAX_USD = Decimal(2**63 - 1).scaleb(-12)  # what one ledger row holds (BigInteger pico-USD)
_UNIT = Decimal(1).scaleb(-12)


def _amount(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """USD as typed (`10`, `0.25`, `1e3`): finite, above 0, at most 12 decimals; in pico."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number of USD") from None
    if not amount.is_finite() or amount <= 0:
        raise click.BadParameter(f"{value!r} must be a finite amount of USD above 0")
    if amount > _MAX_USD:
        raise click.BadParameter(f"{value!r} is more than one top-up may add ({_MAX_USD} USD)")
    if amount.quantize(_UNIT) != amount:  # exact: the quantized value has at most 19 digits
        raise click.BadParameter(f"{value!r} has more than 12 decimals (1e-12 USD is the unit)")
    return to_pico(amount)


def _note(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if CONTROL_CHARACTERS.search(value):
        raise click.BadParameter("the note must not contain control characters")
    if len(value) > NOTE_LENGTH:
        raise click.BadParameter(f"the note is longer than {NOTE_LENGTH} characters")
    return value or None


def _entry(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "created_at": entry.created_at.isoformat(),
        "kind": entry.kind,
        "amount": to_usd(entry.amount),
        "generation_id": entry.generation_id,
        "api_key_hash": entry.api_key_hash,
        "note": entry.note,
    }


def _totals(totals: LedgerTotals, used: int = 0) -> list[tuple[str, str]]:
    """The lines of the totals; `used` is what the records cost (usage is the larger)."""
    return [
        ("total credits", usd(totals.credits)),
        ("total usage", usd(max(totals.charges, used))),
        ("balance", usd(totals.balance)),
    ]


def _lines(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"{name + ':':15}{value}" for name, value in pairs)


@click.group()
def credits() -> None:
    """The account's credits: top-ups, and the usage charged against them."""


@credits.command("add")
@click.argument("amount", callback=_amount)
@click.option("--note", callback=_note, help="Why the credits were added (kept in the ledger).")
@database_options
def add(
    amount: int, note: str | None, config: str | None, database: str | None, data_dir: str | None
) -> None:
    """Add AMOUNT USD of credits to the account; the balance is in force from now on."""
    target = load_target(config, database, data_dir)

    async def work(engine: AsyncEngine) -> LedgerTotals:
        ledger = LedgerStore(engine)
        await ledger.add_credit(amount, note=note)
        return await ledger.totals()

    totals = run(target.settings, work)
    click.echo(f"Added {usd(amount)} USD of credits.")
    click.echo(_lines(_totals(totals)))


@credits.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the totals and entries as JSON.")
@database_options
def show(as_json: bool, config: str | None, database: str | None, data_dir: str | None) -> None:
    """Show the credits, the usage charged against them, the balance and the last entries."""
    target = load_target(config, database, data_dir)
    try:
        configured = credits_enforced(target.settings, target.config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    async def work(engine: AsyncEngine) -> tuple[LedgerTotals, list[LedgerEntry], int]:
        ledger = LedgerStore(engine)
        used = await RollupStore(engine).total_cost()
        return await ledger.totals(), await ledger.entries(SHOWN_ENTRIES), used

    totals, entries, used = run(target.settings, work)
    enforced = configured or totals.credit_rows > 0
    if as_json:
        echo_json(
            {
                "data": {
                    "total_credits": to_usd(totals.credits),
                    "total_usage": to_usd(max(totals.charges, used)),  # as GET /credits
                    "balance": to_usd(totals.balance),
                    "enforced": enforced,
                    "entries": [_entry(e) for e in entries],
                }
            }
        )
        return
    if not enforced:
        state = "no (no credits were added, and the config does not enforce it)"
    else:
        state = "yes" + ("" if totals.credit_rows else " (the config enforces it)")
    click.echo(_lines([*_totals(totals, used), ("enforced", state)]))
    if not entries:
        click.echo("\nThe ledger is empty.")
        return
    rows = [
        [
            str(e.id),
            e.created_at.isoformat(timespec="seconds"),
            e.kind,
            usd(e.amount if e.kind == "credit" else -e.amount),
            e.note or (f"generation {e.generation_id}" if e.generation_id else ""),
        ]
        for e in entries
    ]
    click.echo(f"\nThe ledger, newest first (at most {SHOWN_ENTRIES} entries):")
    click.echo(table(("ID", "TIME", "KIND", "USD", "NOTE"), rows))
