"""Benchmark of the clearing engine, printing ratios measured in one run (a benchmark, not a test).

For fixed-seed random books of 10k, 100k and 1M orders (half bids, half asks, overlapping
price ranges) it prints the median time of ``clear(book)`` including every trade pair, the
median time of a stable argsort of the same price keys (bids' ``-price``, asks' ``price``),
and their ratio. Absolute times on a shared machine are noise; the ratio to argsort is the
number to watch (target: 1M orders in <= 1 s and <= 5x argsort on 2 cores).

Grid clearing (docs/grid.md): the 100k book spread over a fixed-seed 50-node tree (edges
with caps that bind and fees), ``clear_grid`` against ``clear`` of the same book in the same
run (target: <= 1 s and within 10x of the single-zone clear).

Peers on the same 10k book: ASSUME's pay-as-clear and pymarket's Huang auction, each in a
throwaway venv made by ``bench/peers_clearing.py`` (never a project dependency). They run when
their venvs exist, or with ``--peers``, which installs them first (from PyPI); otherwise the
bench prints that they were skipped.

Usage::

    .venv/bin/python bench/clearing.py [--sizes 10000,100000,1000000] [--peers | --no-peers]
        [--grid-orders 100000] [--grid-nodes 50]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import peers_clearing

from market.clearing import clear
from market.grid import Grid, check_grid
from market.grid_clearing import clear_grid
from market.orders import OrderBook

SEED = 20_250_101
PRICE_TICK = 10**11  # 0.0001 currency/kWh in base units per Wh
PEER_SIZE = 10_000


def make_columns(n: int, seed: int = SEED) -> dict[str, object]:
    """Columns of a random book: n/2 bids at 0.05-0.40 and n/2 asks at 0.02-0.35 currency/kWh.

    Prices are on a 0.0001 currency/kWh grid (so equal prices are common), quantities 1 Wh to
    50 kWh, and orders arrive (seq) in an order unrelated to price.
    """
    rng = np.random.default_rng(seed + n)
    is_buy = np.zeros(n, dtype=np.bool_)
    is_buy[rng.permutation(n)[: n // 2]] = True
    ticks = np.where(is_buy, rng.integers(500, 4001, n), rng.integers(200, 3501, n))
    return {
        "ids": [f"o{i}" for i in range(n)],
        "is_buy": is_buy,
        "quantity_wh": rng.integers(1, 50_001, n),
        "price_per_wh": ticks * PRICE_TICK,
        "seq": np.arange(n),
    }


def make_grid(n_nodes: int, n_orders: int, seed: int = SEED) -> tuple[Grid, list[str]]:
    """A random tree of ``n_nodes`` and a node for each of ``n_orders`` orders.

    Node ``i`` hangs below one of the 8 nodes made before it (a bushy tree some 8-12 levels
    deep); each edge has export and import caps of 200 kWh to 3 MWh, about a tenth to a
    hundredth of the book's traded volume, so many bind, and a fee of 0 to 0.0004
    currency/kWh. Orders sit at uniformly random nodes.
    """
    rng = np.random.default_rng(seed + n_nodes)
    nodes = []
    for i in range(n_nodes):
        cap = None if i == 0 else int(rng.integers(200_000, 3_000_001))
        nodes.append(
            {
                "id": f"n{i:03d}",
                "parent": None if i == 0 else f"n{int(rng.integers(max(0, i - 8), i)):03d}",
                "export_cap_wh": cap,
                "import_cap_wh": cap,
                "fee_per_wh": 0 if i == 0 else int(rng.integers(0, 5)) * PRICE_TICK,
            }
        )
    grid = check_grid({"version": 1, "interval": 1, "nodes": nodes})
    where = [f"n{v:03d}" for v in rng.integers(0, n_nodes, n_orders).tolist()]
    return grid, where


def make_book(n: int, seed: int = SEED) -> OrderBook:
    """The book of :func:`make_columns`, checked."""
    return OrderBook(**make_columns(n, seed))  # type: ignore[arg-type]


def median_time(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``action`` over ``repeats`` runs, after one warm-up run."""
    action()
    times = []
    for _ in range(repeats):
        gc.collect()
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def repeats_for(n: int) -> int:
    return 31 if n <= 10_000 else 11 if n <= 100_000 else 7


def write_csv(book: OrderBook, path: Path) -> None:
    side = np.where(book.is_buy, "buy", "sell").tolist()
    with path.open("w") as handle:
        handle.write("id,side,quantity_wh,price,seq\n")
        for row in zip(
            book.ids,
            side,
            book.quantity_wh.tolist(),
            book.price_per_wh.tolist(),
            book.seq.tolist(),
            strict=True,
        ):
            handle.write(",".join(map(str, row)) + "\n")


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f} ms"


def grid_benchmark(books: dict[int, OrderBook], n_orders: int, n_nodes: int) -> str:
    """Time grid clearing against single-zone clearing of one book; print; return a summary."""
    book = books.get(n_orders) or make_book(n_orders)
    grid, where = make_grid(n_nodes, n_orders)
    result = clear_grid(book, grid, where)
    single = clear(book)
    repeats = repeats_for(n_orders)
    grid_s = median_time(partial(clear_grid, book, grid, where), repeats)
    single_s = median_time(partial(clear, book), repeats)
    at_cap = sum(
        1
        for node, flow in zip(grid.nodes, result.flows_wh, strict=True)
        if flow != 0 and flow in (node.export_cap_wh, -(node.import_cap_wh or 0))
    )
    print(
        f"grid: {label(n_orders)} orders on a {n_nodes}-node tree: "
        f"clear_grid {ms(grid_s).strip()}, "
        f"single-zone clear of the same book {ms(single_s).strip()}, ratio "
        f"{grid_s / single_s:.2f}x; {len(result.trade_quantity_wh):,} trades, "
        f"{result.volume_wh / 1000:,.3f} kWh (single zone {single.volume_wh / 1000:,.3f} kWh), "
        f"{at_cap} edges at a cap"
    )
    return (
        f"grid {label(n_orders)} orders x {n_nodes} nodes {grid_s:.3f} s = "
        f"{grid_s / single_s:.2f}x single-zone"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--peers", action="store_true", help="install missing peers, then run")
    group.add_argument("--no-peers", action="store_true", help="do not run the peers")
    parser.add_argument("--grid-orders", type=int, default=100_000)
    parser.add_argument("--grid-nodes", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(
        f"clearing benchmark: seed {SEED}, numpy {np.__version__}, python {sys.version.split()[0]}"
    )
    print(
        f"{'orders':>9} {'book check':>12} {'clear':>12} {'argsort':>12} {'ratio':>7} "
        f"{'trades':>9} {'volume kWh':>12}"
    )
    timings: dict[int, tuple[float, float]] = {}
    books: dict[int, OrderBook] = {}
    for n in sizes:
        columns = make_columns(n)
        began = time.perf_counter()
        book = OrderBook(**columns)  # type: ignore[arg-type]
        build = time.perf_counter() - began
        books[n] = book
        keys = np.where(book.is_buy, -book.price_per_wh, book.price_per_wh)
        result = clear(book)
        clear_s = median_time(partial(clear, book), repeats_for(n))
        sort_s = median_time(partial(np.argsort, keys, kind="stable"), repeats_for(n))
        timings[n] = (clear_s, sort_s)
        print(
            f"{label(n):>9} {ms(build)[:-3]:>9} ms {ms(clear_s)} {ms(sort_s)} "
            f"{clear_s / sort_s:6.2f}x {len(result.trade_quantity_wh):>9,} "
            f"{result.volume_wh / 1000:>12,.3f}"
        )

    summary = []
    largest = max(sizes)
    clear_s, sort_s = timings[largest]
    summary.append(f"{label(largest)} orders {clear_s:.3f} s = {clear_s / sort_s:.2f}x argsort")
    summary.append(grid_benchmark(books, args.grid_orders, args.grid_nodes))

    if args.no_peers or PEER_SIZE not in books:
        reason = "--no-peers" if args.no_peers else f"no {label(PEER_SIZE)} book in --sizes"
        print(f"peers: skipped ({reason})")
        summary.append("peers skipped")
    else:
        ours = timings[PEER_SIZE][0]
        ours_volume = clear(books[PEER_SIZE]).volume_wh / 1000
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "book.csv"
            write_csv(books[PEER_SIZE], path)
            records = peers_clearing.run(
                str(path), {"assume": 3, "pymarket": 3}, install=args.peers
            )
        print(
            f"peers on the same {label(PEER_SIZE)} book (ours: {ms(ours).strip()}, "
            f"{ours_volume:,.3f} kWh):"
        )
        ratios = []
        for record in records:
            name = str(record["label"])
            if "median_s" in record:
                peer_s = float(record["median_s"])  # type: ignore[arg-type]
                ratio = peer_s / ours
                volume = float(record["volume_kwh"])  # type: ignore[arg-type]
                runs = len(record["times_s"])  # type: ignore[arg-type]
                print(
                    f"  {name} {record['version']}: median {peer_s:.3f} s of {runs} runs, "
                    f"{volume:,.3f} kWh traded; ours is {ratio:,.0f}x faster"
                )
                if abs(volume - ours_volume) > 0.01 * ours_volume:
                    print(
                        f"    note: {name} traded {volume:,.3f} kWh where the book clears "
                        f"{ours_volume:,.3f} kWh"
                    )
                ratios.append(f"{ratio:,.0f}x {name}")
            else:
                why = record.get("skipped") or record.get("error")
                print(f"  {name}: skipped: {why}")
                ratios.append(f"{name} skipped")
        summary.append(f"{label(PEER_SIZE)}: " + ", ".join(ratios))
    print("clearing: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
