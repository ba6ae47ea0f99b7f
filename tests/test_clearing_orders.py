"""Orders and the columnar book: every bad field is refused with its row and field named."""

from __future__ import annotations

import numpy as np
import pytest

from ledger.errors import InputError
from ledger.units import PricePerWh, Wh
from market.orders import (
    MAX_PRICE_PER_WH,
    MAX_QUANTITY_WH,
    MAX_SEQ,
    Order,
    OrderBook,
    Side,
)


def good(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "id": "o1",
        "side": Side.BUY,
        "quantity_wh": 5,
        "price_per_wh": 7,
        "seq": 0,
    }
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quantity_wh": 0}, "quantity_wh"),
        ({"quantity_wh": -1}, "quantity_wh"),
        ({"quantity_wh": MAX_QUANTITY_WH + 1}, "quantity_wh"),
        ({"quantity_wh": 1.0}, "quantity_wh"),
        ({"quantity_wh": True}, "quantity_wh"),
        ({"price_per_wh": -5}, "price_per_wh"),
        ({"price_per_wh": 0}, "price_per_wh"),
        ({"price_per_wh": MAX_PRICE_PER_WH + 1}, "price_per_wh"),
        ({"price_per_wh": "7"}, "price_per_wh"),
        ({"seq": -1}, "seq"),
        ({"seq": MAX_SEQ + 1}, "seq"),
        ({"side": "hold"}, "side"),
        ({"id": ""}, "id"),
        ({"id": "has space"}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"id": 7}, "id"),
        ({"participant": 5}, "participant"),
    ],
)
def test_order_rejects_bad_field_naming_it(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InputError, match=f"field '{field}'"):
        Order(**good(**changes))  # type: ignore[arg-type]


def test_order_accepts_bounds_and_side_strings() -> None:
    order = Order(**good(side="SELL", quantity_wh=MAX_QUANTITY_WH, price_per_wh=MAX_PRICE_PER_WH))  # type: ignore[arg-type]
    assert order.side is Side.SELL
    assert Order(**good(price_per_wh=1, quantity_wh=1, seq=MAX_SEQ)).price_per_wh == 1  # type: ignore[arg-type]


def columns(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "ids": ["a", "b", "c"],
        "is_buy": np.array([True, False, True]),
        "quantity_wh": np.array([1, 2, 3]),
        "price_per_wh": np.array([4, 5, 6]),
        "seq": np.array([0, 1, 2]),
    }
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quantity_wh": np.array([1, 0, 3])}, "row 1 (id 'b'), field 'quantity_wh'"),
        ({"quantity_wh": np.array([1.0, 2.0, 3.0])}, "row 0 (id 'a'), field 'quantity_wh'"),
        ({"quantity_wh": [1, 2, 2**40]}, "row 2 (id 'c'), field 'quantity_wh'"),
        ({"price_per_wh": [4, 5, 2**63]}, "row 2 (id 'c'), field 'price_per_wh'"),
        ({"price_per_wh": np.array([4, 2**63, 6], dtype=np.uint64)}, "row 1 (id 'b')"),
        ({"price_per_wh": np.array([4, -5, 6])}, "field 'price_per_wh': -5 is negative"),
        ({"seq": np.array([0, -1, 2])}, "row 1 (id 'b'), field 'seq'"),
        ({"ids": ["a", "b", "a"]}, "row 2, field 'id': duplicate id 'a' (first at row 0)"),
        ({"ids": ["a", "", "c"]}, "row 1, field 'id'"),
        ({"ids": ["a", "b\n", "c"]}, "row 1, field 'id'"),
        ({"ids": ["a", None, "c"]}, "row 1, field 'id'"),
        ({"is_buy": np.array([1, 0, 1])}, "field 'is_buy'"),
        ({"is_buy": np.array([True, False])}, "field 'is_buy'"),
        ({"quantity_wh": np.array([1, 2])}, "field 'quantity_wh': expected 3 values"),
        ({"participants": ["x", 5, None]}, "row 1, field 'participant'"),
    ],
)
def test_book_rejects_bad_column_naming_row_and_field(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as info:
        OrderBook(**columns(**changes))  # type: ignore[arg-type]
    assert message in str(info.value)


def test_book_copies_its_columns_read_only() -> None:
    quantity = np.array([1, 2, 3])
    book = OrderBook(**columns(quantity_wh=quantity))  # type: ignore[arg-type]
    quantity[0] = 99
    assert book.quantity_wh[0] == 1
    with pytest.raises(ValueError, match="read-only"):
        book.price_per_wh[0] = 1


def test_book_round_trips_orders_and_defaults_seq_to_row_index() -> None:
    orders = [
        Order("x", Side.SELL, Wh(3), PricePerWh(9), 4, participant="0xabc"),
        Order("y", Side.BUY, Wh(1), PricePerWh(2), 0),
    ]
    book = OrderBook.from_orders(orders)
    assert list(book) == orders
    plain = OrderBook(
        ids=["p", "q"], is_buy=np.array([True, False]), quantity_wh=[1, 1], price_per_wh=[1, 1]
    )
    assert plain.seq.tolist() == [0, 1]


def test_empty_book_is_valid() -> None:
    assert len(OrderBook(ids=[], is_buy=[], quantity_wh=[], price_per_wh=[])) == 0
