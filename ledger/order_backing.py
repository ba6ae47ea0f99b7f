"""Signed orders that back a given list of trades, for tools that start from trades.

A commit needs every trade backed by its parties' signed orders. Benchmarks and tests that
build trades directly (rather than clearing signed orders) get the orders here: one bid per
buyer for everything it buys, at its highest trade price, and one ask per seller for
everything it sells, at its lowest, each signed with the party's key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import coincurve

from ledger.addresses import checksum_address
from ledger.eip712 import DEFAULT_NODE, Domain, order_digest, sign_digest
from ledger.records import SignedOrder, Trade

DEFAULT_EXPIRY = 2**40
"""An expiry far in the future (Unix seconds, about year 36812)."""


def sign_order(
    key: bytes | coincurve.PrivateKey,
    domain: Domain,
    participant: str,
    interval: int,
    side: int,
    quantity_wh: int,
    price_per_wh: int,
    nonce: int = 0,
    expiry: int = DEFAULT_EXPIRY,
    node: str = DEFAULT_NODE,
) -> SignedOrder:
    """An EIP-712 ``Order`` for grid node ``node``, signed with ``key``."""
    party = checksum_address(participant)
    order_id = order_digest(
        domain.separator, party, interval, side, quantity_wh, price_per_wh, nonce, expiry, node
    )
    signature = sign_digest(key, order_id)
    return SignedOrder(
        party, interval, side, quantity_wh, price_per_wh, nonce, expiry, signature, order_id, node
    )


def back_trades(
    t: int,
    trades: Sequence[Trade],
    domain: Domain,
    keys: Mapping[str, bytes | coincurve.PrivateKey],
    nonce: int = 0,
    nodes: Mapping[str, str] | None = None,
) -> tuple[tuple[Trade, ...], dict[bytes, SignedOrder]]:
    """``trades`` (of interval ``t``) with the ids of orders that back them, and those orders.

    ``keys`` maps each party (any address spelling) to its private key. Orders are per
    (party, side), a bid's limit the highest price of its trades, an ask's the lowest seller
    price (the price off a grid); ``nonce`` goes into every order (vary it to get other ids);
    ``nodes`` maps a party (checksum address) to the grid node its orders name (default root)."""
    by_key: dict[str, bytes | coincurve.PrivateKey] = {
        checksum_address(p): k for p, k in keys.items()
    }
    totals: dict[tuple[str, int], list[int]] = {}
    for trade in trades:
        sell_price = (
            trade.price_per_wh if trade.sell_price_per_wh is None else trade.sell_price_per_wh
        )
        for party, side, price in (
            (trade.buyer, 0, trade.price_per_wh),
            (trade.seller, 1, sell_price),
        ):
            entry = totals.setdefault((checksum_address(party), side), [0, price])
            entry[0] += trade.quantity_wh
            entry[1] = max(entry[1], price) if side == 0 else min(entry[1], price)
    orders: dict[tuple[str, int], SignedOrder] = {}
    for (party, side), (quantity, limit) in totals.items():
        if party not in by_key:
            raise KeyError(f"no key for {party}")
        node = (nodes or {}).get(party, DEFAULT_NODE)
        orders[party, side] = sign_order(
            by_key[party], domain, party, t, side, quantity, limit, nonce, node=node
        )
    backed = tuple(
        replace(
            trade,
            buy_order_id=orders[checksum_address(trade.buyer), 0].order_id,
            sell_order_id=orders[checksum_address(trade.seller), 1].order_id,
        )
        for trade in trades
    )
    return backed, {o.order_id: o for o in orders.values()}


__all__ = ["DEFAULT_EXPIRY", "back_trades", "sign_order"]
