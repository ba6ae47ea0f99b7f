"""Read an order book from CSV (DESIGN §4), with errors that name the row and the field.

The columns are ``id,side,quantity_wh,price[,seq]`` in any order, with a header line:

* ``id``: the order id (1 to 128 of ``A-Z a-z 0-9 _ . : -``), unique in the file;
* ``side``: ``buy`` or ``sell`` (any case);
* ``quantity_wh``: a whole number of Wh, ``1 .. MAX_QUANTITY_WH``;
* ``price``: a whole number of token base units per Wh, ``1 .. MAX_PRICE_PER_WH``;
* ``seq`` (optional column, and a cell may be left empty): the arrival sequence, a whole
  number ``0 .. MAX_SEQ``; it defaults to the row number (the first order is row 1);
* ``node`` (optional column, read only by :func:`read_located_orders_csv` and
  :func:`parse_located_orders_bytes`; a cell may be left empty): the grid node the order
  sits at (docs/grid.md §1.2), default the grid's root.

Spaces around cells are ignored, and so are blank lines. Anything else that is not exactly
this (a missing or unknown column, a decimal point, a sign, an exponent, a value out of
bounds, a duplicate id, an unknown side) raises :class:`OrdersCsvError`, naming the row
(and its line in the file) and the field. A file with only the header is an empty book, not
an error.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ledger.errors import InputError
from market.grid import Grid, GridError
from market.orders import (
    ID_PATTERN,
    MAX_BOOK_ORDERS,
    MAX_PRICE_PER_WH,
    MAX_QUANTITY_WH,
    MAX_SEQ,
    MIN_PRICE_PER_WH,
    MIN_QUANTITY_WH,
    MIN_SEQ,
    OrderBook,
)

REQUIRED_COLUMNS = ("id", "side", "quantity_wh", "price")
OPTIONAL_COLUMNS = ("seq", "node")
HEADER_HELP = "The header must be id,side,quantity_wh,price with optional seq and node columns."


class OrdersCsvError(InputError):
    """Raised when an orders CSV is empty, has a bad header, or has a bad row or cell.

    The message names the source, the row (and its line) and the field.
    """

    code = "invalid_orders_csv"


def _parse_int(text: str, field: str, low: int, high: int, where: str) -> int:
    """Parse a whole number in ``[low, high]`` written with ASCII digits only."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        shown = repr(text) if text else "an empty cell"
        raise OrdersCsvError(f"{where}, field {field!r}: {shown} is not a whole number")
    if text.startswith("-") and digits.strip("0"):
        raise OrdersCsvError(f"{where}, field {field!r}: {text} is negative")
    significant = digits.lstrip("0") or "0"
    value = int(significant) if len(significant) <= len(str(high)) else high + 1
    if value < low:
        raise OrdersCsvError(f"{where}, field {field!r}: {value} is below the minimum {low}")
    if value > high:
        raise OrdersCsvError(f"{where}, field {field!r}: {text} is above the maximum {high}")
    return value


def parse_orders_csv(lines: Iterable[str], source: str = "orders") -> OrderBook:
    """Parse CSV text lines (as from an open text file) into an :class:`OrderBook`.

    ``source`` names the input in error messages. Raises :class:`OrdersCsvError`, also for a
    ``node`` column: orders placed on a grid are read with :func:`parse_located_orders_bytes`.
    """
    book, nodes = _parse(lines, source)
    if nodes is not None:
        raise OrdersCsvError(
            f"{source}: column 'node' places orders on a grid; clear them with a grid document"
        )
    return book


def _parse(lines: Iterable[str], source: str) -> tuple[OrderBook, _NodeCells | None]:
    """The book, and the raw node cells with their lines if there is a ``node`` column."""
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
    except csv.Error as err:
        raise OrdersCsvError(f"{source}, line {reader.line_num}: {err}") from err
    if header is None:
        raise OrdersCsvError(f"{source} is empty: expected a header line", hint=HEADER_HELP)
    names = [cell.strip().lstrip("\ufeff").strip() for cell in header]
    where_header = f"{source}, header (line {reader.line_num})"
    for name in names:
        if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise OrdersCsvError(f"{where_header}: unknown column {name!r}", hint=HEADER_HELP)
        if names.count(name) > 1:
            raise OrdersCsvError(f"{where_header}: column {name!r} appears twice")
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise OrdersCsvError(
            f"{where_header}: missing column(s) {', '.join(map(repr, missing))}", hint=HEADER_HELP
        )
    i_id, i_side, i_qty, i_price = (names.index(name) for name in REQUIRED_COLUMNS)
    i_seq = names.index("seq") if "seq" in names else None
    i_node = names.index("node") if "node" in names else None

    # Collect cells column by column: keeping a million row lists alive would make the cyclic
    # garbage collector rescan them over and over.
    width = len(names)
    ids: list[str] = []
    sides: list[str] = []
    quantities: list[str] = []
    prices: list[str] = []
    seqs: list[str] = []
    node_cells: list[str] = []
    line_numbers: list[int] = []
    try:
        for cells in reader:
            if len(cells) != width:
                if not any(cell.strip() for cell in cells):
                    continue  # a blank line
                where = f"{source}, row {len(ids) + 1} (line {reader.line_num})"
                raise OrdersCsvError(
                    f"{where}: expected {width} fields ({','.join(names)}), got {len(cells)}"
                )
            ids.append(cells[i_id])
            sides.append(cells[i_side])
            quantities.append(cells[i_qty])
            prices.append(cells[i_price])
            if i_seq is not None:
                seqs.append(cells[i_seq])
            if i_node is not None:
                node_cells.append(cells[i_node])
            line_numbers.append(reader.line_num)
            if len(ids) > MAX_BOOK_ORDERS:
                raise OrdersCsvError(
                    f"{source}, row {len(ids)} (line {reader.line_num}): a book holds at most "
                    f"{MAX_BOOK_ORDERS} orders"
                )
    except csv.Error as err:
        raise OrdersCsvError(f"{source}, line {reader.line_num}: {err}") from err
    columns = _Columns(ids, sides, quantities, prices, seqs if i_seq is not None else None)
    book = _bulk(columns)
    if book is None:
        # Something is off: check row by row, which raises naming the row and field.
        book = _row_by_row(columns, line_numbers, source)
    return book, (_NodeCells(node_cells, line_numbers) if i_node is not None else None)


@dataclass(frozen=True)
class _NodeCells:
    """The ``node`` column's cells and each data row's line in the file."""

    cells: list[str]
    line_numbers: list[int]


def _locate(cells: _NodeCells | None, grid: Grid, source: str) -> tuple[str, ...] | None:
    """Each row's node id (an empty cell: the root); None without a node column.

    Raises :class:`~market.grid.GridError` ``order.unknown_node`` naming the row, its line
    and the node.
    """
    if cells is None:
        return None
    nodes = tuple(cell.strip() or grid.root for cell in cells.cells)
    unknown = set(nodes) - grid.index.keys()
    if unknown:
        row = next(r for r, node in enumerate(nodes) if node in unknown)
        shown = ", ".join(n.id for n in grid.nodes[:8]) + (", ..." if len(grid) > 8 else "")
        raise GridError(
            "order.unknown_node",
            f"{source}, row {row + 1} (line {cells.line_numbers[row]}), field 'node': "
            f"{nodes[row]!r} is not a node of the grid",
            hint=f"The grid's nodes are {shown}.",
        )
    return nodes


@dataclass(frozen=True)
class _Columns:
    """The raw cells of the data rows, column by column (``seq`` None if no such column)."""

    ids: list[str]
    sides: list[str]
    quantities: list[str]
    prices: list[str]
    seqs: list[str] | None


_DIGIT_LINES = re.compile(r"[0-9\n]*")


def _digits_column(column: list[str], high: int) -> NDArray[np.int64] | None:
    """Column of plain ASCII digit strings as int64, or None if any cell is not that simple.

    None sends the caller to the row-by-row check, which names the bad cell.
    """
    joined = "\n".join(column)
    widest = len(str(high))
    if (
        not _DIGIT_LINES.fullmatch(joined)
        or "\n\n" in joined
        or joined.startswith("\n")
        or joined.endswith("\n")
        or (column and max(map(len, column)) > widest)
    ):
        return None
    try:
        return np.array(column, dtype=np.int64) if column else np.zeros(0, dtype=np.int64)
    except (OverflowError, ValueError):
        return None


def _bulk(columns: _Columns) -> OrderBook | None:
    """The book if every cell is in its plain form and in bounds, else None (fast path)."""
    ids, sides, quantities, prices, seqs = (
        columns.ids,
        columns.sides,
        columns.quantities,
        columns.prices,
        columns.seqs,
    )
    if not set(sides) <= {"buy", "sell"}:
        return None
    quantity = _digits_column(quantities, MAX_QUANTITY_WH)
    price = _digits_column(prices, MAX_PRICE_PER_WH)
    seq = (
        np.arange(1, len(ids) + 1, dtype=np.int64)
        if seqs is None
        else _digits_column(seqs, MAX_SEQ)
    )
    if quantity is None or price is None or seq is None:
        return None
    if (
        (quantity.size and (quantity.min() < MIN_QUANTITY_WH or quantity.max() > MAX_QUANTITY_WH))
        or (price.size and (price.min() < MIN_PRICE_PER_WH or price.max() > MAX_PRICE_PER_WH))
        or (seq.size and (seq.min() < MIN_SEQ or seq.max() > MAX_SEQ))
    ):
        return None
    try:
        return OrderBook(
            ids=ids,
            is_buy=np.array(sides, dtype=object) == "buy",
            quantity_wh=quantity,
            price_per_wh=price,
            seq=seq,
        )
    except InputError:
        return None  # e.g. a bad or duplicate id: let the row-by-row check name its row


def _row_by_row(columns: _Columns, line_numbers: list[int], source: str) -> OrderBook:
    """Check every cell in turn (spaces around cells allowed); raise on the first bad one."""
    ids: list[str] = []
    is_buy: list[bool] = []
    quantities: list[int] = []
    prices: list[int] = []
    seqs: list[int] = []
    first_row: dict[str, int] = {}
    seq_cells = columns.seqs if columns.seqs is not None else [""] * len(columns.ids)
    cells_by_row = zip(
        columns.ids,
        columns.sides,
        columns.quantities,
        columns.prices,
        seq_cells,
        line_numbers,
        strict=True,
    )
    for row, (id_cell, side_cell, qty_cell, price_cell, seq_cell, line) in enumerate(
        cells_by_row, start=1
    ):
        where = f"{source}, row {row} (line {line})"
        order_id = id_cell.strip()
        if not ID_PATTERN.fullmatch(order_id):
            raise OrdersCsvError(
                f"{where}, field 'id': {order_id!r} is not a valid order id",
                hint="An id is 1 to 128 characters from A-Z a-z 0-9 _ . : -",
            )
        if order_id in first_row:
            raise OrdersCsvError(
                f"{where}, field 'id': duplicate id {order_id!r} "
                f"(first in row {first_row[order_id]})"
            )
        first_row[order_id] = row
        side = side_cell.strip().lower()
        if side not in ("buy", "sell"):
            raise OrdersCsvError(
                f"{where}, field 'side': {side_cell.strip()!r} is not a side; use 'buy' or 'sell'"
            )
        ids.append(order_id)
        is_buy.append(side == "buy")
        quantities.append(
            _parse_int(qty_cell.strip(), "quantity_wh", MIN_QUANTITY_WH, MAX_QUANTITY_WH, where)
        )
        prices.append(
            _parse_int(price_cell.strip(), "price", MIN_PRICE_PER_WH, MAX_PRICE_PER_WH, where)
        )
        seq_text = seq_cell.strip()
        seqs.append(_parse_int(seq_text, "seq", MIN_SEQ, MAX_SEQ, where) if seq_text else row)
    return OrderBook(
        ids=ids,
        is_buy=np.array(is_buy, dtype=np.bool_),
        quantity_wh=np.array(quantities, dtype=np.int64),
        price_per_wh=np.array(prices, dtype=np.int64),
        seq=np.array(seqs, dtype=np.int64),
    )


def read_orders_csv(path: str | Path) -> OrderBook:
    """Read and parse the orders CSV file at ``path`` (UTF-8, optional BOM).

    Raises :class:`OrdersCsvError` for bad content and :class:`InputError` when the file
    cannot be read.
    """
    return parse_orders_bytes(_read(path), str(path))


def parse_orders_bytes(data: bytes, source: str = "orders") -> OrderBook:
    """Parse the bytes of an orders CSV file (UTF-8, optional BOM) into an OrderBook."""
    return parse_orders_csv(io.StringIO(_decode(data, source), newline=""), source)


def parse_located_orders_bytes(
    data: bytes, grid: Grid, source: str = "orders"
) -> tuple[OrderBook, tuple[str, ...] | None]:
    """Parse an orders CSV whose optional ``node`` column places each order on ``grid``.

    Returns the book and each row's node id, or None when there is no ``node`` column (every
    order at the root). Raises :class:`OrdersCsvError`, or
    :class:`~market.grid.GridError` ``order.unknown_node`` naming the row.
    """
    book, cells = _parse(io.StringIO(_decode(data, source), newline=""), source)
    return book, _locate(cells, grid, source)


def read_located_orders_csv(
    path: str | Path, grid: Grid
) -> tuple[OrderBook, tuple[str, ...] | None]:
    """:func:`parse_located_orders_bytes` of the file at ``path``."""
    return parse_located_orders_bytes(_read(path), grid, str(path))


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read the orders file: {err.strerror}") from err


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise OrdersCsvError(
            f"{source}: not UTF-8 text (byte {err.start}): {err.reason}",
        ) from err
