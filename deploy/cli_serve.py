"""``wattledger serve``: run the market API (order intake, gate closure, on-chain commit)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount

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
from market.grid import parse_grid
from market.grid_operator import GridSetup
from market.registrar_policy import POLICY_NAMES
from market.service import (
    DEFAULT_MAX_ORDERS_PER_INTERVAL,
    DEFAULT_MIN_ORDER_WH,
    MarketConfig,
)

if TYPE_CHECKING:
    import uvicorn

GRID_KEY_ENV = "WATTLEDGER_GRID_OPERATOR_KEY"
"""The grid operator's raw private key (0x hex), read on local dev chains only."""

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

Grid (docs/grid.md): with --grid-operator ADDRESS the market clears every interval on the
grid document that grid operator signs and publishes with PUT /intervals/{{t}}/grid (the
canonical bytes, the EIP-712 signature in the Grid-Signature header); a document is frozen at
the interval's gate closure, and an interval without one is not cleared. --grid GRID.json
adds a default document for every interval without a published one, which the market signs
per interval with the grid operator's key: --grid-keystore PATH (with
--grid-password-file), or on a local dev chain {GRID_KEY_ENV}; the key is
never logged or served, and the grid operator's address is the key's.
--grid-nodes NODES.json records each participant's node
({{"0xADDRESS": "NODE", ...}}): intake takes an order only at its participant's node, and
GET /market publishes the grid operator and the nodes. Without these flags the market has one
node and behaves as before. The chain does not record gridRoot or seller prices yet: trades
are committed at the buyer's price, and the seller prices and the grid outcome are published
with GET /intervals/{{t}}/clearing.

Examples:
  wattledger serve                                   # embedded chain, 15-minute intervals
  wattledger serve --interval-seconds 60             # a quick demo market
  wattledger serve --rpc-url http://127.0.0.1:8545 --db market.db
  wattledger serve --rpc-url https://rpc.example --keystore operator.json \\
      --password-file operator.pw --settler-keystore settler.json \\
      --settler-password-file settler.pw --max-fee-gwei 30 --max-priority-fee-gwei 2
  wattledger serve --grid feeder.json --grid-keystore dso.json --grid-nodes nodes.json
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
    grid = parser.add_argument_group("grid (docs/grid.md)")
    grid.add_argument(
        "--grid-operator",
        metavar="ADDRESS",
        help="the grid operator's address: the market clears on the grid documents it signs "
        "(PUT /intervals/{t}/grid); default: the address of --grid-keystore's key",
    )
    grid.add_argument(
        "--grid",
        metavar="GRID.json",
        type=Path,
        help="a default grid document for every interval without a published one (any JSON "
        "layout; its interval is set per interval), signed per interval with the grid "
        "operator's key (--grid-keystore)",
    )
    grid.add_argument(
        "--grid-nodes",
        metavar="NODES.json",
        type=Path,
        help='each participant\'s grid node, {"0xADDRESS": "NODE", ...}: intake takes an '
        "order only at its participant's node",
    )
    add_key_arguments(
        grid, "the grid operator (signs the --grid document)", prefix="grid-", env_rule=False
    )
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
    grid_keys = load_accounts(args, "grid-")
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
        OrderStore(db),
        ChainLedger(client),
        SystemClock(),
        config,
        operator_key=key,
        grid=grid_setup(args, chain, grid_keys),
    )
    if service.grid is not None:
        print(
            f"grid market: grid operator {service.grid.address}, "
            f"{len(service.grid.nodes)} participants' nodes recorded, default document "
            f"{'yes' if service.grid.has_default else 'no'}",
            file=sys.stderr,
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


def grid_setup(
    args: argparse.Namespace, chain: Chain, grid_keys: tuple[LocalAccount, ...]
) -> GridSetup | None:
    """The grid operator's setup from ``--grid-operator``, ``--grid``, ``--grid-nodes`` and
    its key (``--grid-keystore``, or :data:`GRID_KEY_ENV` on a dev chain); None without
    any of them (one node). InputError for a bad file or a missing key."""
    if (
        args.grid_operator is None
        and args.grid is None
        and args.grid_nodes is None
        and not (grid_keys)
    ):
        return None
    key: bytes | None = bytes(grid_keys[0].key) if grid_keys else None
    if key is None and args.grid is not None:
        from_env = chain.env_key(GRID_KEY_ENV)
        key = bytes.fromhex(from_env.removeprefix("0x")) if from_env else None
    if key is None and args.grid_operator is None:
        raise InputError(
            "a grid market needs the grid operator: --grid-operator ADDRESS, or its key "
            "(--grid-keystore PATH) to sign the --grid document per interval"
        )
    if args.grid is not None and key is None:
        raise InputError(
            "--grid needs the grid operator's key to sign the document per interval",
            hint=f"Pass --grid-keystore PATH (on a local dev chain {GRID_KEY_ENV} works too), "
            "or leave --grid out and let the grid operator PUT /intervals/{t}/grid.",
        )
    template = None
    if args.grid is not None:
        try:
            data = args.grid.read_bytes()
        except OSError as err:
            raise InputError(f"--grid {args.grid}: {err.strerror}") from None
        template = parse_grid(data, require_canonical=False, source=str(args.grid))
    nodes: dict[str, str] = {}
    if args.grid_nodes is not None:
        try:
            raw = json.loads(args.grid_nodes.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"--grid-nodes {args.grid_nodes}: {err}") from None
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise InputError(
                f"--grid-nodes {args.grid_nodes}: expected an object of address -> node id"
            )
        nodes = raw
    try:
        return GridSetup(address=args.grid_operator, template=template, key=key, nodes=nodes)
    except ValueError as err:
        raise InputError(str(err)) from None


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
