"""Money: exact decimals in the domain and on the wire, whole nano-AITBC integers in storage.

Amounts are never floats. A charge is computed at full decimal precision and rounded once, half up, to
the storage unit (1e-9 AITBC), so a sum of stored amounts is exact on every database.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

UNIT = Decimal("0.000000001")
UNITS_PER_AITBC = 1_000_000_000
# The most an account may hold: 10^18 storage units, so every ledger sum fits a signed 64-bit integer.
MAX_BALANCE = Decimal(10**9)


def to_units(amount: Decimal) -> int:
    return int((amount / UNIT).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_units(units: int) -> Decimal:
    return (Decimal(units) * UNIT).quantize(UNIT)


def parse_amount(text: str) -> Decimal:
    """A user-typed amount: a plain decimal with at most 9 places, no exponents, no NaN."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as error:
        raise ValueError(f"{text!r} is not an amount: write it like 12.5") from error
    if not value.is_finite() or "e" in text.lower():
        raise ValueError(f"{text!r} is not an amount: write it like 12.5")
    if abs(value) >= MAX_BALANCE:
        raise ValueError(f"{text!r} is too large: an amount is below {MAX_BALANCE}")
    if value != value.quantize(UNIT):
        raise ValueError(f"{text!r} has more than 9 decimal places")
    return value


def display(amount: Decimal) -> str:
    """`0.000055556`, `12.5`: no exponent, no trailing zeros beyond what is needed."""
    text = format(amount.quantize(UNIT), "f").rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
