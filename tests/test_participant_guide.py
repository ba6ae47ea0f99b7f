"""docs/participants.md, run verbatim: an outside client trades, reads and settles end to end.

The guide's ```python blocks are extracted and executed in order, in one namespace, against
live servers started the way the README says, through the command line: ``wattledger node``
(anvil on a free port of 127.0.0.1) and ``wattledger serve --rpc-url ... --fund-dev-accounts``
(the market API with the settlement service inside; it deploys the contracts). Like the
guide, this test imports nothing from the project: only the standard library, web3,
eth_account, requests and pytest.

The namespace the snippets start with holds exactly what the guide asks its reader to define:

- ``API_URL``: the market API of the ``serve`` started here;
- ``RPC_URL``: the anvil started here;
- ``PARTICIPANT_KEY``: a fresh account key this test gave gas money (1 ETH) and
  :data:`MINTED` settlement tokens (minted by the deployer, anvil's first account, which holds
  every role on a dev deployment).

The test plays the rest of the world between blocks, at the guide's headings (each is looked
up and must exist, so a renamed step fails here rather than skipping a hook):

- after "6. Cancelling": a buyer (anvil's second account, registered and funded by
  ``--fund-dev-accounts``) bids for the participant's interval at 0.30 WATT/kWh, so the ask
  at 0.20 trades at the uniform price 0.25 (k = 1/2); three more accounts place orders that
  do not trade (:data:`OTHER_ORDERS`), so the book the guide proves against has five orders;
- before "9. Meter readings": chain time jumps to the interval's end (``evm_increaseTime``;
  the market's gate closure goes by the wall clock and is over by then, the commit mined);
- before "10. Reading the settlement": once the settlement service has put the reading
  on-chain, chain time jumps past the reading deadline (an hour), and the service settles.

At the end the test checks what the participant saw at each stage (order placed, matched,
committed, settled) and that its token balance grew by exactly the payment for 2 kWh at the
clearing price: ``MINTED + 2_000 * 250_000_000_000_000``.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "participants.md"

INTERVAL_SECONDS = 10
"""Short intervals (gate closure a third before: 3 s) keep the wait for the gate short."""
MINTED = 10 * 10**18
"""Settlement tokens the participant starts with (10 WATT)."""
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
"""The public mnemonic of anvil's development accounts (``wattledger node``); ``serve
--fund-dev-accounts`` registers all but the first (the deployer) and funds them."""
BUYER_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
"""Anvil's second development account, the participant's counterparty here."""
BID_PRICE_PER_WH = 300_000_000_000_000
"""0.30 WATT/kWh; against the guide's ask at 0.20 the uniform price (k = 1/2) is 0.25."""
OTHER_ORDERS = ((0, 100_000_000_000_000), (0, 120_000_000_000_000), (1, 500_000_000_000_000))
"""(side, price per Wh) of orders by three more development accounts that do not trade and
leave the price where it is (bids below the ask, an ask above the bid): with them the book
has five orders, so the guide's proof and tree rebuild cover a tree of several levels."""
CLEARING_PRICE_PER_WH = 250_000_000_000_000
SOLD_WH = 2_000

STEP_CONNECT = "1. What `GET /market` tells you"
STEP_REGISTER = "3. Registration"
STEP_CANCEL = "6. Cancelling"
STEP_READINGS = "9. Meter readings"
STEP_SETTLEMENT = "10. Reading the settlement"
STEP_WITHDRAW = "11. Withdrawing"

READING_OF_ABI = [
    {
        "type": "function",
        "name": "readingOf",
        "stateMutability": "view",
        "inputs": [{"name": "t", "type": "uint64"}, {"name": "participant", "type": "address"}],
        "outputs": [
            {"name": "submitted", "type": "bool"},
            {"name": "exportedWh", "type": "uint64"},
        ],
    }
]
TOKEN_MINT_ABI = [
    {
        "type": "function",
        "name": "mint",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [],
    },
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
]


def guide_blocks(text: str) -> list[tuple[str, str]]:
    """The ```python blocks of ``text`` in order, each with the ``##`` heading it is under."""
    blocks: list[tuple[str, str]] = []
    heading = ""
    lines: list[str] | None = None
    for line in text.splitlines():
        if lines is not None:
            if line.strip() == "```":
                blocks.append((heading, "\n".join(lines) + "\n"))
                lines = None
            else:
                lines.append(line)
        elif line.startswith("## "):
            heading = line[3:].strip()
        elif line.strip() == "```python":
            lines = []
    assert lines is None, "an unterminated ```python block in the guide"
    return blocks


# -- servers ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wattledger() -> str:
    """The ``wattledger`` command of the Python running the tests."""
    beside = Path(sys.executable).with_name("wattledger")
    return str(beside) if beside.exists() else "wattledger"


def _wait(
    what: str, check: Callable[[], Any], process: subprocess.Popen[bytes], seconds: float
) -> None:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come up within {seconds:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``wattledger node`` and ``wattledger serve`` on free ports; yields (RPC_URL, API_URL)."""
    rpc_port, api_port = _free_port(), _free_port()
    rpc_url, api_url = f"http://127.0.0.1:{rpc_port}", f"http://127.0.0.1:{api_port}"
    log = (tmp_path / "servers.log").open("wb")
    started: list[subprocess.Popen[bytes]] = []
    try:
        node = subprocess.Popen(
            [_wattledger(), "node", "--port", str(rpc_port)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(node)
        chain_id: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_chainId",
            "params": [],
        }
        _wait("anvil", lambda: requests.post(rpc_url, json=chain_id, timeout=1).ok, node, 30)
        serve = subprocess.Popen(
            [
                _wattledger(),
                "serve",
                "--rpc-url",
                rpc_url,
                "--port",
                str(api_port),
                "--interval-seconds",
                str(INTERVAL_SECONDS),
                "--fund-dev-accounts",
                "--deployments-dir",
                str(tmp_path / "deployments"),
                "--db",
                str(tmp_path / "market.db"),
                "--tick-seconds",
                "0.25",
                "--settle-poll-seconds",
                "0.5",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(serve)
        health = f"{api_url}/health"
        _wait("the market API", lambda: requests.get(health, timeout=1).ok, serve, 120)
        yield rpc_url, api_url
    except BaseException:
        sys.stderr.write((tmp_path / "servers.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        for process in reversed(started):
            _stop(process)
        log.close()


# -- the rest of the world --------------------------------------------------------------------


def _advance_chain_to(w3: Web3, timestamp: int) -> None:
    """Move anvil's clock so that the next block carries at least ``timestamp``; mine one."""
    gap = timestamp - int(w3.eth.get_block("pending")["timestamp"])
    if gap > 0:
        w3.provider.make_request("evm_increaseTime", [gap])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _fund(w3: Web3, market: dict[str, Any], participant: str) -> None:
    """Gas money from, and settlement tokens minted by, the deployer (an unlocked anvil
    account that is the operator and holds every role)."""
    deployer = market["operator"]
    tx = w3.eth.send_transaction(
        {"from": deployer, "to": participant, "value": Web3.to_wei(1, "ether")}
    )
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    token = w3.eth.contract(address=market["token"]["address"], abi=TOKEN_MINT_ABI)
    tx = token.functions.mint(participant, MINTED).transact({"from": deployer})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def _dev_account(index: int) -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account


def _place(api_url: str, ns: dict[str, Any], trader: LocalAccount, side: int, price: int) -> None:
    """An order of ``trader`` for the guide's interval, signed as the guide signs."""
    order = {
        "participant": trader.address,
        "interval": ns["t"],
        "side": side,
        "quantityWh": SOLD_WH,
        "pricePerWh": price,
        "nonce": time.time_ns(),
        "expiry": int(time.time()) + 3600,
        "node": "root",
    }
    template = ns["market"]["eip712"]["messages"]["order"]["template"]
    typed = encode_typed_data(full_message={**template, "message": order})
    signature = Account.sign_message(typed, trader.key).signature.to_0x_hex()
    response = requests.post(
        f"{api_url}/orders", json={"order": order, "signature": signature}, timeout=30
    )
    assert response.status_code == 201, response.text


def _counter_orders(api_url: str, ns: dict[str, Any]) -> None:
    """The buyer's bid that the participant's ask meets, and three orders that do not trade."""
    buyer = _dev_account(1)
    assert buyer.address == BUYER_ADDRESS
    _place(api_url, ns, buyer, 0, BID_PRICE_PER_WH)
    for index, (side, price) in enumerate(OTHER_ORDERS, start=2):
        _place(api_url, ns, _dev_account(index), side, price)


def _await_reading_on_chain(ns: dict[str, Any], w3: Web3, seconds: float = 60) -> None:
    """Wait until the settlement service has relayed the participant's reading on-chain."""
    market = w3.eth.contract(address=ns["market"]["contracts"]["EnergyMarket"], abi=READING_OF_ABI)
    give_up = time.monotonic() + seconds
    while not market.functions.readingOf(ns["t"], ns["account"].address).call()[0]:
        assert time.monotonic() < give_up, "the settlement service did not relay the reading"
        time.sleep(0.2)


def _documented(path: str, templates: list[str]) -> bool:
    """Whether ``path`` (with ``{...}`` placeholders) is one of the OpenAPI path templates."""
    pattern = re.sub(r"\{[^}]*\}", "{}", path)
    return any(re.sub(r"\{[^}]*\}", "{}", t) == pattern for t in templates)


# -- the test ---------------------------------------------------------------------------------


def test_guide_blocks_parse() -> None:
    """The guide has a block under every step this test hooks into, and nothing else runs."""
    headings = [heading for heading, _ in guide_blocks(GUIDE.read_text())]
    for step in (STEP_CONNECT, STEP_REGISTER, STEP_CANCEL, STEP_READINGS, STEP_SETTLEMENT):
        assert step in headings, f"the guide has no python block under '## {step}'"
    assert headings[-1] == STEP_WITHDRAW
    for _, code in guide_blocks(GUIDE.read_text()):
        compile(code, str(GUIDE), "exec")
        assert not re.search(
            r"^\s*(from|import)\s+(ledger|chain|market|settlement|audit|"
            r"simulation|deploy)\b",
            code,
            re.MULTILINE,
        ), code


def test_participant_guide_end_to_end(servers: tuple[str, str]) -> None:
    rpc_url, api_url = servers
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    participant = Account.create()
    _fund(w3, requests.get(f"{api_url}/market", timeout=10).json(), participant.address)

    # Every path the snippets call is in the OpenAPI document.
    text = GUIDE.read_text()
    openapi = requests.get(f"{api_url}/openapi.json", timeout=10).json()
    templates = list(openapi["paths"])
    used = set(re.findall(r'\{API_URL\}(/[^"\s]*)', text))
    assert used, "the guide calls no API path"
    for path in sorted(used):
        path = re.sub(r"\{[^}]*\}", "{x}", path)
        assert _documented(path, templates), f"{path} is not in /openapi.json"

    ns: dict[str, Any] = {
        "__name__": "participant_guide",
        "API_URL": api_url,
        "RPC_URL": rpc_url,
        "PARTICIPANT_KEY": participant.key.to_0x_hex(),
    }
    blocks = guide_blocks(text)
    for index, (heading, code) in enumerate(blocks):
        last_of_step = index + 1 == len(blocks) or blocks[index + 1][0] != heading
        first_of_step = index == 0 or blocks[index - 1][0] != heading
        if first_of_step and heading == STEP_READINGS:
            _advance_chain_to(w3, ns["interval_end"](ns["t"]))
        if first_of_step and heading == STEP_SETTLEMENT:
            _await_reading_on_chain(ns, w3)
            deadline = int(
                requests.get(f"{api_url}/intervals/{ns['t']}/settlement", timeout=10).json()[
                    "deadline"
                ]
            )
            _advance_chain_to(w3, deadline)
        exec(compile(code, f"{GUIDE.name}: {heading}", "exec"), ns)
        if last_of_step and heading == STEP_CANCEL:
            _counter_orders(api_url, ns)

    # Placed: the order was accepted open, with its EIP-712 digest as its id.
    order_id = ns["order_id"]
    assert ns["placed"]["id"] == order_id and ns["placed"]["status"] == "open"
    # Matched: against the bid, for all 2 kWh at the uniform price.
    trades = ns["my_trades"]
    assert [(tr["buyer"], tr["quantityWh"]) for tr in trades] == [(BUYER_ADDRESS, SOLD_WH)]
    assert ns["clearing"]["pricePerWh"] == str(CLEARING_PRICE_PER_WH)
    # Committed: on-chain, with the book root of the published set: the participant's order
    # (not the cancelled one), the buyer's bid and the three others.
    assert len(ns["book"]["orders"]) == 2 + len(OTHER_ORDERS)
    assert ns["clearing"]["state"] == "committed" and ns["clearing"]["commit"]["txHash"]
    assert ns["book_root_on_chain"].hex() == ns["book"]["bookRoot"][2:]
    # Settled: the seller delivered everything and was paid in full.
    assert ns["settlement"]["status"] == "settled" and ns["settlement"]["ok"]
    assert int(ns["mine"]["netChange"]) == SOLD_WH * CLEARING_PRICE_PER_WH
    # Withdrawn: deposit, released bond and payment are back in the participant's tokens.
    token = w3.eth.contract(address=ns["market"]["token"]["address"], abi=TOKEN_MINT_ABI)
    balance = token.functions.balanceOf(participant.address).call()
    assert balance == MINTED + SOLD_WH * CLEARING_PRICE_PER_WH
