"""Units of energy, money and price, and exact conversion from human decimals (DESIGN §3).

Every quantity in wattledger is an ``int`` in its base unit; the unit is in the type and in
the name:

* energy: :data:`Wh` (``uint64`` on-chain);
* money: :data:`BaseUnits`, token base units; the settlement token has 18 decimals
  (``uint256`` on-chain);
* price: :data:`PricePerWh`, token base units per Wh (``uint128`` on-chain). One currency
  unit per kWh is ``10**18 / 1000 = 10**15`` base units per Wh, so 0.25 currency/kWh is
  ``250_000_000_000_000``.

People-facing surfaces take decimal kWh and currency/kWh. The ``*_from_*`` functions convert
them exactly: a value finer than the base unit is rejected with an :class:`InputError`, never
rounded. ``float`` is refused outright, because a binary float cannot say which decimal the
user meant (``0.1`` is not one tenth). The ``*_to_*`` functions go back to exact
:class:`~decimal.Decimal` values for display.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import NewType

from ledger.errors import InputError

Wh = NewType("Wh", int)
"""Energy in watt-hours."""

BaseUnits = NewType("BaseUnits", int)
"""Money in settlement-token base units (10**-18 of one token)."""

PricePerWh = NewType("PricePerWh", int)
"""Price in settlement-token base units per Wh."""

TOKEN_DECIMALS = 18
"""Decimals of the settlement token."""

BASE_UNITS_PER_TOKEN = 10**TOKEN_DECIMALS
"""Base units in one whole token (one currency unit)."""

WH_PER_KWH = 1000
"""Watt-hours in one kilowatt-hour."""

PRICE_PER_WH_PER_CURRENCY_PER_KWH = BASE_UNITS_PER_TOKEN // WH_PER_KWH
"""Base units per Wh that equal one currency unit per kWh (``10**15``)."""

# A human decimal: optional minus, digits with an optional fraction, optional exponent.
# Underscores, signs other than '-', whitespace inside and non-ASCII digits are refused, so a
# value means exactly what it reads as.
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")

DecimalLike = str | int | Decimal
"""What the conversions accept: a decimal string, an int or a finite Decimal."""


def _exact(value: DecimalLike, what: str) -> Fraction:
    """Return ``value`` as an exact fraction, or raise InputError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InputError(
            f"{what}: expected a decimal string, int or Decimal, got {type(value).__name__} "
            f"{value!r}",
            hint="Binary floats are refused because they cannot hold most decimals exactly; "
            "pass the value as a string such as '0.25'.",
        )
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL.fullmatch(text):
            raise InputError(f"{what}: {value!r} is not a decimal number")
        value = Decimal(text)
    if not value.is_finite():
        raise InputError(f"{what}: {value!r} is not a finite number")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite Decimals have an int exponent
    if abs(exponent) > 999:
        raise InputError(f"{what}: {value!r} has an exponent out of range")
    return Fraction(value)


def _scaled_decimal(n: int, exponent: int) -> Decimal:
    """Exactly ``n * 10**exponent`` as a Decimal (``scaleb`` would round to the context)."""
    return Decimal(f"{n}E{exponent}")


def _to_base(value: DecimalLike, scale: int, what: str, unit: str, base: str) -> int:
    """Convert ``value`` (in ``unit``) to an int of ``base`` units, ``scale`` base per unit.

    Exact: a value that is not a whole number of base units raises InputError.
    """
    scaled = _exact(value, what) * scale
    if scaled.denominator != 1:
        raise InputError(
            f"{what}: {value} {unit} is finer than one {base} "
            f"(1 {base} = {Fraction(1, scale)} {unit}); it is not rounded"
        )
    return scaled.numerator


def wh_from_kwh(kwh: DecimalLike) -> Wh:
    """Exact energy in Wh from decimal kWh: ``wh_from_kwh("1.5") == 1500``.

    Raises InputError for a float, a non-number, or a value finer than 1 Wh (``"0.0005"``).
    Sign and range are the caller's business (an order checks them against its bounds).
    """
    return Wh(_to_base(kwh, WH_PER_KWH, "energy", "kWh", "Wh"))


def kwh_from_wh(wh: Wh | int) -> Decimal:
    """Exact decimal kWh of ``wh`` watt-hours, for display."""
    return _scaled_decimal(int(wh), -3)


def price_per_wh_from_currency_per_kwh(currency_per_kwh: DecimalLike) -> PricePerWh:
    """Exact price in base units per Wh from decimal currency per kWh.

    ``price_per_wh_from_currency_per_kwh("0.25") == 250_000_000_000_000``. Raises InputError
    for a float, a non-number, or a value finer than one base unit per Wh
    (10**-15 currency/kWh).
    """
    return PricePerWh(
        _to_base(
            currency_per_kwh,
            PRICE_PER_WH_PER_CURRENCY_PER_KWH,
            "price",
            "currency/kWh",
            "base unit/Wh",
        )
    )


def currency_per_kwh_from_price_per_wh(price_per_wh: PricePerWh | int) -> Decimal:
    """Exact decimal currency per kWh of a price in base units per Wh, for display."""
    return _scaled_decimal(int(price_per_wh), -(TOKEN_DECIMALS - 3))


def base_units_from_currency(currency: DecimalLike) -> BaseUnits:
    """Exact money in base units from a decimal amount of currency (tokens).

    ``base_units_from_currency("1.5") == 1_500_000_000_000_000_000``. Raises InputError for a
    float, a non-number or a value finer than one base unit (10**-18).
    """
    return BaseUnits(_to_base(currency, BASE_UNITS_PER_TOKEN, "amount", "currency", "base unit"))


def currency_from_base_units(base_units: BaseUnits | int) -> Decimal:
    """Exact decimal currency (tokens) of an amount in base units, for display."""
    return _scaled_decimal(int(base_units), -TOKEN_DECIMALS)


def payment_base_units(quantity_wh: Wh | int, price_per_wh: PricePerWh | int) -> BaseUnits:
    """The payment for ``quantity_wh`` at ``price_per_wh``: their exact product (DESIGN §3).

    Python ints do not wrap, so this never overflows; no rounding is involved.
    """
    return BaseUnits(int(quantity_wh) * int(price_per_wh))
