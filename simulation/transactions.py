"""Set-up transactions of a simulation: signed locally, sent raw, their receipts checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction

from chain.connection import Chain
from simulation.errors import SimulationError

MAX_IN_FLIGHT = 256
"""Most transactions sent to a node before their receipts are awaited. Anvil mines one block
per transaction it receives; sent back to back by the thousand (a feeder of 1,000 agents
onboards with 5,000), more of them arrive than it mines, and those left in its pool once
the last one arrived stayed pending for good (1,164 of 3,000 in one try)."""


@dataclass
class TxBatch:
    """Transactions signed locally with explicit nonces and gas limits, sent raw.

    Set-up sends a few transactions per participant. Signing locally with explicit nonces
    and gas limits spares a gas estimate per transaction (on eth-tester a binary search
    that runs the transaction a dozen times); on a JSON-RPC node the transactions travel
    back to back and their receipts are awaited together. (Packing many transactions into
    one eth-tester block was tried and is slower: py-evm recomputes the block's trie roots
    per transaction, and eth-tester looks receipts up by decoding every receipt of the
    block.)
    """

    chain: Chain
    gas_limit: int = 250_000
    sent: int = 0
    _nonces: dict[str, int] = field(default_factory=dict)
    _hashes: list[tuple[str, bytes]] = field(default_factory=list)
    _fees: tuple[int, int] | None = None

    def _fee(self) -> tuple[int, int]:
        if self._fees is None:
            block = self.chain.w3.eth.get_block("latest")
            base = int(block.get("baseFeePerGas", 0) or 0)
            tip = 10**9
            self._fees = (2 * base + tip, tip)
        return self._fees

    def send(
        self,
        account: LocalAccount,
        *,
        to: str,
        data: str = "0x",
        value: int = 0,
        gas: int | None = None,
        what: str = "",
    ) -> None:
        """Sign and send one transaction from ``account``."""
        address = account.address
        if address not in self._nonces:
            self._nonces[address] = self.chain.w3.eth.get_transaction_count(address, "pending")
        max_fee, tip = self._fee()
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain.chain_id,
            "nonce": self._nonces[address],
            "to": to_checksum_address(to),
            "value": value,
            "data": data,
            "gas": gas or self.gas_limit,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
        signed = account.sign_transaction(tx)
        tx_hash = self.chain.w3.eth.send_raw_transaction(signed.raw_transaction)
        self._nonces[address] += 1
        self.sent += 1
        self._hashes.append((what or f"transaction from {address}", bytes(tx_hash)))
        if self.chain.is_embedded or len(self._hashes) >= MAX_IN_FLIGHT:
            # On eth-tester: mined already; eth-tester finds a receipt by scanning back from
            # the newest block, so it is cheapest to check it now. On a node: see
            # MAX_IN_FLIGHT.
            self.wait()

    def call(self, account: LocalAccount, fn: ContractFunction, what: str = "") -> None:
        """Send the contract call ``fn`` from ``account``."""
        data = fn._encode_transaction_data()
        self.send(account, to=str(fn.address), data=data, what=what or fn.fn_name)

    def wait(self) -> int:
        """Check every receipt not yet checked (waiting for it); raise if a transaction
        failed. Returns the number of transactions sent in all."""
        for what, tx_hash in self._hashes:
            receipt = self.chain.wait_for_receipt(HexBytes(tx_hash))
            if receipt["status"] != 1:
                raise SimulationError(f"set-up transaction failed: {what} (0x{tx_hash.hex()})")
        self._hashes.clear()
        return self.sent


def local_account(private_key: bytes) -> LocalAccount:
    """A signing account for a 32-byte private key."""
    account: LocalAccount = Account.from_key(private_key)
    return account


__all__ = ["MAX_IN_FLIGHT", "TxBatch", "local_account"]
