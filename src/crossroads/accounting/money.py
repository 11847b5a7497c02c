"""Money as the server counts it: an `int` of pico-USD (1 USD = 10**12 pico-USD).

Sums of ints are exact in Python, in Redis (INCRBY) and in SQL (BigInteger), where sums
of float dollars drift. Costs are quantized to 1e-12 USD already, so a cost converts to a
whole number of pico-USD; `to_pico` rounds half to even for whatever is finer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

PICO = 10**12  # pico-USD per USD

_ONE = Decimal(1)
_MAX_DIGITS = 40  # an amount of 10**41 USD or more is refused


def to_pico(usd: float | Decimal | str) -> int:
    """`usd` dollars in pico-USD, rounded half to even to the nearest pico.

    A float is read as the decimal it prints as (`repr`): 0.1 is 100_000_000_000 pico,
    not the binary fraction's 100_000_000_000.0000000055... A text is read as a decimal
    number. Raises ValueError for what is not a finite number (NaN, infinities, a bool,
    unreadable text) and for 10**41 USD or more."""
    if isinstance(usd, bool):
        raise ValueError(f"not an amount of money: {usd!r}")
    if isinstance(usd, float):
        if not math.isfinite(usd):
            raise ValueError(f"not a finite amount of money: {usd!r}")
        value = Decimal(repr(usd))
    elif isinstance(usd, int | Decimal):
        value = Decimal(usd)
    elif isinstance(usd, str):
        try:
            value = Decimal(usd.strip())
        except InvalidOperation:
            raise ValueError(f"not an amount of money: {usd!r}") from None
    else:
        raise ValueError(f"not an amount of money: {usd!r}")
    if not value.is_finite():
        raise ValueError(f"not a finite amount of money: {usd!r}")
    if value and value.adjusted() > _MAX_DIGITS:
        raise ValueError(f"too large an amount of money: {usd!r}")
    with localcontext() as context:
        context.prec = 64  # > _MAX_DIGITS + 12: the conversion is exact before rounding
        return int(value.scaleb(12).quantize(_ONE, rounding=ROUND_HALF_EVEN))


def to_usd(pico: int) -> float:
    """`pico` pico-USD in dollars: the nearest float, rounded to 12 decimal places."""
    return round(pico / PICO, 12)


@dataclass(frozen=True, slots=True)
class Bill:
    """What one answer costs, in pico-USD: its prompt's share and its completion's."""

    prompt: int = 0
    completion: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def capped(self, most: int) -> Bill:
        """This bill, at most `most` in all (the prompt's share first)."""
        if self.total <= most:
            return self
        prompt = min(self.prompt, most)
        return Bill(prompt=prompt, completion=most - prompt)
