"""Exact conversion between human decimals and integer units (DESIGN §3)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InputError
from ledger.units import (
    base_units_from_currency,
    currency_from_base_units,
    currency_per_kwh_from_price_per_wh,
    kwh_from_wh,
    payment_base_units,
    price_per_wh_from_currency_per_kwh,
    wh_from_kwh,
)

EXAMPLES = settings(max_examples=300, deadline=None)


def test_design_example_quarter_currency_per_kwh_is_250e12_base_units_per_wh() -> None:
    assert price_per_wh_from_currency_per_kwh("0.25") == 250_000_000_000_000
    assert currency_per_kwh_from_price_per_wh(250_000_000_000_000) == Decimal("0.25")


@pytest.mark.parametrize(
    ("kwh", "wh"),
    [("1.5", 1500), ("0.001", 1), ("2", 2000), (3, 3000), (Decimal("0.250"), 250), ("1e3", 10**6)],
)
def test_wh_from_kwh_examples(kwh: str | int | Decimal, wh: int) -> None:
    assert wh_from_kwh(kwh) == wh


def test_money_from_currency_uses_18_decimals() -> None:
    assert base_units_from_currency("1") == 10**18
    assert base_units_from_currency("0.000000000000000001") == 1
    assert currency_from_base_units(1) == Decimal("1E-18")


@pytest.mark.parametrize(
    ("convert", "value"),
    [
        (wh_from_kwh, "0.0005"),
        (wh_from_kwh, "1.0001"),
        (price_per_wh_from_currency_per_kwh, "0.0000000000000001"),
        (base_units_from_currency, "0.0000000000000000001"),
    ],
)
def test_value_finer_than_base_unit_is_rejected_not_rounded(convert: object, value: str) -> None:
    with pytest.raises(InputError, match="finer than one"):
        convert(value)  # type: ignore[operator]


@pytest.mark.parametrize(
    "value",
    [0.5, "nan", "inf", "-Infinity", "1_000", "1,5", "", " ", "٣", "+1", "0x10", True, None],
)
def test_non_decimal_inputs_are_rejected(value: object) -> None:
    with pytest.raises(InputError):
        wh_from_kwh(value)  # type: ignore[arg-type]


def test_float_is_refused_with_a_hint_to_use_a_string() -> None:
    with pytest.raises(InputError) as info:
        price_per_wh_from_currency_per_kwh(0.25)  # type: ignore[arg-type]
    assert "string" in str(info.value)


def test_huge_exponent_is_rejected_without_building_a_huge_number() -> None:
    with pytest.raises(InputError):
        wh_from_kwh(Decimal("1e999999"))


@EXAMPLES
@given(wh=st.integers(-(2**70), 2**70))
def test_energy_round_trips_exactly(wh: int) -> None:
    assert wh_from_kwh(str(kwh_from_wh(wh))) == wh
    assert wh_from_kwh(kwh_from_wh(wh)) == wh


@EXAMPLES
@given(price=st.integers(0, 2**128 - 1))
def test_price_round_trips_exactly_over_the_uint128_range(price: int) -> None:
    assert (
        price_per_wh_from_currency_per_kwh(str(currency_per_kwh_from_price_per_wh(price))) == price
    )


@EXAMPLES
@given(amount=st.integers(0, 2**256 - 1))
def test_money_round_trips_exactly_over_the_uint256_range(amount: int) -> None:
    assert base_units_from_currency(str(currency_from_base_units(amount))) == amount


@EXAMPLES
@given(wh=st.integers(0, 10**12), extra=st.integers(1, 9))
def test_any_extra_sub_wh_digit_is_rejected(wh: int, extra: int) -> None:
    with pytest.raises(InputError):
        wh_from_kwh(f"{kwh_from_wh(wh)}{extra}")


@EXAMPLES
@given(quantity=st.integers(0, 2**64), price=st.integers(0, 2**128))
def test_payment_is_the_exact_product(quantity: int, price: int) -> None:
    assert payment_base_units(quantity, price) == quantity * price
