"""The trade hash chain a commit stores and settlement replays (``TradeChain.sol``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from eth_utils.crypto import keccak

from ledger.abi import ADDRESS_PAD, UINT256_LIMIT, address_bytes, bytes32_word, uint_word
from ledger.addresses import checksum_address
from ledger.records import SellerPosition, Trade, seller_positions

ZERO_HASH = b"\x00" * 32


def _link(
    next_hash: bytes,
    buyer: bytes,
    seller: bytes,
    seller_index: int,
    quantity_wh: int,
    price_per_wh: int,
    position: SellerPosition,
) -> bytes:
    # abi.encode(address, address, uint256 x 5, bytes32): eight words, addresses left-padded.
    return bytes(
        keccak(
            b"".join(
                (
                    ADDRESS_PAD,
                    buyer,
                    ADDRESS_PAD,
                    seller,
                    uint_word(seller_index, UINT256_LIMIT, "seller index"),
                    uint_word(quantity_wh, UINT256_LIMIT, "quantityWh"),
                    uint_word(price_per_wh, UINT256_LIMIT, "pricePerWh"),
                    uint_word(position.sold_wh, UINT256_LIMIT, "soldWh"),
                    uint_word(position.sold_before_wh, UINT256_LIMIT, "soldBeforeWh"),
                    bytes32_word(next_hash, "next hash"),
                )
            )
        )
    )


def chain_link(
    next_hash: bytes,
    trade: Trade,
    seller_index: int,
    position: SellerPosition,
) -> bytes:
    """One link ``h_k`` of the trade hash chain (``TradeChain.hash`` in Solidity)."""
    return _link(
        next_hash,
        address_bytes(trade.buyer),
        address_bytes(trade.seller),
        seller_index,
        trade.quantity_wh,
        trade.link_price_word,
        position,
    )


def settlement_chain(
    trades: Sequence[Trade], participant_index: Mapping[str, int], tail: bytes = ZERO_HASH
) -> tuple[bytes, ...]:
    """All chain heads ``h_0 .. h_n``; ``h_0`` is what commit stores and ``h_n`` is ``tail``:
    32 zero bytes, or where a commit left unfinished stops.

    ``participant_index`` maps each seller (checksum address) to its participant index.
    """
    positions = seller_positions(trades)
    raw: dict[str, bytes] = {}
    for t in trades:
        for p in (t.buyer, t.seller):
            if p not in raw:
                raw[p] = address_bytes(p)
    heads = [tail] * (len(trades) + 1)
    for k in range(len(trades) - 1, -1, -1):
        trade = trades[k]
        index = participant_index[checksum_address(trade.seller)]
        heads[k] = _link(
            heads[k + 1],
            raw[trade.buyer],
            raw[trade.seller],
            index,
            trade.quantity_wh,
            trade.link_price_word,
            positions[k],
        )
    return tuple(heads)


def orders_digest(trades: Iterable[Trade]) -> bytes:
    """Fold of each trade's order ids in commit order (``IntervalCommitted.ordersDigest``)."""
    digest = ZERO_HASH
    for t in trades:
        digest = bytes(keccak(digest + t.buy_order_id + t.sell_order_id))
    return digest


__all__ = [
    "chain_link",
    "orders_digest",
    "settlement_chain",
]
