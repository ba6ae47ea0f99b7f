"""The contract's records: terms, trades, readings, and the answers of its views.

Plain frozen values shared by every part, from clearing to audit. Units are in the
names: energy in Wh, money in token base units, prices in base units per Wh, all ``int``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_typing import ChecksumAddress

from ledger.grid_nodes import DEFAULT_NODE

ZERO_ORDER_ID = b"\x00" * 32


@dataclass(frozen=True)
class Terms:
    """Market terms snapshotted by a commit.

    ``penalty_price_per_wh`` is both the bond rate and the penalty rate (base units per Wh);
    ``tolerance_bps`` the shortfall tolerated without penalty, in basis points of quantity;
    ``reading_window_seconds`` how long after an interval's end readings are accepted.
    """

    penalty_price_per_wh: int
    tolerance_bps: int
    reading_window_seconds: int = 3600


@dataclass(frozen=True)
class Trade:
    """A cleared trade (a dynamic energy contract once committed)."""

    buyer: str
    seller: str
    quantity_wh: int
    price_per_wh: int
    buy_order_id: bytes = ZERO_ORDER_ID
    sell_order_id: bytes = ZERO_ORDER_ID
    sell_price_per_wh: int | None = None
    """What the seller receives per delivered Wh on a grid (GRID.md §8); None: ``price_per_wh``.
    ``price_per_wh`` is what the buyer pays; the difference goes to the grid operator."""

    @property
    def seller_price_per_wh(self) -> int:
        """The seller's price: ``sell_price_per_wh``, or ``price_per_wh`` off a grid."""
        return self.price_per_wh if self.sell_price_per_wh is None else self.sell_price_per_wh

    @property
    def grid_fee_per_wh(self) -> int:
        """``price_per_wh - seller price``: the grid operator's per delivered Wh."""
        return self.price_per_wh - self.seller_price_per_wh

    @property
    def link_price_word(self) -> int:
        """The trade chain's price word: ``price | (price - sellPrice) << 128`` (equal to the
        price off a grid, so a non-grid link is unchanged)."""
        # Masked: a seller price above the price (which commit refuses) still encodes.
        return self.price_per_wh | (self.grid_fee_per_wh & PRICE_MASK) << 128


PRICE_MASK = (1 << 128) - 1


def trade_from_link_price(
    buyer: str, seller: str, quantity_wh: int, price_word: int, **ids: bytes
) -> Trade:
    """The trade a chain link's (or SettleTrade's) price word describes."""
    price, fee = price_word & PRICE_MASK, price_word >> 128
    sell = None if fee == 0 else price - fee
    return Trade(buyer, seller, quantity_wh, price, sell_price_per_wh=sell, **ids)


@dataclass(frozen=True)
class SignedOrder:
    """An order as its participant signed it (EIP-712 ``Order``), with the signature and its
    digest ``order_id``: what a commit passes so the contract can check the trades it fills.

    ``side`` is 0 for a bid, 1 for an ask; ``signature`` the 65-byte ``0x`` hex signature;
    ``node`` the grid node id it names (part of the signed message)."""

    participant: str
    interval: int
    side: int
    quantity_wh: int
    price_per_wh: int
    nonce: int
    expiry: int
    signature: str
    order_id: bytes
    node: str = DEFAULT_NODE
    """The grid node the order is signed for (``root`` off a grid)."""


@dataclass(frozen=True)
class Reading:
    """A meter reading of one participant for one interval (signature checked elsewhere)."""

    participant: str
    interval: int
    imported_wh: int
    exported_wh: int


@dataclass(frozen=True)
class SellerPosition:
    """A trade's seller totals fixed at commit: ``sold_wh`` (S) and ``sold_before_wh`` (B_k)."""

    sold_wh: int
    sold_before_wh: int


def seller_positions(trades: Sequence[Trade]) -> tuple[SellerPosition, ...]:
    """Each trade's seller totals in commit order: S (seller's sold total) and B_k."""
    running: dict[str, int] = {}
    before: list[int] = []
    for trade in trades:
        b = running.get(trade.seller, 0)
        before.append(b)
        running[trade.seller] = b + trade.quantity_wh
    return tuple(
        SellerPosition(sold_wh=running[t.seller], sold_before_wh=b)
        for t, b in zip(trades, before, strict=True)
    )


STATUS_NAMES = ("none", "committed", "settled", "committing")


@dataclass(frozen=True)
class Balance:
    """Escrow balance of one participant, base units."""

    free: int
    locked: int


@dataclass(frozen=True)
class ParticipantInfo:
    """Registration record of one address."""

    meter: ChecksumAddress
    participant_index: int
    registered: bool


@dataclass(frozen=True)
class IntervalInfo:
    """Stored state of one interval."""

    status: str
    trade_count: int
    cursor: int
    deadline: int
    tolerance_bps: int
    penalty_price_per_wh: int
    book_root: bytes
    remaining_hash: bytes

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> IntervalInfo:
        """The struct ``intervalInfo(t)`` returns, as its eight decoded ABI values.

        A status the contract does not define (only a different contract answers one) keeps
        its number, so whoever reads it can report it rather than crash."""
        status, count, cursor, deadline, tol, pp, root, remaining = values
        number = int(status)
        return cls(
            STATUS_NAMES[number] if 0 <= number < len(STATUS_NAMES) else str(number),
            int(count),
            int(cursor),
            int(deadline),
            int(tol),
            int(pp),
            bytes(root),
            bytes(remaining),
        )
