"""``wattledger audit``: re-derive and verify every committed interval from public data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audit.chain_source import CreationSource, creation_source, web3_of
from audit.evidence import AuditError, ClearingRules
from audit.order_sources import ApiOrderSource, DirectoryOrderSource, OrderSource, archive_books
from audit.run import audit_market
from chain.connection import is_dev_chain
from chain.deployment import read_deployment
from chain.finality import (
    DEFAULT_CONFIRMATIONS,
    Finality,
    default_finality,
    final_block_of,
    parse_finality,
    tagged_block,
)
from deploy.cli_clear import parse_k
from ledger.errors import InputError
from market.clearing import DEFAULT_K, MECHANISMS

HELP = "audit a market: re-verify signatures, book roots, clearing, settlement and balances"
DESCRIPTION = """\
Audit an EnergyMarket from public data, so that nobody has to trust its operator.

For every interval committed on-chain (in --from..--to), the published signed order set (from
the market API, --api, or an archive folder, --orders) and the chain's own record are checked:

  signatures   every order's id is its EIP-712 digest and its signature recovers to its
               participant, registered when the interval was committed
  book_root    the Merkle root of the published set equals the committed bookRoot
  commitment   the trades in the commitInterval calldata hash to the committed digests
  defaulters   each party dropped at commit for want of collateral was short at the block
               named (its free balance rebuilt from events), between gate closure and
               commit, and every party short there was dropped
  reclear      clearing the published set, without the dropped parties, gives exactly the
               committed trades and price
  properties   every clearing property of DESIGN section 4 holds on the committed result
  grid         on a grid market, instead of reclear and properties: the grid document is
               the grid operator's (signature, gridRoot), re-clearing on it with each
               order at its signed node (its participant's registered one) gives the
               committed trades and seller prices, P1-P6 of
               docs/grid.md hold (P6 by the dual bound), and re-settling with both prices
               balances; until the chain records them, the document, grid operator, nodes
               and seller prices come from the market API
  settlement   settlement recomputed with settlement/model.py from the on-chain readings
               (meter signatures re-verified) equals the settlement events
  readings     with --readings: the readings kept off-chain (of participants that sold
               nothing; only sellers' go on-chain) are signed by the meter key in force at
               the commit, one per participant, none of a seller; those published as
               on-chain are the chain's
  receipts     every published receipt is signed by the operator that committed the
               interval; each order's seq is its receipt's; seq order is arrival order
  cancels      no order whose cancel the operator received before the gate closed is in
               the book or filled; each published cancel is its participant's
  late_orders  no order the operator received at or after the gate closed clears
  uncommitted  no closed interval in the scanned range (--from..--to, else the last 96
               and every one since the first commit) has a published set but no commit
               once it has ended

and once for the market at the audited block:

  code         the contract's code is the EnergyMarket build the audit mirrors
  conservation every balance rebuilt from events equals balanceOf; their sum equals
               totalEscrowed and deposits - withdrawals, and the token balance covers it

Only sellers' readings go on-chain: settle reads nothing else (a buyer is take-or-pay and its
import is for reporting). The settlement service publishes every reading it accepted at
GET /intervals/{t}/readings; --readings URL (the market API of `wattledger serve`, or
`wattledger settle --watch --port N`) or --readings DIR (<t>.json of those bodies) checks
them. Without --readings the readings check is not run and the market line says so; every
payment, refund and penalty is still checked, from the sellers' readings on-chain.

Everything is read at one block: --block N, else the newest final block (--confirmations:
N blocks below the head, or the node's finalized/safe block; default: the latest on a dev
chain, else the node's finalized block where it has one, else 64 below the head), so that a
reorganisation cannot change what was audited. The mechanism and k come from
the market's GET /market (or market.json in the archive folder) unless given here; the chain
does not record them.

Output: one line per interval (PASS with its trades, volume, price and settlement state, or
FAIL with each violated check and the numbers that show it), a market line and a summary;
--json prints the structured report instead. Progress goes to stderr. Exit code 0 when every
check passes, 1 on any violation, 2 when the evidence cannot be read (chain unreachable,
address not an EnergyMarket, API unreachable, orders folder missing or malformed).

Examples:
  wattledger audit --rpc-url http://127.0.0.1:8545 --api http://127.0.0.1:8000
  wattledger audit --rpc-url http://127.0.0.1:8545 --market 0x... --orders archive/ --json
  wattledger audit --rpc-url URL --api URL --save-orders archive/   # audit, then archive
  wattledger audit --rpc-url URL --api URL --readings URL   # also the off-chain readings
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` subcommand."""
    parser = subparsers.add_parser(
        "audit",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rpc-url", metavar="URL", required=True, help="JSON-RPC endpoint")
    parser.add_argument(
        "--market",
        metavar="ADDRESS",
        help="EnergyMarket address (default: the one in deployments/<chainId>.json)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--api", metavar="URL", help="market API base URL (wattledger serve)")
    source.add_argument(
        "--orders",
        metavar="DIR",
        type=Path,
        help="archive folder: <interval>.json (GET /intervals/{t}/orders bodies), optional "
        "market.json (GET /market)",
    )
    parser.add_argument(
        "--readings",
        metavar="URL|DIR",
        help="the settlement service's published readings, to check the ones kept off-chain: "
        "its base URL (GET /intervals/{t}/readings; with `wattledger serve` the --api URL) or "
        "a folder of <interval>.json bodies (default: not checked; settlement does not "
        "depend on them)",
    )
    parser.add_argument("--from", dest="from_t", type=_interval, metavar="T", help="first interval")
    parser.add_argument("--to", dest="to_t", type=_interval, metavar="T", help="last interval")
    parser.add_argument(
        "--block",
        type=_interval,
        metavar="N",
        help="audit at this block (default: the newest final block, see --confirmations)",
    )
    parser.add_argument(
        "--confirmations",
        type=parse_finality,
        metavar="N|finalized|safe",
        help="without --block: audit at the block N below the head, or at the node's "
        "finalized (or safe) block (default: the latest on a dev chain, else finalized where "
        f"the node has it, else {DEFAULT_CONFIRMATIONS})",
    )
    parser.add_argument(
        "--from-block",
        type=_interval,
        default=0,
        metavar="N",
        help="first block to scan for the market's events (its deployment block; default 0)",
    )
    parser.add_argument(
        "--mechanism",
        choices=MECHANISMS,
        help="clearing mechanism to re-clear with (default: what the market declares)",
    )
    parser.add_argument(
        "--k",
        metavar="NUM/DEN",
        help=f"uniform k (default: what the market declares, else {DEFAULT_K[0]}/{DEFAULT_K[1]})",
    )
    parser.add_argument(
        "--save-orders",
        metavar="DIR",
        type=Path,
        help="with --api: also archive market.json and every audited interval's order set here",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--creation-tx",
        metavar="HASH",
        help="the market's creation transaction, whose init code and constructor arguments "
        "the code check verifies (default: the one the deployment record names for this "
        "market; without either, only the runtime code is checked)",
    )
    parser.add_argument(
        "--deployments-dir",
        metavar="DIR",
        type=Path,
        help="folder of deployment records (default: deployments/ in the project)",
    )
    parser.set_defaults(handler=run)


def _interval(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {value}")
    return value


def audit_block(w3: Any, chain_id: int, requested: Finality | None) -> int | None:
    """The block an audit reads at without ``--block``: the newest final block under
    ``requested``, else under the chain's default (:func:`chain.finality.default_finality`;
    the latest, None, on a dev chain). An :class:`AuditError` when no block is final yet."""
    finality = requested
    if finality is None:
        dev = is_dev_chain(chain_id)
        finality = default_finality(dev, not dev and tagged_block(w3, "finalized") is not None)
    if finality.immediate:
        return None
    block = final_block_of(w3, finality)
    if block < 0:
        raise AuditError(
            f"No block of chain {chain_id} is final yet ({finality.describe()}).",
            hint="Pass --block N, or --confirmations 0 to audit at the latest block.",
        )
    print(f"auditing at block {block}, final by {finality.describe()}", file=sys.stderr)
    return block


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Read the evidence, audit, print the report; 0 pass, 1 violations."""
    if args.save_orders is not None and args.api is None:
        raise InputError("--save-orders archives what --api publishes; it needs --api")
    if args.from_t is not None and args.to_t is not None and args.from_t > args.to_t:
        raise InputError(f"--from {args.from_t} is after --to {args.to_t}")
    rules = None
    if args.mechanism is not None or args.k is not None:
        k = parse_k(args.k) if args.k is not None else DEFAULT_K
        rules = ClearingRules(args.mechanism or "uniform", k, "command line")
    source: OrderSource = (
        ApiOrderSource(args.api) if args.api is not None else DirectoryOrderSource(args.orders)
    )
    w3 = web3_of(args.rpc_url)
    market = args.market
    chain_id = int(w3.eth.chain_id)
    deployment = read_deployment(chain_id, args.deployments_dir)
    if market is None:
        if deployment is None or "EnergyMarket" not in deployment.contracts:
            raise AuditError(
                f"No --market given and no deployment record for chain {chain_id}.",
                hint="Pass --market ADDRESS (the EnergyMarket address GET /market lists).",
            )
        market = deployment.address("EnergyMarket")
    creation = creation_source(deployment, market)
    if args.creation_tx is not None:
        creation = CreationSource(args.creation_tx, creation.record_args if creation else None)
    print(
        f"auditing {market} on {args.rpc_url} with {source.description}",
        file=sys.stderr,
        flush=True,
    )
    block = args.block
    if block is None:
        block = audit_block(w3, chain_id, args.confirmations)
    report = audit_market(
        w3,
        market,
        source,
        args.from_t,
        args.to_t,
        block=block,
        from_block=args.from_block,
        rules=rules,
        progress=_progress,
        creation=creation,
        readings=args.readings,
    )
    if args.save_orders is not None and isinstance(source, ApiOrderSource):
        written = archive_books(source, args.save_orders, [r.interval for r in report.intervals])
        print(f"archived {len(written)} files in {args.save_orders}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1
