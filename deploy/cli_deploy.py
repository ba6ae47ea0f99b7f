"""``wattledger deploy``: deploy the system and write ``deployments/<chainId>.json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chain.artifacts import sources_changed
from chain.deployment import ROLE_NAMES, write_deployment
from deploy.cli_keys import ENV_RULE, add_key_arguments, connect_with_keys
from deploy.deployment import deploy_system

HELP = "deploy the contracts to the embedded chain or --rpc-url; write deployments/<chainId>.json"
DESCRIPTION = f"""\
Deploy the committed artifacts in contracts/build (WattToken, the settlement token, and the
market contracts) and write a deployment record with addresses, transaction hashes, block
numbers and artifact hashes to deployments/<chainId>.json.

Without --rpc-url the embedded eth-tester chain is used (it lives only as long as this
command, which makes this a quick end-to-end check). With --rpc-url any JSON-RPC chain
works: a local anvil (`wattledger node`) needs nothing else; for another chain pass the
funded deployer's encrypted keystore with --keystore PATH (and --password-file PATH, or type
the password when asked). {ENV_RULE}

Example:
  wattledger deploy --rpc-url https://rpc.example --keystore ~/.foundry/keystores/deployer \\
      --password-file ~/.deployer-password --operator 0x... --registrar 0x... --admin 0x...
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``deploy`` subcommand."""
    parser = subparsers.add_parser(
        "deploy",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rpc-url", metavar="URL", help="JSON-RPC endpoint (default: embedded eth-tester)"
    )
    parser.add_argument(
        "--out-dir",
        metavar="DIR",
        type=Path,
        help="folder for the deployment record (default: deployments/ in the project)",
    )
    add_key_arguments(parser, "the deployer (the first keystore deploys)")
    roles = parser.add_argument_group(
        "roles",
        "Each role's account (default: the deployer). On a chain that is not a local dev chain "
        "(the embedded chain, anvil) giving every role to one key is refused unless "
        "--single-key: that key alone could register a colluder, commit for it and mint.",
    )
    for name, what in (
        (
            "admin",
            "DEFAULT_ADMIN_ROLE of the market and the token: sets terms, grants roles, unpauses",
        ),
        ("operator", "OPERATOR_ROLE: commits cleared intervals (the account `serve` sends as)"),
        ("registrar", "REGISTRAR_ROLE: registers participants and their meter keys"),
        ("guardian", "GUARDIAN_ROLE: can pause the market"),
        ("minter", "the token's MINTER_ROLE"),
    ):
        roles.add_argument(f"--{name}", metavar="ADDRESS", help=what)
    roles.add_argument(
        "--single-key",
        action="store_true",
        help="accept one key for every role on a chain that is not a local dev chain",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Connect, deploy every contract, write and print the record."""
    changed = sources_changed()
    if changed:
        print(
            f"warning: contracts/build is older than {', '.join(changed)}; "
            "run `wattledger compile` to deploy the current sources",
            file=sys.stderr,
        )
    chain = connect_with_keys(args.rpc_url, args)
    where = args.rpc_url or "the embedded eth-tester chain"
    print(
        f"deploying to {where} (chain id {chain.chain_id}) from {chain.accounts[0]} ...",
        file=sys.stderr,
    )
    deployment = deploy_system(
        chain,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr),
        roles={name: getattr(args, name) for name in ROLE_NAMES},
        single_key=args.single_key,
    )
    path = write_deployment(deployment, args.out_dir)
    for name, contract in deployment.contracts.items():
        print(
            f"{name:<14} {contract.address}  block {contract.block_number:<6} "
            f"gas {contract.gas_used:>9,}  tx {contract.tx_hash}"
        )
    for name in ROLE_NAMES:
        print(f"{name:<14} {deployment.role(name)}")
    print(f"deployment record: {path}")
    return 0
