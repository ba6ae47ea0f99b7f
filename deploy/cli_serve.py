"""``wattledger serve``: run the market API (order intake, gate closure, on-chain commit)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from chain.canonical import resolve_finality
from chain.client import LedgerClient
from chain.connection import Chain
from chain.deployment import Deployment, read_deployment, write_deployment
from deploy.assembly import deploy_market, fund_dev_accounts, operator_key
from deploy.cli_args import positive_int
from deploy.cli_keys import ENV_RULE, add_key_arguments, connect_with_keys, load_accounts
from deploy.cli_settle import add_serve_arguments, fee_cap, settlement_for_serve
from ledger.errors import InputError
from market.chain_ledger import ChainLedger
from market.registrar_policy import POLICY_NAMES
from market.service import (
    DEFAULT_MAX_ORDERS_PER_INTERVAL,
    DEFAULT_MIN_ORDER_WH,
    MarketConfig,
)

if TYPE_CHECKING:
    import uvicorn

HELP = "run the market HTTP API: signed orders, gate closure, clearing, on-chain commit"
DESCRIPTION = f"""\
Serve the market API (DESIGN §7) on http://HOST:PORT; the OpenAPI document is at /docs.

Participants submit EIP-712 signed orders; at each interval's gate closure the market freezes
and publishes the interval's orders, clears them and commits the trades with the Merkle root
of the order set on-chain (EnergyMarket.commitInterval) from the operator account (the
deployer). Accepted orders are stored in SQLite (--db) before they are acknowledged; a
restart recovers the open book and finishes any interrupted commit. GET /market publishes a
ready-to-sign EIP-712 template for every signed message. A participant asks to be registered
with POST /registrations; --registrar-policy decides, and an approved request is registered
on-chain from the deployer account (which holds REGISTRAR_ROLE on a deployment made here).

Without --rpc-url the embedded eth-tester chain is used: the contracts are deployed at start,
and the chain's development accounts (whose keys are the well-known eth-tester test keys) are
registered and funded with WATT so clients can trade at once. With --rpc-url the deployment
in deployments/<chainId>.json is used, or the contracts are deployed and recorded there.

Keys: --keystore PATH is the operator's encrypted keystore (it commits intervals, signs the
receipts of accepted orders and, holding REGISTRAR_ROLE, registers participants; it deploys
when there is no deployment yet); --settler-keystore PATH the settlement account's. Each
password comes from --password-file / --settler-password-file or is asked on the terminal.
{ENV_RULE} On a public chain also set --max-fee-gwei (and
--max-priority-fee-gwei): the market's commits and registrations and the settlement service
never pay more per gas, and wait while the base fee is above the cap.

Examples:
  wattledger serve                                   # embedded chain, 15-minute intervals
  wattledger serve --interval-seconds 60             # a quick demo market
  wattledger serve --rpc-url http://127.0.0.1:8545 --db market.db
  wattledger serve --rpc-url https://rpc.example --keystore operator.json \\
      --password-file operator.pw --settler-keystore settler.json \\
      --settler-password-file settler.pw --max-fee-gwei 30 --max-priority-fee-gwei 2
"""

log = logging.getLogger("wattledger.serve")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rpc-url", metavar="URL", help="JSON-RPC endpoint (default: embedded eth-tester)"
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        type=Path,
        help="SQLite order store (default: market-<chainId>.db in the current folder; "
        "a temporary file on the embedded chain)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "--interval-seconds",
        type=positive_int,
        metavar="N",
        help="delivery interval length for a new deployment (default 900); an existing "
        "deployment's length must match",
    )
    parser.add_argument(
        "--gate-closure-seconds",
        type=positive_int,
        metavar="N",
        help="gate closure lead time before an interval starts (default: a third of the "
        "interval length)",
    )
    parser.add_argument(
        "--max-ahead-intervals",
        type=positive_int,
        default=96,
        metavar="N",
        help="how many intervals ahead orders are accepted (default 96)",
    )
    parser.add_argument(
        "--min-order-wh",
        type=positive_int,
        default=DEFAULT_MIN_ORDER_WH,
        metavar="WH",
        help=f"smallest order taken, Wh (default {DEFAULT_MIN_ORDER_WH})",
    )
    parser.add_argument(
        "--max-orders-per-interval",
        type=positive_int,
        default=DEFAULT_MAX_ORDERS_PER_INTERVAL,
        metavar="N",
        help="most open orders of one participant in one interval "
        f"(default {DEFAULT_MAX_ORDERS_PER_INTERVAL})",
    )
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="how often gate closure is checked (default 1 s)",
    )
    parser.add_argument(
        "--fund-dev-accounts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="register the chain's development accounts and deposit 1,000,000 WATT for "
        "each (default: on for the embedded chain, off otherwise)",
    )
    parser.add_argument(
        "--registrar-policy",
        choices=POLICY_NAMES,
        default="auto",
        help="how POST /registrations is decided: approve (register on-chain at once), hold "
        "(keep requests pending for the registrar) or auto (default: approve on development "
        "chains, anvil's 31337 and the embedded one; hold elsewhere)",
    )
    parser.add_argument(
        "--deployments-dir",
        metavar="DIR",
        type=Path,
        help="folder of deployment records (default: deployments/ in the project)",
    )
    add_key_arguments(parser, "the operator (and registrar; the deployer when it deploys)")
    add_serve_arguments(parser)
    parser.set_defaults(handler=run)


def _deploy(chain: Chain, interval_seconds: int | None) -> Deployment:
    """Deploy the system; with a non-default interval length, the market with that length."""

    def say(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr)

    return deploy_market(chain, interval_seconds=interval_seconds, progress=say)


def run(args: argparse.Namespace) -> int:
    """Connect, deploy or load the deployment, open the store, recover, and serve."""
    import uvicorn

    from market.clock import SystemClock
    from market.http.app import create_app
    from market.service import MarketService
    from market.store import OrderStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settler_keys = load_accounts(args, "settler-")  # every password asked before anything runs
    chain = connect_with_keys(args.rpc_url, args)
    chain.fee_cap = fee_cap(args)  # the market's commits and registrations too
    chain.finality = resolve_finality(chain, args.confirmations)
    where = args.rpc_url or "the embedded eth-tester chain"
    print(f"market on {where} (chain id {chain.chain_id})", file=sys.stderr)
    deployment = (
        None if chain.is_embedded else read_deployment(chain.chain_id, args.deployments_dir)
    )
    if deployment is not None and not chain.w3.eth.get_code(deployment.address("EnergyMarket")):
        print(
            "the recorded EnergyMarket has no code on this chain (a fresh node?); redeploying",
            file=sys.stderr,
        )
        deployment = None
    if deployment is None:
        print("deploying the contracts ...", file=sys.stderr)
        deployment = _deploy(chain, args.interval_seconds)
        if not chain.is_embedded:
            path = write_deployment(deployment, args.deployments_dir)
            print(f"deployment record: {path}", file=sys.stderr)
    client = LedgerClient.from_deployment(chain, deployment)
    # The operator signs a receipt for every accepted order and cancel: without its key the
    # market does not start (before funding or opening the store).
    key = operator_key(chain, client.sender)
    interval_seconds = client.interval_seconds()
    if args.interval_seconds is not None and args.interval_seconds != interval_seconds:
        raise InputError(
            f"--interval-seconds {args.interval_seconds} differs from the deployed market's "
            f"{interval_seconds}-second intervals.",
            hint="Leave the flag out, or deploy a new market (another --deployments-dir).",
        )
    fund = chain.is_embedded if args.fund_dev_accounts is None else args.fund_dev_accounts
    if fund:
        dev = tuple(s for s in chain.signers if s.address != deployment.deployer)
        print(f"registering and funding {len(dev)} development accounts ...", file=sys.stderr)
        fund_dev_accounts(client, dev)
    db = args.db
    if db is None:
        db = (
            Path(tempfile.mkdtemp(prefix="wattledger-")) / "market.db"
            if chain.is_embedded
            else Path(f"market-{chain.chain_id}.db")
        )
    gate = args.gate_closure_seconds or max(interval_seconds // 3, 1)
    config = MarketConfig(
        gate_closure_seconds=gate,
        max_ahead_intervals=args.max_ahead_intervals,
        registrar_policy=args.registrar_policy,
        min_order_wh=args.min_order_wh,
        max_orders_per_interval=args.max_orders_per_interval,
    )
    service = MarketService(
        OrderStore(db), ChainLedger(client), SystemClock(), config, operator_key=key
    )
    recovered = service.recover()
    if recovered:
        print(f"finished interrupted commits of intervals {recovered}", file=sys.stderr)
    routers, stop_settlement = settlement_for_serve(
        args, chain, client, deployment, db, settler_keys[0] if settler_keys else None
    )
    app = create_app(service, extra_routers=routers, tick_seconds=args.tick_seconds)
    print(
        f"market API on http://{args.host}:{args.port} (docs at /docs); EnergyMarket "
        f"{client.address}; {interval_seconds}-second intervals, gate closure {gate} s "
        f"before; {service.open_order_count()} open orders; order store {db}",
        file=sys.stderr,
        flush=True,
    )
    # What start-up built (modules, web3, the deployment, the recovered book) lives as long
    # as the process: keep it out of the garbage collector's full collections, which would
    # otherwise walk it all, a pause of tens of milliseconds that every waiting request sees.
    gc.collect()
    gc.freeze()
    server_config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False
    )
    try:
        _quiet_server_class()(server_config).run()
    finally:
        stop_settlement()
        service.store.close()
        print("stopped: settlement service stopped, order store closed", file=sys.stderr)
    return 0


def _quiet_server_class() -> type[uvicorn.Server]:
    """uvicorn's Server, except that a SIGTERM or SIGINT it shut down on is not raised again.

    uvicorn re-raises the captured signal once its own shutdown is done, so that the default
    action ends the process: on SIGTERM that kills it before ``run``'s ``finally`` stops the
    settlement service and closes the stores (exit -15). The signal has done its work by then
    (the server shut down), so ``run`` returns normally and ``serve`` exits 0.
    """
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    return QuietServer
