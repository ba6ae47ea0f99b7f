"""``wattledger clear``: clear one interval's order book from a CSV file and print JSON.

The CSV and JSON formats are those of DESIGN §4 (see :mod:`market.orders_csv` and
:meth:`market.clearing.ClearingResult.to_json_dict`); with ``--grid`` those of docs/grid.md
(a ``node`` column, and :meth:`market.grid_clearing.GridClearingResult.to_json_dict`).
Everything is parsed and cleared before anything is written, and ``--output`` replaces its
file atomically, so a bad input never leaves a half-written result.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ledger.errors import InputError
from market.clearing import DEFAULT_K, MECHANISMS, ClearingResult, clear
from market.grid import Grid, GridError, parse_grid, single_node_grid
from market.grid_clearing import GridClearingResult, clear_grid
from market.orders_csv import parse_located_orders_bytes, read_located_orders_csv

DESCRIPTION = """\
Clear one interval's order book with the double auction of DESIGN §4 and print the result as
JSON on stdout (or write it to --output).

ORDERS.csv has the header id,side,quantity_wh,price[,seq]: side is buy or sell, quantity_wh
a whole number of Wh, price a whole number of token base units per Wh (0.25 currency/kWh is
250000000000000), seq the arrival sequence (default: the row number). Use - for stdin.

The JSON has price (null when nothing trades, and for pay-as-bid), volume_wh, trades (a list
of {buy, sell, quantity_wh, price} with order ids as strings) and fills (order id -> Wh).
Bad input exits with code 2 and names the row and field; nothing is written.

--grid GRID.json clears on a radial grid (docs/grid.md): nodes with export/import caps and
fees per Wh on the edge to their parent. An optional node column places each order (default:
the root). The JSON then also has sell_price on each trade (price is what the buyer pays),
node_prices (node -> price or null), flows (node -> net Wh exported towards the root) and
grid {root: gridRoot, fee_revenue, congestion_rent}; price is the root's price. Without
--grid the book is one node named root.
"""

_K_PATTERN = re.compile(r"([0-9]{1,30})(?:/([0-9]{1,30}))?")


def register(subparsers: Any) -> None:
    """Add the ``clear`` subcommand to the ``wattledger`` parser."""
    parser = subparsers.add_parser(
        "clear",
        help="clear an order book CSV with the double auction and print the result as JSON",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("orders", metavar="ORDERS.csv", help="the order book CSV file, or -")
    parser.add_argument(
        "--mechanism",
        choices=MECHANISMS,
        default="uniform",
        help="uniform: one k-double-auction price for every trade; "
        "pay-as-bid: each trade at its bid's limit price (default: uniform)",
    )
    parser.add_argument(
        "--k",
        metavar="NUM/DEN",
        default=None,
        help=f"where the uniform price lies between L and U: 0 gives L, 1 gives U "
        f"(default {DEFAULT_K[0]}/{DEFAULT_K[1]}; uniform only)",
    )
    parser.add_argument(
        "--grid",
        metavar="GRID.json",
        default=None,
        help="clear on this grid document (docs/grid.md); orders sit at their CSV node column",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="write the JSON to FILE (atomically replaced) instead of stdout",
    )
    parser.set_defaults(handler=run)


def parse_k(text: str) -> tuple[int, int]:
    """Parse ``--k``: ``NUM/DEN`` (or a whole ``0``/``1``) with ``0 <= NUM <= DEN``."""
    match = _K_PATTERN.fullmatch(text.strip())
    if not match:
        raise InputError(f"--k: {text!r} is not a fraction NUM/DEN such as 1/2")
    num = int(match.group(1))
    den = int(match.group(2)) if match.group(2) is not None else 1
    if den == 0 or num > den:
        raise InputError(f"--k: {text} must be a fraction from 0 to 1 with a nonzero denominator")
    return num, den


def json_chunks(result: ClearingResult) -> Iterator[str]:
    """The result as JSON text in pieces, one trade and one fill per line.

    It parses to exactly :meth:`ClearingResult.to_json_dict` (same keys, same order of trades
    and fills). It is built straight from the result's arrays, so a million trades need
    neither a dict per trade nor one giant string. Order ids need no escaping: they are
    checked to be ``[A-Za-z0-9_.:-]`` (see :mod:`market.orders`).
    """
    ids = result.book.ids
    yield "{\n"
    yield f'  "price": {json.dumps(result.price)},\n'
    yield f'  "volume_wh": {int(result.volume_wh)},\n'
    trades = zip(
        result.trade_buy_rows.tolist(),
        result.trade_sell_rows.tolist(),
        result.trade_quantity_wh.tolist(),
        result.trade_price_per_wh.tolist(),
        strict=True,
    )
    lines = (
        f'    {{"buy": "{ids[b]}", "sell": "{ids[s]}", "quantity_wh": {q}, "price": {p}}}'
        for b, s, q, p in trades
    )
    yield from _joined('  "trades": [', lines, "]")
    yield ",\n"
    fill = result.fill_wh.tolist()
    rows = sorted(range(len(ids)), key=ids.__getitem__)
    yield from _joined('  "fills": {', (f'    "{ids[r]}": {fill[r]}' for r in rows), "}")
    yield "\n}\n"


def grid_json_chunks(result: GridClearingResult) -> Iterator[str]:
    """A grid result as JSON text in pieces; parses to exactly its ``to_json_dict()``."""
    ids = result.book.ids
    yield "{\n"
    yield f'  "price": {json.dumps(result.price)},\n'
    yield f'  "volume_wh": {int(result.volume_wh)},\n'
    trades = zip(
        result.trade_buy_rows.tolist(),
        result.trade_sell_rows.tolist(),
        result.trade_quantity_wh.tolist(),
        result.trade_price_per_wh.tolist(),
        result.trade_sell_price_per_wh.tolist(),
        strict=True,
    )
    lines = (
        f'    {{"buy": "{ids[b]}", "sell": "{ids[s]}", "quantity_wh": {q}, "price": {p}, '
        f'"sell_price": {sp}}}'
        for b, s, q, p, sp in trades
    )
    yield from _joined('  "trades": [', lines, "]")
    yield ",\n"
    fill = result.fill_wh.tolist()
    rows = sorted(range(len(ids)), key=ids.__getitem__)
    yield from _joined('  "fills": {', (f'    "{ids[r]}": {fill[r]}' for r in rows), "}")
    yield ",\n"
    grid = result.grid
    prices = (
        f'    "{n.id}": {json.dumps(p)}'
        for n, p in zip(grid.nodes, result.node_prices, strict=True)
    )
    yield from _joined('  "node_prices": {', prices, "}")
    yield ",\n"
    flows = (
        f'    "{n.id}": {z}'
        for i, (n, z) in enumerate(zip(grid.nodes, result.flows_wh, strict=True))
        if i != grid.root_index
    )
    yield from _joined('  "flows": {', flows, "}")
    yield ",\n"
    yield (
        f'  "grid": {{"root": "{grid.grid_root_hex}", '
        f'"fee_revenue": {result.fee_revenue_base_units}, '
        f'"congestion_rent": {result.congestion_rent_base_units}}}\n'
    )
    yield "}\n"


def _joined(opening: str, items: Iterator[str], closing: str) -> Iterator[str]:
    """``opening``, the items one per line separated by commas, then ``closing``."""
    yield opening
    first = True
    for item in items:
        yield ("\n" if first else ",\n") + item
        first = False
    yield closing if first else "\n  " + closing


def _write_atomically(path: Path, chunks: Iterator[str]) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"--output: directory {str(directory)!r} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(chunks)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    """Run ``wattledger clear``; return the exit code (bad input raises InputError)."""
    out = stdout if stdout is not None else sys.stdout
    if args.k is not None and args.mechanism != "uniform":
        raise InputError("--k: applies to the uniform mechanism only")
    k = parse_k(args.k) if args.k is not None else DEFAULT_K
    grid = read_grid(args.grid) if args.grid is not None else single_node_grid()
    if args.orders == "-":
        book, nodes = parse_located_orders_bytes(sys.stdin.buffer.read(), grid, "<stdin>")
    else:
        book, nodes = read_located_orders_csv(args.orders, grid)
    result: ClearingResult | GridClearingResult
    if args.grid is None:
        # One node: clear_grid would give the same (docs/grid.md P7); keep DESIGN §4's JSON.
        result = clear(book, mechanism=args.mechanism, k=k)
        chunks = json_chunks(result)
    else:
        result = clear_grid(book, grid, nodes, mechanism=args.mechanism, k=k)
        chunks = grid_json_chunks(result)
    if args.output is None:
        try:
            out.writelines(chunks)
            out.flush()
        except BrokenPipeError:
            # The reader went away (e.g. `| head`); stop quietly, as other tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            return 1
        return 0
    target = Path(args.output)
    _write_atomically(target, chunks)
    price = "null" if result.price is None else str(result.price)
    on_grid = "" if args.grid is None else f" on {len(grid)} grid nodes"
    print(
        f"wattledger: cleared {len(book)} orders{on_grid}: {result.volume_wh} Wh in "
        f"{len(result.trade_quantity_wh)} trades, price {price}; wrote {target}",
        file=sys.stderr,
    )
    return 0


def read_grid(path: str) -> Grid:
    """Read a grid document for the command line: any JSON layout and node order is accepted
    (a hand-written file); the result's gridRoot hashes its canonical bytes."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"--grid: cannot read {path}: {err.strerror}") from err
    try:
        return parse_grid(data, require_canonical=False, source=path)
    except GridError as err:
        err.message = f"--grid: {err.message}"
        raise
