"""What the settlement account's transactions pay, and what a replacement pays more.

EIP-1559 ``maxFeePerGas = 2 * baseFee + tip`` with the node's suggested tip (``eth_gasPrice``
as a legacy ``gasPrice`` on a chain without a base fee, like eth-tester's headers). A
replacement of a transaction that stayed unmined pays at least :attr:`TxPolicy.bump
<settlement.tx.TxPolicy.bump>` (9/8) of the fees it replaces, rounded up: nodes ask for
+10 %. All amounts in wei.

A :class:`~chain.fee_cap.FeeCap` (``--max-fee-gwei``, ``--max-priority-fee-gwei``) clamps
both (:func:`priced`): while the base fee plus the tip is above the cap nothing is sent
(:class:`~settlement.errors.FeeAboveCap`), and a replacement that the cap leaves no room to
bump is not sent either: the transaction in the pool is waited for instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chain.errors import ChainUnavailable
from chain.fee_cap import FeeCap, format_gwei
from chain.rpc import to_int
from settlement.chain_reader import ChainReader
from settlement.journal import TxRecord

DEFAULT_PRIORITY_FEE_WEI = 1_000_000_000
"""Tip used when the node does not suggest one (1 gwei)."""


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fees (``max_fee``, ``priority_fee``) or a legacy ``gas_price``, in wei;
    ``base_fee``: the base fee of the block they were read at (None: not known), carried
    for the fee cap and its messages."""

    max_fee: int | None = None
    priority_fee: int | None = None
    gas_price: int | None = None
    base_fee: int | None = None

    def bumped(self, bump: tuple[int, int]) -> Fees:
        """These fees times ``bump``, rounded up (a replacement's minimum)."""
        num, den = bump

        def up(value: int | None) -> int | None:
            return None if value is None else -(-value * num // den)

        return Fees(up(self.max_fee), up(self.priority_fee), up(self.gas_price), self.base_fee)

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
            self.base_fee if self.base_fee is not None else other.base_fee,
        )
        if fees.max_fee is not None and fees.priority_fee is not None:
            fees = Fees(
                max(fees.max_fee, fees.priority_fee),
                fees.priority_fee,
                fees.gas_price,
                fees.base_fee,
            )
        return fees

    def covers(self, floor: Fees) -> bool:
        """True when every fee here is at least ``floor``'s (a valid replacement of it)."""
        pairs = (
            (self.max_fee, floor.max_fee),
            (self.priority_fee, floor.priority_fee),
            (self.gas_price, floor.gas_price),
        )
        return all(b is None or (a is not None and a >= b) for a, b in pairs)

    def describe(self) -> str:
        """These fees for people: ``max fee 3 gwei, tip 1 gwei`` or ``gas price 2 gwei``."""
        if self.gas_price is not None:
            return f"gas price {format_gwei(self.gas_price)}"
        max_fee, tip = format_gwei(self.max_fee or 0), format_gwei(self.priority_fee or 0)
        return f"max fee {max_fee}, tip {tip}"

    @classmethod
    def of(cls, tx: TxRecord) -> Fees:
        """The fees a journalled transaction paid."""
        return cls(tx.max_fee, tx.priority_fee, tx.gas_price)


def priced(current: Fees, floor: Fees | None, cap: FeeCap) -> Fees | None:
    """What a transaction pays: the ``current`` fees, at least ``floor`` (the minimum of a
    replacement; None for a first transaction), clamped to ``cap``. None when it must not
    be sent: the base fee plus the capped tip is above the cap, or the cap leaves no room
    above ``floor``."""
    want = current if floor is None else current.at_least(floor)
    if not cap.active:
        return want
    if want.gas_price is not None:  # legacy pricing: no base fee to wait for
        fees = Fees(gas_price=cap.max_fee(want.gas_price))
    else:
        assert want.max_fee is not None and want.priority_fee is not None
        tip = cap.tip(want.priority_fee)
        if current.base_fee is not None and cap.blocks(current.base_fee, tip):
            return None
        max_fee = cap.max_fee(want.max_fee)
        fees = Fees(max_fee=max_fee, priority_fee=min(tip, max_fee), base_fee=current.base_fee)
    if floor is not None and not fees.covers(floor):
        return None
    return fees


def cap_message(current: Fees, cap: FeeCap, *, replacing: int | None = None) -> str:
    """Why a transaction waits: the current base fee (and tip) against the cap; ``replacing``
    names the nonce of an unmined transaction the cap leaves no room to replace."""
    base = "unknown" if current.base_fee is None else format_gwei(current.base_fee)
    tip = format_gwei(cap.tip(current.priority_fee or current.gas_price or 0))
    what = (
        f"no room under the fee cap ({cap.describe()}) to replace the transaction at nonce "
        f"{replacing}; base fee {base}, tip {tip}"
        if replacing is not None
        else f"the base fee is {base} (tip {tip}), above the fee cap ({cap.describe()})"
    )
    return f"{what}; nothing sent, waiting for the base fee to fall"


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
            base_fee = to_int(base)
            fees = Fees(max_fee=2 * base_fee + tip, priority_fee=tip, base_fee=base_fee)
        self._fees = (number, fees)
        return fees

    def _tip(self) -> Any:
        return self.reader.rpc("eth_maxPriorityFeePerGas", [])


__all__ = [
    "DEFAULT_PRIORITY_FEE_WEI",
    "FeeReader",
    "Fees",
    "batch_answer",
    "cap_message",
    "priced",
]
