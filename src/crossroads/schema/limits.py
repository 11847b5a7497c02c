"""A request's admission ticket: what admission reserved for it, read back when it settles.

Plain data: the API layer gets it from `limits.Limits.admit`, the router carries it in the
request's context, and hands it back to the limits when the request is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    id: str  # unique: names this request's holds
    key_hash: str
    reserved: int  # pico-USD held for the worst case (0: nothing held)
    key_hold: bool  # a hold was placed against the key's limit
    balance: bool  # the account balance is in force: the charge is drawn from it (a ledger row)
    prompt_tokens: int  # counted against the key's tokens-per-minute at admission
    minute: int  # the epoch minute of admission (the tokens-per-minute window)
    tpm: bool  # the key has a tokens-per-minute limit
