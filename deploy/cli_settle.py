"""``wattledger settle``: run the settlement service on its own, or print a settlement report.

The same service also runs inside ``wattledger serve`` (:func:`add_serve_arguments` and
:func:`settlement_for_serve` are its hooks there).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from eth_account.signers.local import LocalAccount
from fastapi import APIRouter

from chain.canonical import resolve_finality
from chain.client import LedgerClient
from chain.connection import Chain, connect
from chain.deployment import Deployment, read_deployment
from chain.fee_cap import FeeCap, format_gwei, gwei_to_wei
from chain.finality import DEFAULT_CONFIRMATIONS, parse_finality
from chain.rpc import request_lock, serialize_requests
from deploy.cli_args import non_negative_int, positive_int
from deploy.cli_keys import add_key_arguments, key_source
from ledger.errors import InputError
from settlement.chain_reader import ChainReader
from settlement.config import (
    DEFAULT_BLOCK_SECONDS,
    DEFAULT_MAX_READING_WH,
    MIN_READING_MARGIN_SECONDS,
    READING_MARGIN_BLOCKS,
    SettlementConfig,
)
from settlement.journal import TxCosts
from settlement.runner import SettlementRunner
from settlement.service import SettlementService
from settlement.store import FAILED, ReadingStore
from settlement.tx import TxPolicy, TxSender

HELP = "run the settlement service: meter readings, batched submission, chunked settlement"
DESCRIPTION = """\
Settle delivered intervals on-chain (DESIGN §5): for each committed interval, put the
meter-signed readings it received on-chain in batches while the reading window is open, then,
after the reading deadline, call EnergyMarket.settle in chunks until the interval is Settled.
Every step first reads the chain (readings on-chain, the settle cursor) and every transaction
is journalled in the SQLite store (--db) before it is sent, so a restart at any point neither
repeats nor skips anything. The same service runs inside `wattledger serve`.

Without --watch, everything that is due now is done once and the command exits (status 1 if
an interval failed). With --watch it keeps going; with --port it also serves the settlement
API: POST /meter-readings and POST /meter-readings:batch (EIP-712 readings signed by the
meter key, one or many per request) and GET /intervals/{t}/settlement.

Transactions are sent from the settlement account: the encrypted keystore --keystore PATH
(password from --password-file PATH, or asked on the terminal), else the private key in
$WATTLEDGER_SETTLER_KEY (on a local dev chain, or with --allow-env-keys), else one of the
chain's development accounts (--settler-account, default the last one). It pays gas only;
anyone may settle. --max-fee-gwei and --max-priority-fee-gwei cap what it pays per gas:
while the base fee is above the cap nothing is sent, and the service says so and waits.

--report T prints the reconciliation report of interval T from on-chain events, checked
against the settlement model (status 1 when a check fails); --json prints it as JSON.

Examples:
  wattledger settle --rpc-url http://127.0.0.1:8545                 # settle what is due
  wattledger settle --rpc-url http://127.0.0.1:8545 --watch --port 8001
  wattledger settle --rpc-url http://127.0.0.1:8545 --report 1963 --json
"""

SETTLER_KEY_ENV = "WATTLEDGER_SETTLER_KEY"

log = logging.getLogger("wattledger.settle")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _fraction(text: str) -> tuple[int, int]:
    num, _, den = text.partition("/")
    try:
        pair = (int(num), int(den or "1"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NUM/DEN such as 1/2, got {text!r}") from None
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return pair


def _meter_limit(text: str) -> tuple[str, int]:
    address, _, wh = text.partition("=")
    if len(address) != 42 or not address.startswith("0x") or not wh.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDRESS=WH, got {text!r}")
    return address.lower(), int(wh)


def add_common_arguments(parser: argparse._ActionsContainer, *, prefix: str = "") -> None:
    """Options shared by ``settle`` and ``serve``: limits, batching, the settlement account."""
    parser.add_argument(
        "--max-reading-wh",
        type=positive_int,
        default=DEFAULT_MAX_READING_WH,
        metavar="WH",
        help="physical maximum of a meter's import or export in one interval; readings above "
        f"it are refused (default {DEFAULT_MAX_READING_WH:,} Wh = 10 MWh)",
    )
    parser.add_argument(
        "--meter-limit",
        type=_meter_limit,
        action="append",
        default=[],
        metavar="ADDRESS=WH",
        help="a participant's own maximum per interval (repeatable)",
    )
    parser.add_argument(
        "--settler-account",
        type=int,
        metavar="INDEX",
        help=f"development account that sends settlement transactions (default: the last; "
        f"a keystore or ${SETTLER_KEY_ENV} overrides)",
    )
    parser.add_argument(
        "--confirmations",
        type=parse_finality,
        metavar="N|finalized|safe",
        help="when a transaction counts as done: N blocks on top of it, or once the node's "
        "finalized (or safe) block holds it; the settlement service (in serve also the "
        "market: an interval is published as committed only then) marks a step done only "
        "then, and sends again what a reorganisation dropped (default: 0 on a dev chain, "
        "else finalized where the node has it, else "
        f"{DEFAULT_CONFIRMATIONS})",
    )
    parser.add_argument(
        "--max-fee-gwei",
        dest="max_fee_wei",
        type=gwei_to_wei,
        metavar="GWEI",
        help="cap of the EIP-1559 maxFeePerGas of settlement transactions (in serve also of "
        "the market's commits and registrations), gwei (to 1 wei; default: no cap): while the "
        "base fee plus the tip is above it nothing is sent, the service says so and waits, "
        "and a fee bump never goes above it",
    )
    parser.add_argument(
        "--max-priority-fee-gwei",
        dest="max_priority_fee_wei",
        type=gwei_to_wei,
        metavar="GWEI",
        help="cap of maxPriorityFeePerGas (the tip), gwei (default: no cap)",
    )
    parser.add_argument(
        "--gas-fraction",
        type=_fraction,
        default=(1, 2),
        metavar="NUM/DEN",
        help="share of the block gas limit one transaction may use (default 1/2)",
    )
    parser.add_argument(
        "--max-batch-readings",
        type=positive_int,
        default=1_000,
        metavar="N",
        help="most readings per submitReadings transaction (default 1,000; gas decides first)",
    )
    parser.add_argument(
        "--max-settle-trades",
        type=positive_int,
        default=5_000,
        metavar="N",
        help="most trades per settle chunk (default 5,000; gas decides first)",
    )
    parser.add_argument(
        "--receipt-timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="seconds to wait for a receipt before replacing a transaction with higher fees "
        "(default 60)",
    )
    parser.add_argument(
        "--block-seconds",
        type=positive_int,
        default=DEFAULT_BLOCK_SECONDS,
        metavar="S",
        help=f"the chain's block time; the reading margin is {READING_MARGIN_BLOCKS} of them, "
        f"at least {MIN_READING_MARGIN_SECONDS} s (default {DEFAULT_BLOCK_SECONDS} s)",
    )
    parser.add_argument(
        "--reading-margin",
        type=non_negative_int,
        metavar="S",
        help="refuse readings this many seconds before an interval's reading deadline, or "
        "closer: time to get them mined (default: from --block-seconds, 36 s for 12 s blocks)",
    )
    parser.add_argument(
        f"--{prefix}poll-seconds",
        dest="settle_poll_seconds",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="how often the settlement loop looks for work (default 2 s)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``settle`` subcommand."""
    parser = subparsers.add_parser(
        "settle",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rpc-url", metavar="URL", help="JSON-RPC endpoint of the chain")
    parser.add_argument(
        "--db",
        metavar="PATH",
        type=Path,
        help="SQLite store of readings and transactions (default settlement-<chainId>.db)",
    )
    parser.add_argument(
        "--deployments-dir",
        metavar="DIR",
        type=Path,
        help="folder of deployment records (default: deployments/ in the project)",
    )
    parser.add_argument("--watch", action="store_true", help="keep settling as intervals fall due")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind with --port")
    parser.add_argument(
        "--port", type=positive_int, help="with --watch: serve the settlement API on this port"
    )
    parser.add_argument(
        "--report", type=int, metavar="T", help="print interval T's reconciliation report"
    )
    parser.add_argument("--json", action="store_true", help="with --report: print JSON")
    parser.add_argument(
        "--retry-failed", action="store_true", help="put failed intervals back in the loop"
    )
    parser.add_argument(
        "--interval",
        type=non_negative_int,
        metavar="T",
        help="settle interval T now, straight through the contract (anyone may, once its "
        "reading deadline has passed): also a commit left unfinished when the operator "
        "vanished between its chunks, which the service does not pick up",
    )
    add_common_arguments(parser)
    add_key_arguments(parser, "the settlement account")
    parser.set_defaults(handler=run)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The settlement options of ``wattledger serve``."""
    group = parser.add_argument_group("settlement service")
    group.add_argument(
        "--settle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the settlement service in this process: POST /meter-readings[:batch], "
        "GET /intervals/{t}/settlement, readings on-chain and settlement in chunks "
        "(default on)",
    )
    group.add_argument(
        "--settlement-db",
        metavar="PATH",
        type=Path,
        help="its SQLite store (default: settlement-<chainId>.db beside the order store)",
    )
    add_common_arguments(group, prefix="settle-")
    add_key_arguments(group, "the settlement account", prefix="settler-", env_rule=False)


# ----------------------------------------------------------------------------- assembly


def settler_account(
    chain: Chain, index: int | None, keystore: LocalAccount | None = None
) -> LocalAccount:
    """The account that sends settlement transactions: ``keystore``'s, else
    ``$WATTLEDGER_SETTLER_KEY``'s (refused off dev chains without ``--allow-env-keys``), else
    the development account ``index`` (see ``--settler-account``)."""
    if keystore is not None:
        return keystore
    key = chain.env_key(SETTLER_KEY_ENV)
    if key:
        from eth_account import Account

        account: LocalAccount = Account.from_key(key)
        return account
    signers = chain.signers
    position = len(signers) - 1 if index is None else index
    if not 0 <= position < len(signers):
        raise InputError(
            f"--settler-account {index}: the chain has {len(signers)} known accounts",
            hint=f"Use 0..{len(signers) - 1}, or pass --keystore PATH of a funded account.",
        )
    return signers[position]


def fee_cap(args: argparse.Namespace) -> FeeCap:
    """The fee caps of parsed options (``--max-fee-gwei``, ``--max-priority-fee-gwei``)."""
    return FeeCap(
        max_fee_wei=getattr(args, "max_fee_wei", None),
        priority_fee_wei=getattr(args, "max_priority_fee_wei", None),
    )


def build_service(
    chain: Chain,
    client: LedgerClient,
    deployment: Deployment,
    db: Path,
    args: argparse.Namespace,
    keystore: LocalAccount | None = None,
) -> SettlementService:
    """Assemble a :class:`SettlementService` from parsed options; ``keystore``: the
    settlement account decrypted from a keystore."""
    settler = settler_account(chain, args.settler_account, keystore)
    if settler.address.lower() == deployment.role("operator").lower():
        log.warning(
            "the settlement account is the operator: its commits and the "
            "settlement transactions will compete for nonces"
        )
    reader = ChainReader(client, start_block=deployment.contracts["EnergyMarket"].block_number)
    store = ReadingStore(db)
    policy = TxPolicy(receipt_timeout_seconds=args.receipt_timeout, fee_cap=fee_cap(args))
    config = SettlementConfig(
        max_reading_wh=args.max_reading_wh,
        meter_limits_wh=dict(args.meter_limit),
        gas_fraction=args.gas_fraction,
        max_batch_readings=args.max_batch_readings,
        max_settle_trades=args.max_settle_trades,
        block_seconds=args.block_seconds,
        deadline_margin_seconds=args.reading_margin,
    )
    return SettlementService(reader, store, TxSender(reader, settler, store, policy), config)


def _embedded_heartbeat(chain: Chain) -> Callable[[], None]:
    """Keep the embedded chain's clock near the wall clock.

    eth-tester stamps a block with the time its predecessor was mined, and mines only when a
    transaction arrives; on a quiet chain the reading window would never close. Mining an
    empty block when chain time lags lets deadlines pass in real time.
    """
    reader_w3 = chain.w3

    def beat() -> None:
        with request_lock(reader_w3):
            pending = int(reader_w3.eth.get_block("pending")["timestamp"])
            if pending < int(time.time()):
                chain.mine(1)

    return beat


def settlement_for_serve(
    args: argparse.Namespace,
    chain: Chain,
    client: LedgerClient,
    deployment: Deployment,
    market_db: Path,
    settler: LocalAccount | None = None,
) -> tuple[list[APIRouter], Callable[[], None]]:
    """Start the settlement service for ``wattledger serve``: its routers and a stop function;
    ``settler``: the settlement account from ``--settler-keystore``."""
    if not args.settle:
        return [], lambda: None
    from settlement.api import settlement_router

    if chain.is_embedded:
        serialize_requests(chain.w3)  # gate closure and settlement share the in-process chain
    db = args.settlement_db or market_db.parent / f"settlement-{chain.chain_id}.db"
    service = build_service(chain, client, deployment, db, args, settler)
    runner = SettlementRunner(
        service,
        args.settle_poll_seconds,
        before_tick=_embedded_heartbeat(chain) if chain.is_embedded else None,
    )
    runner.start()
    print(
        f"settlement service: POST /meter-readings[:batch], GET /intervals/{{t}}/settlement; "
        f"settling "
        f"from {service.sender.address}; reading store {db}",
        file=sys.stderr,
        flush=True,
    )
    return [settlement_router(service)], runner.stop


def _load(
    args: argparse.Namespace,
) -> tuple[Chain, LedgerClient, Deployment, tuple[LocalAccount, ...]]:
    if args.rpc_url is None:
        raise InputError(
            "wattledger settle needs --rpc-url: the embedded chain lives inside one process.",
            hint="`wattledger serve` runs the settlement service on its embedded chain; or "
            "start `wattledger node` and pass --rpc-url http://127.0.0.1:8545.",
        )
    source = key_source(args)
    accounts = source.load()
    chain = connect(args.rpc_url, accounts=accounts, allow_env_keys=source.allow_env_keys)
    chain.finality = resolve_finality(chain, args.confirmations)
    deployment = read_deployment(chain.chain_id, args.deployments_dir)
    if deployment is None:
        raise InputError(
            f"No deployment is recorded for chain {chain.chain_id}.",
            hint="Run `wattledger deploy --rpc-url ...` or `wattledger serve --rpc-url ...` first.",
        )
    if not chain.w3.eth.get_code(deployment.address("EnergyMarket")):
        raise InputError(
            f"The recorded EnergyMarket {deployment.address('EnergyMarket')} has no code on "
            f"chain {chain.chain_id} (a fresh node?).",
            hint="Deploy again, or point --rpc-url at the node that has the deployment.",
        )
    return chain, LedgerClient.from_deployment(chain, deployment), deployment, accounts


def _costs_line(costs: list[TxCosts]) -> str:
    """``gas 123,456, fees 0.000123 ETH (readings 1 tx ..., settle ...)`` for a summary."""
    if not costs:
        return "no transactions of this service mined"
    gas = sum(c.gas_used for c in costs)
    fees = sum(c.fees_paid_wei for c in costs)
    parts = ", ".join(
        f"{c.kind} {c.transactions} tx {c.gas_used:,} gas {c.fees_paid_wei:,} wei" for c in costs
    )
    unpriced = sum(c.unpriced for c in costs)
    note = f"; {unpriced} without a recorded price" if unpriced else ""
    return f"gas used {gas:,}, fees paid {fees:,} wei = {format_gwei(fees)} ({parts}{note})"


def _print_report(
    client: LedgerClient, deployment: Deployment, t: int, as_json: bool, db: Path
) -> int:
    from rich.console import Console

    from settlement.reconciliation import build_report
    from settlement.report_table import render

    reader = ChainReader(client, start_block=deployment.contracts["EnergyMarket"].block_number)
    events = reader.interval_events(t)
    if not events.committed:
        raise InputError(f"interval {t} was never committed on this market; nothing to report.")
    report = build_report(events)
    costs: list[TxCosts] | None = None
    if db.is_file():
        store = ReadingStore(db)
        try:
            costs = store.costs(t)
        finally:
            store.close()
    if as_json:
        body = report.to_json()
        body["costs"] = None if costs is None else [c.to_json() for c in costs]
        print(json.dumps(body, indent=2))
    else:
        Console().print(render(report))
        if costs is None:
            print(f"transaction costs: no settlement store at {db} (--db)")
        else:
            print(f"transaction costs of this service (store {db}): {_costs_line(costs)}")
    return 0 if report.ok else 1


def _summary(service: SettlementService) -> list[str]:
    lines = []
    for row in service.intervals():
        error = f"  ({row.error_code}: {row.error_detail})" if row.error_code else ""
        lines.append(
            f"interval {row.interval}: {row.state}, {row.trade_count} trades, "
            f"{row.reading_txs} reading and {row.settle_txs} settle transactions; "
            f"{_costs_line(service.store.costs(row.interval))}{error}"
        )
    return lines


SETTLE_ONE_CHUNK = 1_000
"""Trades per transaction of ``settle --interval`` (well under a block: bench/gas.py)."""


def _settle_one(
    chain: Chain, client: LedgerClient, t: int, accounts: tuple[LocalAccount, ...]
) -> int:
    """``settle --interval T``: settle what is left of one interval from the chain alone."""
    info = client.interval_info(t)
    if info.status == "none":
        raise InputError(f"Interval {t} was never committed: there is nothing to settle.")
    if info.status == "settled":
        print(f"interval {t}: already settled")
        return 0
    now = chain.timestamp()
    if now < info.deadline:
        raise InputError(
            f"Interval {t}'s reading window is open until {info.deadline} (chain time {now}).",
            hint="Settlement opens at the reading deadline; run this again after it.",
        )
    sender = accounts[0].address if accounts else chain.accounts[0]
    unfinished = info.status == "committing"
    receipts = client.settle(t, max_trades=SETTLE_ONE_CHUNK, sender=sender)
    trades = client.interval_info(t).cursor
    kind = "an unfinished commit, as far as its chunks went" if unfinished else "its commit"
    print(f"interval {t}: settled {trades} trades of {kind} in {len(receipts)} transactions")
    return 0


def run(args: argparse.Namespace) -> int:
    """Settle what is due (once, or --watch), or print a report."""
    if args.port is not None and not args.watch:
        raise InputError("--port serves the settlement API while watching; add --watch.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    chain, client, deployment, accounts = _load(args)
    db = args.db or Path(f"settlement-{chain.chain_id}.db")
    if args.report is not None:
        return _print_report(client, deployment, args.report, args.json, db)
    if args.interval is not None:
        return _settle_one(chain, client, args.interval, accounts)
    service = build_service(chain, client, deployment, db, args, accounts[0] if accounts else None)
    cap = service.sender.policy.fee_cap
    print(
        f"settlement on {args.rpc_url} (chain id {chain.chain_id}), EnergyMarket "
        f"{client.address}, from {service.sender.address}; store {db}; fee cap "
        f"{cap.describe()}",
        file=sys.stderr,
        flush=True,
    )
    if args.retry_failed:
        print(f"retrying failed intervals {service.retry_failed()}", file=sys.stderr)
    if not args.watch:
        service.on_progress = lambda line: print(line, file=sys.stderr, flush=True)
        service.tick()
        for line in _summary(service):
            print(line)
        return 1 if service.store.intervals((FAILED,)) else 0

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    runner = SettlementRunner(service, args.settle_poll_seconds, on_progress=say)
    if args.port is None:
        runner.run()
        return 0
    import uvicorn

    from settlement.api import create_settlement_app

    runner.start()
    try:
        say(f"settlement API on http://{args.host}:{args.port} (docs at /docs)")
        uvicorn.run(
            create_settlement_app(service),
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
        )
    finally:
        runner.stop()
    return 0


__all__ = [
    "SETTLER_KEY_ENV",
    "add_common_arguments",
    "add_serve_arguments",
    "build_service",
    "register",
    "run",
    "settlement_for_serve",
    "settler_account",
]
