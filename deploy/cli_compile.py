"""``wattledger compile``: compile the Solidity sources into ``contracts/build``."""

from __future__ import annotations

import argparse
import sys
import time

from chain.artifacts import build_dir
from deploy.compiler import compile_contracts, stale_files, write_artifacts

HELP = "compile contracts/*.sol into contracts/build (needs `npm ci`)"
DESCRIPTION = """\
Compile the Solidity sources under contracts/ with solcjs (npm `solc`) through py-solc-x,
pinned to evmVersion "prague" and OpenZeppelin Contracts 5.x from node_modules, and write
ABI, bytecode and source hashes to contracts/build/ (committed, so running the system never
needs Node.js).

With --check nothing is written: the command exits 1 and names the files that differ when
the committed artifacts are stale.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``compile`` subcommand."""
    parser = subparsers.add_parser(
        "compile",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that contracts/build matches a fresh compile; exit 1 if stale",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Compile, then write or check the artifacts."""
    started = time.monotonic()
    print("compiling contracts/ with solcjs (evmVersion prague) ...", file=sys.stderr)
    output = compile_contracts()
    elapsed = time.monotonic() - started
    names = ", ".join(sorted(output.artifacts))
    if args.check:
        stale = stale_files(output)
        if stale:
            print(
                f"contracts/build is stale: {', '.join(stale)} differ from a fresh compile.\n"
                "Run `wattledger compile` and commit contracts/build.",
                file=sys.stderr,
            )
            return 1
        print(f"contracts/build is up to date ({names}; compiled in {elapsed:.1f} s)")
        return 0
    write_artifacts(output)
    print(f"compiled {names} in {elapsed:.1f} s -> {build_dir()}")
    return 0
