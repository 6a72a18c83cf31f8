"""Conversions between human prices (dollars as text) and integer price units.

Only the edges (config, CLI, display) call these; everything inside is integers.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from services.common.wire import PRICE_SCALE


def to_units(text: str | int | float) -> int:
    """Parse a dollar amount exactly; refuse anything finer than one price unit."""
    try:
        value = Decimal(str(text)) * PRICE_SCALE
    except InvalidOperation as exc:
        raise ValueError(f"not a price: {text!r}") from exc
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"not a price in units of 1/{PRICE_SCALE} dollar: {text!r}")
    return int(value)


def to_dollars(units: int) -> str:
    """Render price units as dollars with at least two decimals."""
    text = f"{Decimal(units) / PRICE_SCALE:f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"
