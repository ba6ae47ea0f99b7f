"""Run anvil, the local testnet node, from the project's npm packages.

Used by ``wattledger node`` and by the test fixtures. Anvil always binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests

from chain.artifacts import REPO_ROOT
from chain.errors import ChainConnectionError, ToolchainError

ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
HOST = "127.0.0.1"
DEFAULT_PORT = 8545
START_TIMEOUT_SECONDS = 30.0
# Anvil's default block gas limit is 30M, like mainnet's long-standing limit.
DEFAULT_GAS_LIMIT = 30_000_000


def anvil_binary(root: Path = REPO_ROOT) -> Path:
    """Return the anvil executable shipped in node_modules, or raise :class:`ToolchainError`."""
    path = root / "node_modules" / ANVIL_PACKAGE / "bin" / "anvil"
    if not path.is_file():
        raise ToolchainError(
            f"anvil is not installed (looked for {path}).",
            hint="Run `npm ci` in the project root; it installs the anvil binary from npm.",
        )
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def rpc_url(port: int) -> str:
    """The JSON-RPC URL of an anvil on ``port``."""
    return f"http://{HOST}:{port}"


def anvil_command(port: int, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line that starts anvil on ``port`` bound to 127.0.0.1."""
    return [
        str(anvil_binary()),
        "--host",
        HOST,
        "--port",
        str(port),
        "--hardfork",
        "prague",
        "--gas-limit",
        str(DEFAULT_GAS_LIMIT),
        *extra_args,
    ]


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = START_TIMEOUT_SECONDS
) -> None:
    """Block until ``url`` answers ``eth_chainId``; raise :class:`ChainConnectionError` if not."""
    deadline = time.monotonic() + timeout
    payload: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ChainConnectionError(
                f"anvil exited with code {process.returncode} before it was ready at {url}."
            )
        with contextlib.suppress(requests.RequestException):
            if requests.post(url, json=payload, timeout=1).ok:
                return
        time.sleep(0.05)
    raise ChainConnectionError(f"anvil did not answer at {url} within {timeout:.0f} s.")


def start_anvil(
    port: int | None = None, extra_args: Sequence[str] = (), quiet: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """Start anvil and wait until it answers; return the process and its RPC URL."""
    port = port or free_port()
    out = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(anvil_command(port, extra_args), stdout=out, stderr=out)
    url = rpc_url(port)
    try:
        wait_until_ready(url, process)
    except BaseException:
        stop_anvil(process)
        raise
    return process, url


def stop_anvil(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop anvil gracefully (SIGTERM), killing it if it does not exit in ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_anvil(port: int | None = None, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Context manager: an anvil on a free port for the duration; yields its RPC URL."""
    process, url = start_anvil(port, extra_args)
    try:
        yield url
    finally:
        stop_anvil(process)
