"""The ``wattledger`` command line: the composition root that wires the parts together.

Each subcommand lives in its own ``deploy.cli_<name>`` module exposing
``register(subparsers)``, which adds a parser whose ``handler`` default is a function
``handler(args) -> int``. Expected failures (:class:`ledger.errors.WattledgerError`) print
as one paragraph on stderr with exit code 2 (1 for a failed check); ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ledger.errors import InputError, WattledgerError

# Order here is the order in `wattledger --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "deploy.cli_compile",
    "deploy.cli_node",
    "deploy.cli_deploy",
    "deploy.cli_clear",
    "deploy.cli_serve",
    "deploy.cli_simulate",
    "deploy.cli_sweep",
    "deploy.cli_settle",
    "deploy.cli_audit",
)

DESCRIPTION = """\
wattledger: a peer-to-peer energy trading ledger.

Prosumers, batteries and data centers trade energy per delivery interval through a double
auction; cleared trades become dynamic energy contracts on an EVM chain (embedded eth-tester
by default, or any JSON-RPC chain such as a local anvil), settled from meter-signed readings.
Energy is integer Wh; money is integer token base units (18 decimals); prices are base units
per Wh.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="wattledger", description=DESCRIPTION, formatter_class=_Formatter
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-paragraph errors"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except WattledgerError as err:
        if args.debug:
            raise
        label = "invalid input" if isinstance(err, InputError) else "error"
        print(f"wattledger: {label}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wattledger: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
