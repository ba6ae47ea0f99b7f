"""A dry run of a transaction before it is sent: ``eth_call`` as the next block would run it.

A transaction that would revert (a reading already on-chain, a chunk no longer at the cursor,
the window not yet open) raises the mapped :class:`~ledger.contract_errors.LedgerError` here,
before any gas is spent; one whose gas limit is too small raises
:class:`~settlement.errors.OutOfGas`. :class:`~settlement.tx.TxSender` runs it before the
first broadcast (unless :attr:`TxPolicy.preflight <settlement.tx.TxPolicy.preflight>` is off)
and before every replacement.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from eth_utils.address import to_checksum_address

from chain.reverts import decode_revert, mapped_reverts
from chain.rpc import request_lock
from ledger.contract_errors import LedgerRevert
from settlement.chain_reader import ChainReader
from settlement.errors import OutOfGas

log = logging.getLogger("settlement.tx")  # the sender's log, where these lines always were


class Preflight:
    """Dry runs of transactions from ``sender`` on the chain ``reader`` reads."""

    def __init__(self, reader: ChainReader, sender: str) -> None:
        self.reader = reader
        self.w3 = reader.w3
        self.sender = sender
        self._block_overrides = True
        """Whether the node takes ``eth_call``'s block overrides (found out on first refusal)."""

    def check(self, to: str, data: bytes, gas_limit: int, when: int | None = None) -> None:
        """``eth_call`` the transaction as the next block would run it; raise its revert.

        On a JSON-RPC node this is a call on the *latest* state with the block time
        overridden to the pending block's: the pending state of a node with a mempool
        (anvil, geth) already contains our own unmined transaction, which would make its
        replacement look like a duplicate. The embedded chain mines every transaction at
        once, so its pending block is right. Raises :class:`OutOfGas` when ``gas_limit``
        would not be enough. ``when``: chain time (the pending block's timestamp) if the
        caller has just read it.
        """
        call: dict[str, Any] = {
            "from": self.sender,
            "to": to_checksum_address(to),
            "data": "0x" + data.hex(),
            "gas": hex(gas_limit),
        }
        if self.reader.client.chain.is_embedded:
            self.reader.retry("preflighting a transaction", lambda: self._call_pending(call))
            return
        if when is None:
            when = self.reader.now()
        self.reader.retry("preflighting a transaction", lambda: self._call_latest(call, when))

    def _call_pending(self, call: dict[str, Any]) -> None:
        call = {**call, "gas": int(call["gas"], 16)}
        try:
            with mapped_reverts():
                self.w3.eth.call(call, "pending")  # type: ignore[arg-type]
        except LedgerRevert as err:
            if "out of gas" in str(err).lower():  # eth-tester reports it as a revert
                raise OutOfGas(f"{call['gas']} gas would not be enough") from None
            raise

    def _call_latest(self, call: dict[str, Any], timestamp: int) -> None:
        params: list[Any] = [call, "latest"]
        if self._block_overrides:
            params += [{}, {"time": hex(timestamp)}]
        with request_lock(self.w3):
            response = self.w3.provider.make_request("eth_call", params)  # type: ignore[arg-type]
        error = response.get("error")
        if not error:
            return
        message = str(error.get("message", "")) if isinstance(error, Mapping) else str(error)
        revert_data = error.get("data") if isinstance(error, Mapping) else None
        if "out of gas" in message.lower():
            raise OutOfGas(f"{int(call['gas'], 16)} gas would not be enough: {message}")
        if isinstance(revert_data, str) and len(revert_data) >= 10:
            raise decode_revert(revert_data, message)
        if "revert" in message.lower():
            raise LedgerRevert(message)
        if self._block_overrides:  # a node without block overrides: plain latest-state call
            log.info("the node refused block overrides (%s); preflighting on latest", message)
            self._block_overrides = False
            self._call_latest(call, timestamp)
            return
        raise RuntimeError(f"eth_call failed: {message}")


__all__ = ["Preflight"]
