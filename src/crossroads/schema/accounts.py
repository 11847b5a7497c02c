"""The account's money and activity as storage reads them back: plain data.

Amounts are ints of pico-USD (`accounting.money`): 1 USD = 10**12.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

LedgerKind = Literal["credit", "charge"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One row of the ledger: credits bought (added by an operator) or a generation's cost
    charged against them. `amount` is > 0 for both kinds; a charge is subtracted."""

    id: int
    created_at: datetime  # UTC
    kind: LedgerKind
    amount: int  # pico-USD
    generation_id: str | None = None  # a charge's generation
    api_key_hash: str | None = None  # the key a charge's generation was made with
    note: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """The whole ledger summed: pico-USD credited and charged, and how many credit rows."""

    credits: int
    charges: int
    credit_rows: int

    @property
    def balance(self) -> int:
        """Credits left (pico-USD): negative when more was charged than credited."""
        return self.credits - self.charges


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """The generations of one UTC day, model, provider and endpoint, summed."""

    date: str  # YYYY-MM-DD, UTC
    model: str
    provider_name: str  # '' when no provider was recorded
    endpoint_tag: str  # '' when no endpoint was recorded
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    usage: float  # USD
