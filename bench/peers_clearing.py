"""Time peer clearing engines on one order book, each in a throwaway venv (never a dependency).

Peers:

* ``assume``: ASSUME's pay-as-clear (pip ``assume-framework``),
  ``assume.markets.clearing_algorithms.simple.PayAsClearRole.clear``;
* ``pymarket``: pymarket's Huang auction (pip ``pymarket==0.7.6`` with ``pandas<3``), called
  as ``pymarket.mechanisms.huang_auction.huang_auction`` directly, because ``Market.run`` was
  seen to drop trades.

Usage::

    python bench/peers_clearing.py setup          # create the venvs under /tmp (PyPI only)
    python bench/peers_clearing.py run BOOK.csv   # one JSON line per peer on stdout

``BOOK.csv`` is in the wattledger orders format (``id,side,quantity_wh,price,seq``). Each
peer gets the same orders in its own units (kWh or MW as floats, currency/kWh as floats);
converting and building its input is not timed, only its clearing call. A peer that cannot be
installed or run reports the error in its JSON line instead of a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

VENV_ROOT = Path(os.environ.get("WATTLEDGER_PEERS_VENV", "/tmp/wattledger-peers-venv"))
PEERS: dict[str, list[str]] = {
    "assume": ["assume-framework"],
    "pymarket": ["pymarket==0.7.6", "pandas<3"],
}
LABELS = {"assume": "ASSUME pay-as-clear", "pymarket": "pymarket Huang"}


def venv_python(peer: str) -> Path:
    return VENV_ROOT / peer / "bin" / "python"


def is_set_up(peer: str) -> bool:
    return (VENV_ROOT / peer / ".installed").exists()


def setup(peer: str) -> str | None:
    """Create the peer's venv and install it; return None, or the error text."""
    directory = VENV_ROOT / peer
    if is_set_up(peer):
        return None
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", "--clear", str(directory)],
        [str(venv_python(peer)), "-m", "pip", "install", "--quiet", *PEERS[peer]],
    ]
    for step in steps:
        print(f"peers: {' '.join(step)}", file=sys.stderr)
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = [
                ln for ln in (done.stderr + done.stdout).splitlines() if "is ignored" not in ln
            ]
            return "\n".join(lines[-15:])
    (directory / ".installed").write_text(" ".join(PEERS[peer]) + "\n")
    return None


# ----------------------------------------------------------------------------------------
# Worker: runs inside the peer's venv; stdlib + the peer's own packages only.


def _read_book(path: str) -> list[dict[str, object]]:
    import csv

    with open(path, newline="") as handle:
        return [
            {
                "id": row["id"],
                "buy": row["side"] == "buy",
                "kwh": int(row["quantity_wh"]) / 1000,
                # base units per Wh -> currency per kWh
                "price": int(row["price"]) / 10**15,
                "seq": int(row["seq"]),
            }
            for row in csv.DictReader(handle)
        ]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _time_assume(book: list[dict[str, object]], repeats: int) -> dict[str, object]:
    import copy
    import logging
    import time
    from datetime import datetime, timedelta
    from importlib.metadata import version

    logging.disable(logging.WARNING)
    from assume.common.market_objects import MarketConfig, MarketProduct
    from assume.markets.clearing_algorithms.simple import PayAsClearRole
    from dateutil import rrule

    start = datetime(2025, 1, 1)
    end = start + timedelta(hours=1)
    config = MarketConfig(
        market_id="bench",
        opening_hours=rrule.rrule(rrule.HOURLY, dtstart=start, until=start + timedelta(days=1)),
        market_products=[MarketProduct(timedelta(hours=1), 1, timedelta(hours=0))],
        maximum_bid_price=1e9,
        minimum_bid_price=0,
        maximum_bid_volume=1e12,
    )
    orders = [
        {
            "start_time": start,
            "end_time": end,
            "only_hours": None,
            "price": o["price"],
            # ASSUME: supply is positive volume, demand negative (MW over one hour = MWh).
            "volume": -o["kwh"] / 1000 if o["buy"] else o["kwh"] / 1000,  # type: ignore[operator]
            "agent_addr": ("bench", str(o["id"])),
            "bid_id": str(o["id"]),
            "node": "node0",
        }
        for o in book
    ]
    times = []
    volume = 0.0
    for _ in range(repeats):
        fresh = copy.deepcopy(orders)  # clear() mutates its orders
        role = PayAsClearRole(config)
        began = time.perf_counter()
        accepted, _rejected, meta, _flows = role.clear(fresh, [(start, end, None)])
        times.append(time.perf_counter() - began)
        volume = sum(o["accepted_volume"] for o in accepted if o["volume"] > 0) * 1000
    return {
        "version": version("assume-framework"),
        "times_s": times,
        "median_s": _median(times),
        "volume_kwh": volume,
        "price_per_kwh": meta[0]["max_price"] if meta else None,
    }


def _time_pymarket(book: list[dict[str, object]], repeats: int) -> dict[str, object]:
    import time
    from importlib.metadata import version

    import pymarket
    from pymarket.mechanisms.huang_auction import huang_auction

    manager = pymarket.BidManager()
    for user, o in enumerate(book):
        manager.add_bid(o["kwh"], o["price"], user, buying=o["buy"], time=o["seq"])
    bids = manager.get_df()
    times = []
    extra: dict[str, object] = {}
    for _ in range(repeats):
        began = time.perf_counter()
        _transactions, extra = huang_auction(bids)
        times.append(time.perf_counter() - began)
    return {
        "version": version("pymarket"),
        "times_s": times,
        "median_s": _median(times),
        "volume_kwh": float(extra.get("quantity_traded", 0)),  # type: ignore[arg-type]
        "price_per_kwh": [extra.get("price_buy"), extra.get("price_sell")],
    }


def worker(peer: str, path: str, repeats: int) -> None:
    book = _read_book(path)
    timer = {"assume": _time_assume, "pymarket": _time_pymarket}[peer]
    result = timer(book, repeats)
    print(json.dumps({"peer": peer, "orders": len(book), **result}))


# ----------------------------------------------------------------------------------------


def run(path: str, repeats: dict[str, int], install: bool) -> list[dict[str, object]]:
    """Time every peer on the book at ``path``; return one record per peer."""
    records: list[dict[str, object]] = []
    for peer in PEERS:
        record: dict[str, object] = {"peer": peer, "label": LABELS[peer]}
        if not is_set_up(peer):
            if not install:
                record["skipped"] = f"not installed (run: python {__file__} setup)"
                records.append(record)
                continue
            error = setup(peer)
            if error is not None:
                record["error"] = f"install failed: {error}"
                records.append(record)
                continue
        done = subprocess.run(
            [
                str(venv_python(peer)),
                str(Path(__file__).resolve()),
                "_worker",
                peer,
                str(Path(path).resolve()),
                str(repeats[peer]),
            ],
            cwd=VENV_ROOT,  # peers write log files into their working folder
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            record["error"] = "\n".join(done.stderr.strip().splitlines()[-8:])
        else:
            record.update(json.loads(done.stdout.strip().splitlines()[-1]))
        records.append(record)
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help=f"create the peer venvs under {VENV_ROOT}")
    run_parser = commands.add_parser("run", help="time every peer on BOOK.csv")
    run_parser.add_argument("book")
    run_parser.add_argument("--repeats", type=int, default=3)
    run_parser.add_argument("--install", action="store_true", help="set up missing peers")
    work = commands.add_parser("_worker")
    work.add_argument("peer", choices=sorted(PEERS))
    work.add_argument("book")
    work.add_argument("repeats", type=int)
    args = parser.parse_args()
    if args.command == "setup":
        failed = 0
        for peer in PEERS:
            error = setup(peer)
            print(f"{peer}: {'ok' if error is None else 'FAILED: ' + error}")
            failed += error is not None
        return 1 if failed else 0
    if args.command == "_worker":
        worker(args.peer, args.book, args.repeats)
        return 0
    repeats = dict.fromkeys(PEERS, args.repeats)
    for record in run(args.book, repeats, args.install):
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
