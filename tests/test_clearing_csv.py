"""Reading the orders CSV of DESIGN §4: the documented format, and errors naming row and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import InputError
from market.orders import MAX_PRICE_PER_WH, MAX_QUANTITY_WH
from market.orders_csv import OrdersCsvError, parse_orders_bytes, read_orders_csv

HEADER = "id,side,quantity_wh,price,seq\n"


def parse(text: str) -> object:
    return parse_orders_bytes(text.encode(), "orders.csv")


def test_documented_format_is_read_into_a_book() -> None:
    book = parse_orders_bytes(
        (HEADER + "b1,buy,1000,300000000000000,7\ns1,sell,800,200000000000000,3\n").encode()
    )
    assert book.ids == ("b1", "s1")
    assert book.is_buy.tolist() == [True, False]
    assert book.quantity_wh.tolist() == [1000, 800]
    assert book.price_per_wh.tolist() == [300_000_000_000_000, 200_000_000_000_000]
    assert book.seq.tolist() == [7, 3]


def test_seq_defaults_to_row_number_and_columns_may_be_reordered() -> None:
    text = "price,id,quantity_wh,side\n5,a,1,sell\n\n6, b ,2, BUY \n"
    book = parse_orders_bytes(("\ufeff" + text).encode())
    assert book.ids == ("a", "b")
    assert book.seq.tolist() == [1, 2]
    assert book.is_buy.tolist() == [False, True]


def test_empty_seq_cell_defaults_to_row_number() -> None:
    book = parse_orders_bytes((HEADER + "a,buy,1,1,\nb,sell,1,1,0\n").encode())
    assert book.seq.tolist() == [1, 0]


def test_header_only_is_an_empty_book_not_an_error() -> None:
    assert len(parse_orders_bytes(b"id,side,quantity_wh,price\n")) == 0


def test_bounds_themselves_are_accepted() -> None:
    book = parse_orders_bytes(
        (HEADER + f"a,buy,{MAX_QUANTITY_WH},{MAX_PRICE_PER_WH},0\nb,sell,1,1,0\n").encode()
    )
    assert book.quantity_wh.tolist() == [MAX_QUANTITY_WH, 1]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a,buy,0,5,1", "row 1 (line 2), field 'quantity_wh': 0 is below the minimum 1"),
        ("a,buy,-3,5,1", "row 1 (line 2), field 'quantity_wh': -3 is negative"),
        ("a,buy,1.5,5,1", "row 1 (line 2), field 'quantity_wh': '1.5' is not a whole number"),
        ("a,buy,1e3,5,1", "field 'quantity_wh': '1e3' is not a whole number"),
        ("a,buy,,5,1", "field 'quantity_wh': an empty cell is not a whole number"),
        ("a,buy,+4,5,1", "field 'quantity_wh': '+4' is not a whole number"),
        ("a,buy,1_000,5,1", "field 'quantity_wh'"),
        ("a,buy,٣,5,1", "field 'quantity_wh'"),
        (f"a,buy,{MAX_QUANTITY_WH + 1},5,1", "field 'quantity_wh': 1099511627776 is above"),
        ("a,buy,1," + "9" * 5000 + ",1", "field 'price'"),
        ("a,buy,1,-5,1", "row 1 (line 2), field 'price': -5 is negative"),
        ("a,buy,1,0,1", "field 'price': 0 is below the minimum 1"),
        ("a,buy,1,0.25,1", "field 'price': '0.25' is not a whole number"),
        (f"a,buy,1,{MAX_PRICE_PER_WH + 1},1", "field 'price'"),
        ("a,buy,1,5,-1", "field 'seq': -1 is negative"),
        ("a,buy,1,5,x", "field 'seq'"),
        ("a,hold,1,5,1", "row 1 (line 2), field 'side': 'hold' is not a side"),
        ("a,,1,5,1", "field 'side'"),
        ("a b,buy,1,5,1", "row 1 (line 2), field 'id'"),
        (",buy,1,5,1", "field 'id'"),
        ("a,buy,1,5", "row 1 (line 2): expected 5 fields"),
        ("a,buy,1,5,1,extra", "row 1 (line 2): expected 5 fields"),
    ],
)
def test_bad_row_names_row_and_field(row: str, message: str) -> None:
    with pytest.raises(OrdersCsvError) as info:
        parse(HEADER + row + "\n")
    assert "orders.csv, " in str(info.value)
    assert message in str(info.value)


def test_duplicate_id_names_both_rows() -> None:
    with pytest.raises(OrdersCsvError, match=r"row 3 \(line 4\), field 'id': duplicate id 'a'"):
        parse(HEADER + "a,buy,1,1,1\nb,buy,1,1,1\na,sell,1,1,1\n")
    with pytest.raises(OrdersCsvError, match=r"first in row 1"):
        parse(HEADER + "a,buy,1,1,1\nb,buy,1,1,1\na,sell,1,1,1\n")


def test_row_numbers_skip_blank_lines_but_lines_count_them() -> None:
    with pytest.raises(OrdersCsvError, match=r"row 2 \(line 4\), field 'side'"):
        parse(HEADER + "a,buy,1,1,1\n\nb,bye,1,1,1\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "orders.csv is empty"),
        ("\n\n", "orders.csv is empty"),
        ("id,side,quantity_wh\n", "missing column(s) 'price'"),
        ("id,quantity_wh,price\n", "missing column(s) 'side'"),
        ("id,side,quantity_wh,price,note\n", "unknown column 'note'"),
        ("id,side,quantity_wh,price,price\n", "column 'price' appears twice"),
    ],
)
def test_bad_file_or_header_is_named(text: str, message: str) -> None:
    with pytest.raises(OrdersCsvError) as info:
        parse(text)
    assert message in str(info.value)


def test_non_utf8_and_broken_quoting_are_clear_errors() -> None:
    with pytest.raises(OrdersCsvError, match="not UTF-8"):
        parse_orders_bytes(HEADER.encode() + b"\xff,buy,1,1,1\n", "orders.csv")
    with pytest.raises(OrdersCsvError, match="line"):
        parse(HEADER + 'a,"buy,1,1,1\n')


def test_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv"):
        read_orders_csv(tmp_path / "nope.csv")


def test_csv_errors_are_input_errors_with_their_own_code() -> None:
    assert issubclass(OrdersCsvError, InputError)
    assert OrdersCsvError.code == "invalid_orders_csv"
