"""The simulation's chain clients: the same answers as the originals, fewer or cheaper requests.

* :class:`SimulationLedgerClient`: the contract client, with fixed gas limits and view calls
  straight to eth-tester's py-evm backend (:func:`fixed_gas_limit` gives the limit);
* :class:`SimulationLedger`: the market service's ledger port, registrations answered from
  memory once read;
* :class:`SimulationChainReader`: the settlement service's chain reader, every request timed
  as ``chain``.

Each class says how it saves requests, and why its answers are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import get_abi_output_types
from eth_utils.address import to_checksum_address
from web3.contract.contract import ContractFunction

from chain.client import LedgerClient
from chain.connection import Chain
from chain.reverts import mapped_reverts
from market.chain_ledger import ChainLedger
from settlement.chain_reader import ChainReader
from simulation.stopwatch import Stopwatch


class SimulationLedgerClient(LedgerClient):
    """The :class:`LedgerClient` of a simulation: cheaper on the embedded chain.

    ``gas_limit``: when set, transactions carry this gas limit instead of an estimate. On
    eth-tester an estimate is a binary search that runs the transaction a dozen times in
    py-evm, ten times the cost of running it once; a fixed limit below the block's is safe
    there (the receipt still shows the gas used). View calls on eth-tester go straight to
    its py-evm backend: the same execution on the same state, without the request
    formatting of web3 and eth-tester, which costs three times the EVM's own work.
    """

    def __init__(
        self,
        chain: Chain,
        address: str,
        stopwatch: Stopwatch,
        sender: str | None = None,
        gas_limit: int | None = None,
    ) -> None:
        super().__init__(chain, address, sender=sender, gas_limit=gas_limit)
        self.stopwatch = stopwatch
        self._sender_bytes = bytes.fromhex(self.sender[2:])
        tester = getattr(chain.w3.provider, "ethereum_tester", None)
        self._backend: Any = getattr(tester, "backend", None) if chain.is_embedded else None

    def _call(self, fn: ContractFunction) -> Any:
        if self._backend is None:
            # An explicit sender spares the provider a lookup of the node's accounts.
            with mapped_reverts():
                return fn.call({"from": self.sender})
        with self.stopwatch.chain_call(), mapped_reverts():
            return self._backend_call(fn)

    def _backend_call(self, fn: ContractFunction) -> Any:
        """``fn.call()`` on eth-tester's py-evm backend, decoded as web3 decodes it.

        Reverts raise eth-tester's ``TransactionFailed`` as they do through web3, so
        :func:`mapped_reverts` maps them the same way.
        """
        output_types = get_abi_output_types(fn.abi)
        raw = self._backend.call(
            {
                "from": self._sender_bytes,
                "to": bytes.fromhex(str(fn.address)[2:]),
                "data": bytes.fromhex(fn._encode_transaction_data()[2:]),
                "value": 0,
                "gas": 30_000_000,
            },
            "latest",
        )
        values = [
            to_checksum_address(v) if kind == "address" else v
            for kind, v in zip(output_types, abi_decode(output_types, raw), strict=True)
        ]
        return values[0] if len(values) == 1 else values


class SimulationLedger(ChainLedger):
    """The market service's ledger port in a simulation: registrations answered from memory.

    At every gate closure the market service re-reads each party's registration (a
    deregistered party would make the commit revert) and free balance (a participant may
    have withdrawn). On a simulation's own fresh deployment the driver is the only
    registrar and deregisters nobody, so a registration, once read from the chain, stays
    true for the run; caching it halves those reads. Balances are always read from the
    chain.
    """

    def __init__(self, client: LedgerClient) -> None:
        super().__init__(client)
        self._registered: set[str] = set()

    def is_registered(self, participant: str) -> bool:
        key = participant.lower()
        if key in self._registered:
            return True
        registered = super().is_registered(participant)
        if registered:
            self._registered.add(key)
        return registered


def fixed_gas_limit(chain: Chain) -> int | None:
    """Nine tenths of the embedded chain's block gas limit; ``None`` (estimate) on a
    JSON-RPC node, where estimates are cheap and a block-sized limit may not be accepted."""
    if not chain.is_embedded:
        return None
    return int(chain.w3.eth.get_block("latest")["gasLimit"]) * 9 // 10


class SimulationChainReader(ChainReader):
    """The settlement service's chain reader with every request timed as ``chain`` (on a
    JSON-RPC node the reader talks over its own HTTP session, past web3's provider)."""

    def __init__(self, client: LedgerClient, stopwatch: Stopwatch, *, start_block: int = 0) -> None:
        super().__init__(client, start_block=start_block)
        self.stopwatch = stopwatch

    def rpc(self, method: str, params: Sequence[Any]) -> Any:
        with self.stopwatch.chain_call():
            return super().rpc(method, params)


__all__ = [
    "SimulationChainReader",
    "SimulationLedger",
    "SimulationLedgerClient",
    "fixed_gas_limit",
]
