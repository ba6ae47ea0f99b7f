"""Chain connection: the embedded eth-tester chain by default, or any JSON-RPC endpoint.

:func:`connect` is the one way the rest of the system gets a :class:`Chain`: a connected
``Web3`` plus funded development accounts whose private keys are known, and the few test
controls (advance time, mine, snapshot) that both eth-tester and anvil offer.

* ``connect()`` starts an in-process eth-tester chain (py-evm, Prague rules) with ten
  accounts of 1,000,000 ETH each; nothing needs to be running.
* ``connect("http://127.0.0.1:8545")`` reaches anvil (``wattledger node``) or any other
  JSON-RPC chain. Anvil's ten default accounts are known; on another chain pass the
  deployer's key with ``private_keys`` (or set ``WATTLEDGER_PRIVATE_KEY``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from deploy.errors import ChainConnectionError

ChainKind = Literal["eth-tester", "json-rpc"]

# The well-known development mnemonic anvil (and hardhat) fund by default. These keys are
# public knowledge and only ever hold test funds.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_CHAIN_ID = 31337
DEV_ACCOUNT_COUNT = 10
PRIVATE_KEY_ENV = "WATTLEDGER_PRIVATE_KEY"
RPC_TIMEOUT_SECONDS = 30


@dataclass
class Chain:
    """A connected chain with funded accounts whose keys are known.

    ``signers`` are the accounts this process can sign for; ``accounts`` their addresses
    (the first is the default deployer and operator).
    """

    w3: Web3
    kind: ChainKind
    rpc_url: str | None
    signers: tuple[LocalAccount, ...]
    _tester: Any = field(default=None, repr=False)

    @property
    def chain_id(self) -> int:
        """The chain id reported by the node."""
        return int(self.w3.eth.chain_id)

    @property
    def accounts(self) -> tuple[ChecksumAddress, ...]:
        """Addresses of the funded accounts this process can sign for."""
        return tuple(Web3.to_checksum_address(s.address) for s in self.signers)

    @property
    def is_embedded(self) -> bool:
        """True for the in-process eth-tester chain."""
        return self.kind == "eth-tester"

    def add_signer(self, account: LocalAccount) -> None:
        """Let transactions ``from`` this account be signed locally and sent raw."""
        self.w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)

    def timestamp(self) -> int:
        """Timestamp (seconds) of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        if self._tester is not None:
            self._tester.mine_blocks(blocks)
            return
        for _ in range(blocks):
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def advance_time(self, seconds: int) -> None:
        """Move chain time forward by ``seconds`` and mine a block at the new time."""
        if seconds < 0:
            raise ValueError("cannot move chain time backwards")
        if self._tester is not None:
            # time_travel mines a block just before the target; the next one lands on it.
            self._tester.time_travel(self.timestamp() + seconds)
            self._tester.mine_blocks(1)
            return
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.mine(1)

    def snapshot(self) -> Any:
        """Take a snapshot of chain state; pass the result to :meth:`revert`."""
        if self._tester is not None:
            return self._tester.take_snapshot()
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snapshot_id: Any) -> None:
        """Return chain state to a snapshot taken with :meth:`snapshot`."""
        if self._tester is not None:
            self._tester.revert_to_snapshot(snapshot_id)
            return
        self.w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]


def anvil_dev_accounts(count: int = DEV_ACCOUNT_COUNT) -> tuple[LocalAccount, ...]:
    """Return anvil's default funded accounts (derived from its public test mnemonic)."""
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        for i in range(count)
    )


def _embedded() -> Chain:
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    backend = PyEVMBackend()
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    signers = tuple(Account.from_key(key) for key in backend.account_keys)
    return Chain(w3=w3, kind="eth-tester", rpc_url=None, signers=signers, _tester=tester)


def _reason(err: Exception) -> str:
    text = str(err)
    if "Connection refused" in text:
        return "connection refused (nothing is listening there)"
    if "timed out" in text.lower():
        return "the connection timed out"
    return f"{type(err).__name__}: {text[:300]}"


def _json_rpc(rpc_url: str, private_keys: tuple[str, ...]) -> Chain:
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_SECONDS}))
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception as err:  # requests, JSON and RPC errors all mean "not a usable chain"
        raise ChainConnectionError(
            f"Cannot reach a chain at {rpc_url}: {_reason(err)}.",
            hint=(
                "Start a local node with `wattledger node` (anvil on 127.0.0.1:8545), check the "
                "URL and port, or leave out --rpc-url to use the embedded chain."
            ),
        ) from None
    env_key = os.environ.get(PRIVATE_KEY_ENV)
    keys = private_keys or ((env_key,) if env_key else ())
    if keys:
        signers = tuple(Account.from_key(k) for k in keys)
    elif chain_id == ANVIL_CHAIN_ID:
        signers = anvil_dev_accounts()
    else:
        raise ChainConnectionError(
            f"The chain at {rpc_url} (chain id {chain_id}) is not a local anvil, so its "
            "funded accounts are unknown.",
            hint=f"Set {PRIVATE_KEY_ENV} to the private key of a funded deployer account.",
        )
    chain = Chain(w3=w3, kind="json-rpc", rpc_url=rpc_url, signers=signers)
    unlocked = {a.lower() for a in w3.eth.accounts} if chain_id == ANVIL_CHAIN_ID else set()
    for signer in signers:
        if signer.address.lower() not in unlocked:
            chain.add_signer(signer)
    return chain


def connect(rpc_url: str | None = None, private_keys: tuple[str, ...] = ()) -> Chain:
    """Return a connected :class:`Chain`: embedded eth-tester, or the JSON-RPC ``rpc_url``.

    Raises :class:`ChainConnectionError` when the endpoint does not answer, or answers but
    no funded account is known for it.
    """
    if rpc_url is None:
        return _embedded()
    return _json_rpc(rpc_url, private_keys)
