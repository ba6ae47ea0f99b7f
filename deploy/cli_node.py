"""``wattledger node``: run anvil, the local testnet node, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from types import FrameType

from chain.anvil import DEFAULT_PORT, HOST, anvil_command, stop_anvil, wait_until_ready
from chain.connection import ANVIL_MNEMONIC

HELP = "run a local anvil testnet node on 127.0.0.1 (Ctrl-C stops it)"
DESCRIPTION = f"""\
Start anvil from node_modules (npm package @foundry-rs/anvil-linux-amd64) on {HOST}, with
Prague rules, a 30M block gas limit and ten funded development accounts from the public test
mnemonic "{ANVIL_MNEMONIC}". Then point other commands at it:

  wattledger deploy --rpc-url http://{HOST}:{DEFAULT_PORT}

Ctrl-C (or SIGTERM) stops the node cleanly. With --state FILE the chain is loaded from FILE
at start (if it exists) and saved to it at exit.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``node`` subcommand."""
    parser = subparsers.add_parser(
        "node",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--state", metavar="FILE", help="load chain state from FILE at start, save it at exit"
    )
    parser.add_argument(
        "--block-time",
        type=int,
        metavar="SECONDS",
        help="mine a block every SECONDS instead of one per transaction",
    )
    parser.set_defaults(handler=run)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Start anvil, report its URL, and wait for Ctrl-C or SIGTERM."""
    extra: list[str] = []
    if args.state:
        extra += ["--state", args.state]
    if args.block_time:
        extra += ["--block-time", str(args.block_time)]
    command = anvil_command(args.port, extra)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{HOST}:{args.port}"
    try:
        wait_until_ready(url, process)
    except BaseException:
        stop_anvil(process)
        err = process.stderr.read().decode(errors="replace") if process.stderr else ""
        print(
            f"wattledger: anvil failed to start on port {args.port}: {err.strip()}", file=sys.stderr
        )
        return 2

    def _terminate(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C stops the node even when it was started with SIGINT ignored, as a shell without
    # job control starts a background command (`wattledger node &` in a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # Announce inside the try: an interrupt right after the announcement still stops
        # anvil cleanly.
        print(f"anvil is running at {url} (chain id 31337); Ctrl-C stops it", flush=True)
        process.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan anvil
        print("stopping anvil ...", file=sys.stderr)
        stop_anvil(process)
        print("anvil stopped", file=sys.stderr)
        return 0
    print(f"wattledger: anvil exited with code {process.returncode}", file=sys.stderr)
    return 1
