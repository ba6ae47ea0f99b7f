"""What the settlement account's transactions pay, and what a replacement pays more.

EIP-1559 ``maxFeePerGas = 2 * baseFee + tip`` with the node's suggested tip (``eth_gasPrice``
as a legacy ``gasPrice`` on a chain without a base fee, like eth-tester's headers). A
replacement of a transaction that stayed unmined pays at least :attr:`TxPolicy.bump
<settlement.tx.TxPolicy.bump>` (9/8) of the fees it replaces, rounded up: nodes ask for
+10 %. All amounts in wei.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chain.errors import ChainUnavailable
from chain.rpc import to_int
from settlement.chain_reader import ChainReader
from settlement.journal import TxRecord

DEFAULT_PRIORITY_FEE_WEI = 1_000_000_000
"""Tip used when the node does not suggest one (1 gwei)."""


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fees (``max_fee``, ``priority_fee``) or a legacy ``gas_price``, in wei."""

    max_fee: int | None = None
    priority_fee: int | None = None
    gas_price: int | None = None

    def bumped(self, bump: tuple[int, int]) -> Fees:
        """These fees times ``bump``, rounded up (a replacement's minimum)."""
        num, den = bump

        def up(value: int | None) -> int | None:
            return None if value is None else -(-value * num // den)

        return Fees(up(self.max_fee), up(self.priority_fee), up(self.gas_price))

    def at_least(self, other: Fees) -> Fees:
        """Field-wise maximum of these fees and ``other`` (same kind)."""

        def most(a: int | None, b: int | None) -> int | None:
            if a is None:
                return b
            return a if b is None else max(a, b)

        fees = Fees(
            most(self.max_fee, other.max_fee),
            most(self.priority_fee, other.priority_fee),
            most(self.gas_price, other.gas_price),
        )
        if fees.max_fee is not None and fees.priority_fee is not None:
            fees = Fees(max(fees.max_fee, fees.priority_fee), fees.priority_fee, fees.gas_price)
        return fees

    @classmethod
    def of(cls, tx: TxRecord) -> Fees:
        """The fees a journalled transaction paid."""
        return cls(tx.max_fee, tx.priority_fee, tx.gas_price)


def batch_answer(value: Any, what: str) -> Any:
    """One answer of :meth:`ChainReader.rpc_batch`: the value, or its error raised."""
    if isinstance(value, Exception):
        raise value
    if value is None:
        raise RuntimeError(f"the node has no answer for {what}")
    return value


class FeeReader:
    """Fees for a new transaction, read from the chain ``reader`` reads.

    The fees read at a block are kept with its number, and given again on the embedded
    chain while that block is the latest.
    """

    def __init__(self, reader: ChainReader) -> None:
        self.reader = reader
        self._fees: tuple[int, Fees] | None = None
        """Fees read at a block (its number), reused while it is the latest."""

    def current(self) -> Fees:
        """What a new transaction should pay now (read at most once per block)."""
        if self.reader.client.chain.is_embedded:
            number = self.reader.latest_block()
            if self._fees is not None and self._fees[0] == number:
                return self._fees[1]
            fees = self.after(self.reader.block("latest"), self._tip)
        else:
            latest, tip = self.reader.rpc_batch(
                [("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", [])]
            )
            fees = self.after(batch_answer(latest, "the latest block"), lambda: tip)
        return fees

    def after(self, latest: Any, tip_answer: Callable[[], Any]) -> Fees:
        """Fees for a transaction after the block header ``latest``; ``tip_answer`` gives the
        node's suggested tip (or raises, or returns the error, where it has none)."""
        if not latest:
            raise RuntimeError("the node has no latest block")
        number = to_int(latest["number"])
        base = latest.get("baseFeePerGas")  # eth-tester's snake_case header: legacy pricing
        if base is None:
            fees = Fees(gas_price=to_int(self.reader.rpc("eth_gasPrice", [])))
        else:
            try:
                answer = tip_answer()
                if isinstance(answer, Exception):
                    raise answer
                tip = to_int(answer)
            except ChainUnavailable:
                raise
            except Exception:  # a node without the method: a conventional tip
                tip = DEFAULT_PRIORITY_FEE_WEI
            tip = max(tip, 1)
            fees = Fees(max_fee=2 * to_int(base) + tip, priority_fee=tip)
        self._fees = (number, fees)
        return fees

    def _tip(self) -> Any:
        return self.reader.rpc("eth_maxPriorityFeePerGas", [])


__all__ = ["DEFAULT_PRIORITY_FEE_WEI", "FeeReader", "Fees", "batch_answer"]
