"""An interval's commit: its trades backed by their signed orders, split into chunks.

``commitInterval`` (``contracts/EnergyMarket.sol``) takes, per transaction (*chunk*), a
party table, the signed orders the chunk's trades fill (four words each, ascending by
EIP-712 digest), the hashes of the grid node ids those orders are signed for, one word per
trade, plus the hash-chain head after the chunk's last trade (``tailHash``, zero on the last
chunk). The contract recovers every order's signer and checks every trade against its two
orders; across chunks it allows only what keeps that check sound:

- an order comes *fresh* once: each party has a 15-bit map of (digest mod 15) of its fresh
  orders so far, and a fresh order on a set bit is refused. An order that the next chunk
  fills again is left *open* (flag :data:`ORDER_OPEN`) and *continued* there (flag
  :data:`ORDER_CONTINUED`) with its fill so far in place of its signature: the contract
  stores one digest of a chunk's open orders and fills, which the next chunk's continued
  orders must reproduce exactly. An order that a later chunk fills again is *parked* (flag
  :data:`ORDER_PARKED`: its fill is stored, about 22k gas) and *unparked* there (flag
  :data:`ORDER_UNPARKED`). Two orders of a party on one bit come fresh in one chunk (the
  earlier one's), the later one open or parked;
- a seller sells in one chunk only, so each chain link's seller total is complete.

:func:`plan_commit` builds those chunks. When everything fits one transaction it keeps the
trades' order; otherwise it groups each seller's trades together (in order of each seller's
first trade, each seller's own trades in their order, so every trade's place among its
seller's trades, which is all settlement's allocation depends on, is unchanged) and packs
whole sellers into chunks of at most :data:`MAX_COMMIT_BYTES` of calldata and the gas
budget. A seller whose trades alone exceed a chunk cannot be committed
(:class:`CommitTooLarge`).

:func:`commit_calldata` encodes one chunk; :func:`trades_of_chunk` turns a
``TradesCommitted`` event back into :class:`~ledger.records.Trade` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak

from ledger.abi import ADDRESS_PAD, UINT64_LIMIT, UINT128_LIMIT, WORD, address_bytes, bytes32_word
from ledger.addresses import checksum_address
from ledger.eip712 import compact_signature
from ledger.grid_nodes import DEFAULT_NODE, node_hash
from ledger.records import SignedOrder, Trade
from ledger.trade_chain import settlement_chain

COMMIT_SIGNATURE = (
    "commitInterval(uint64,bytes32,bytes32,address[],uint256[],bytes32[],uint256[],uint256[],"
    "bytes32)"
)
COMMIT_SELECTOR = bytes(keccak(text=COMMIT_SIGNATURE))[:4]

ORDER_CONTINUED = 1
"""Order flag: an earlier chunk left this order open; its fill continues from there."""
ORDER_OPEN = 2
"""Order flag: the next chunk continues this order."""
ORDER_UNPARKED = 4
"""Order flag: a chunk before the previous one parked this order; its fill is in storage."""
ORDER_PARKED = 8
"""Order flag: a chunk after the next continues this order (its fill is stored)."""

MAX_COMMIT_BYTES = 120_000
"""Most calldata bytes of one chunk: geth-based nodes refuse transactions above 128 KB."""
DEFAULT_CHUNK_GAS = 15_000_000
"""Gas one chunk may be estimated at: under half of a 30M block."""
MAX_POSITION = 1 << 16
"""Parties and orders per chunk (16-bit positions in the words)."""

# A conservative linear model of a chunk's gas, from bench/gas.py's measurements: a party
# costs its registration read, its balance write and a CollateralLocked log (plus a lane
# word in a commit of several chunks), an order its signature recovery, hashing and
# calldata (plus an open record when a later chunk continues it), a trade its calldata,
# checks, chain link and event word.
GAS_BASE = 160_000
GAS_PER_PARTY = 10_000
GAS_PER_ORDER = 7_000
GAS_PER_OPEN_ORDER = 1_000
GAS_PER_PARKED_ORDER = 30_000
GAS_PER_TRADE = 3_000
GAS_PER_LANE_PARTY = 3_000
FRESH_BITS = 15
"""Bits of a party's commit lane for its fresh orders (the contract's FRESH_BITS)."""
_HEAD_BYTES = 4 + 14 * WORD
"""Selector, nine head words and five array lengths."""


class CommitTooLarge(ValueError):
    """A seller's trades (with their orders and parties) do not fit one chunk."""


@dataclass(frozen=True)
class CommitChunk:
    """One ``commitInterval`` transaction's arguments."""

    parties: tuple[ChecksumAddress, ...]
    orders: tuple[int, ...]
    """Four words per order (see the contract's NatSpec)."""
    trades: tuple[int, ...]
    """One word per trade."""
    tail_hash: bytes
    first_index: int
    sell_prices: tuple[int, ...] = ()
    """Seller prices, two uint128 per word (trade 2k low, 2k+1 high); empty when every
    trade's seller price is its price (see :func:`sell_price_words`)."""
    nodes: tuple[bytes, ...] = (node_hash(DEFAULT_NODE),)
    """keccak256 of each grid node id the chunk's orders name, ascending; an order's first
    word carries its node's position here."""

    @property
    def trade_count(self) -> int:
        """Trades in this chunk."""
        return len(self.trades)

    @property
    def order_count(self) -> int:
        """Orders in this chunk."""
        return len(self.orders) // 4


@dataclass(frozen=True)
class CommitPlan:
    """The trades in commit order and the chunks that commit them."""

    trades: tuple[Trade, ...]
    chunks: tuple[CommitChunk, ...]


@dataclass
class _Draft:
    """A chunk being packed: its trades (positions in the grouped list), parties, orders."""

    trades: list[int] = field(default_factory=list)
    parties: set[str] = field(default_factory=set)
    orders: set[bytes] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)

    def size(self, open_orders: int = 0, lanes: bool = False) -> tuple[int, int]:
        """(calldata bytes, estimated gas)."""
        n_parties, n_orders, n_trades = len(self.parties), len(self.orders), len(self.trades)
        n_words = n_parties + n_trades + len(self.nodes)
        size = _HEAD_BYTES + WORD * n_words + 4 * WORD * n_orders
        gas = (
            GAS_BASE
            + GAS_PER_PARTY * n_parties
            + GAS_PER_ORDER * n_orders
            + GAS_PER_OPEN_ORDER * open_orders
            + GAS_PER_TRADE * n_trades
            + (GAS_PER_LANE_PARTY * n_parties if lanes else 0)
        )
        return size, gas


def group_by_seller(trades: Sequence[Trade]) -> tuple[Trade, ...]:
    """The trades with each seller's together, sellers in order of their first trade; each
    seller's trades keep their order (so each trade's sold-before total is unchanged)."""
    groups: dict[str, list[Trade]] = {}
    for trade in trades:
        groups.setdefault(checksum_address(trade.seller), []).append(trade)
    return tuple(t for group in groups.values() for t in group)


def order_words(
    order: SignedOrder, position: int, flags: int, filled_wh: int = 0, node_position: int = 0
) -> tuple[int, int, int, int]:
    """An order's four words in a chunk: its party at ``position``, with ``flags``, its node
    at ``node_position`` of the chunk's ``nodes``; a continued order carries ``filled_wh``
    (its fill in the chunks before) and a zero word in place of its signature."""
    meta = (
        position
        | order.side << 16
        | flags << 24
        | node_position << 32
        | order.quantity_wh << 64
        | order.nonce << 128
        | order.expiry << 192
    )
    if flags & ORDER_CONTINUED:
        return meta, order.price_per_wh, filled_wh, 0
    if flags & ORDER_UNPARKED:
        return meta, order.price_per_wh, 0, 0
    r, vs = compact_signature(order.signature)
    return meta, order.price_per_wh, int.from_bytes(r, "big"), int.from_bytes(vs, "big")


def trade_word(
    buyer: int, seller: int, buy_order: int, sell_order: int, quantity_wh: int, price_per_wh: int
) -> int:
    """A trade's word in a chunk: party and order positions, quantity and price."""
    return (
        buyer
        | seller << 16
        | buy_order << 32
        | sell_order << 48
        | quantity_wh << 64
        | price_per_wh << 128
    )


def _check_order(order: SignedOrder, t: int) -> None:
    if order.interval != t:
        raise ValueError(
            f"order 0x{order.order_id.hex()} is for interval {order.interval}, not {t}"
        )
    if order.side not in (0, 1):
        raise ValueError(f"order 0x{order.order_id.hex()} has side {order.side}")
    for value, bound, what in (
        (order.quantity_wh, UINT64_LIMIT, "quantityWh"),
        (order.nonce, UINT64_LIMIT, "nonce"),
        (order.expiry, UINT64_LIMIT, "expiry"),
        (order.price_per_wh, UINT128_LIMIT, "pricePerWh"),
    ):
        if not 0 <= value < bound:
            raise ValueError(f"order 0x{order.order_id.hex()}: {what} {value} is out of range")


def plan_commit(
    t: int,
    trades: Sequence[Trade],
    orders: Mapping[bytes, SignedOrder],
    participant_index: Mapping[str, int],
    *,
    max_bytes: int = MAX_COMMIT_BYTES,
    max_gas: int = DEFAULT_CHUNK_GAS,
) -> CommitPlan:
    """The chunks committing ``trades`` of interval ``t``, backed by ``orders`` (by order id).

    ``participant_index`` maps each seller (checksum address) to its participant index (the
    chain links carry it). ValueError when a trade names an order that is missing, of
    another party or side, or of another interval; :class:`CommitTooLarge` when one seller's
    trades do not fit one chunk.
    """
    used = _used_orders(t, trades, orders)
    draft = _Draft(
        list(range(len(trades))), _parties_of(used), set(used), {o.node for o in used.values()}
    )
    size, gas = draft.size()
    if len(trades) == 0 or (
        size <= max_bytes
        and gas <= max_gas
        and len(draft.parties) <= MAX_POSITION
        and len(used) <= MAX_POSITION
    ):
        return _assemble(tuple(trades), [draft], used, participant_index)
    grouped = group_by_seller(trades)
    byte_budget, gas_budget = max_bytes, max_gas
    for _ in range(16):
        drafts = _pack(grouped, used, byte_budget, gas_budget)
        _introduce(drafts, used)
        sizes = [d.size()[0] for d in drafts]
        gases = _gas_with_opens(drafts)
        if max(sizes) <= max_bytes and max(gases) <= max_gas:
            return _assemble(grouped, drafts, used, participant_index)
        byte_budget = min(byte_budget, byte_budget * max_bytes // max(sizes) * 19 // 20)
        gas_budget = min(gas_budget, gas_budget * max_gas // max(gases) * 19 // 20)
    raise CommitTooLarge(
        f"no split of these trades keeps every chunk within {max_bytes} bytes and {max_gas} gas"
    )


def fresh_bit(order_id: bytes) -> int:
    """The bit an order takes in its party's commit lane when it comes fresh."""
    return int.from_bytes(order_id, "big") % FRESH_BITS


def _introduce(drafts: Sequence[_Draft], used: Mapping[bytes, SignedOrder]) -> None:
    """Lists each order, fresh, in the first chunk any order of its party on the same lane
    bit is listed in (the contract refuses a fresh order on a bit an earlier chunk set)."""
    first: dict[bytes, int] = {}
    for c, draft in enumerate(drafts):
        for order_id in draft.orders:
            first.setdefault(order_id, c)
    groups: dict[tuple[str, int], list[bytes]] = {}
    for order_id in first:
        owner: str = checksum_address(used[order_id].participant)
        groups.setdefault((owner, fresh_bit(order_id)), []).append(order_id)
    for (party, _bit), members in groups.items():
        intro = min(first[o] for o in members)
        for order_id in members:
            if first[order_id] > intro:
                drafts[intro].orders.add(order_id)
                drafts[intro].parties.add(party)
                drafts[intro].nodes.add(used[order_id].node)


def _gas_with_opens(drafts: Sequence[_Draft]) -> list[int]:
    """Each draft's estimated gas counting the orders it leaves open for the next chunk and
    the ones it parks for a later one."""
    listed: dict[bytes, list[int]] = {}
    for c, draft in enumerate(drafts):
        for order_id in draft.orders:
            listed.setdefault(order_id, []).append(c)
    out = []
    for c, draft in enumerate(drafts):
        opens = parks = 0
        for order_id in draft.orders:
            later = [x for x in listed[order_id] if x > c]
            if later:
                opens += later[0] == c + 1
                parks += later[0] > c + 1
        _, gas = draft.size(open_orders=opens, lanes=len(drafts) > 1)
        out.append(gas + GAS_PER_PARKED_ORDER * parks)
    return out


def _used_orders(
    t: int, trades: Sequence[Trade], orders: Mapping[bytes, SignedOrder]
) -> dict[bytes, SignedOrder]:
    used: dict[bytes, SignedOrder] = {}
    for k, trade in enumerate(trades):
        for order_id, party, side in (
            (trade.buy_order_id, trade.buyer, 0),
            (trade.sell_order_id, trade.seller, 1),
        ):
            order = orders.get(bytes(order_id))
            if order is None:
                raise ValueError(f"trade {k} names order 0x{bytes(order_id).hex()}, not given")
            if checksum_address(order.participant) != checksum_address(party) or order.side != side:
                raise ValueError(f"trade {k}: order 0x{order.order_id.hex()} is not its party's")
            if order.order_id not in used:
                _check_order(order, t)
                used[order.order_id] = order
    return used


def _parties_of(orders: Mapping[bytes, SignedOrder]) -> set[str]:
    return {checksum_address(o.participant) for o in orders.values()}


def _pack(
    grouped: Sequence[Trade], used: Mapping[bytes, SignedOrder], max_bytes: int, max_gas: int
) -> list[_Draft]:
    """Whole sellers into chunks, each within ``max_bytes`` and ``max_gas``; each chunk
    lists the orders its trades fill."""
    drafts: list[_Draft] = []
    current = _Draft()
    k = 0
    while k < len(grouped):
        seller = checksum_address(grouped[k].seller)
        end = k
        while end < len(grouped) and checksum_address(grouped[end].seller) == seller:
            end += 1
        candidate = _with_group(current, grouped, used, k, end)
        if not _fits(candidate, max_bytes, max_gas) and current.trades:
            drafts.append(current)
            current = _Draft()
            candidate = _with_group(current, grouped, used, k, end)
        if not _fits(candidate, max_bytes, max_gas):
            raise CommitTooLarge(
                f"seller {seller}'s {end - k} trades, with their orders and parties, do not fit "
                f"one commit transaction ({max_bytes} bytes, {max_gas} gas)"
            )
        current = candidate
        k = end
    if current.trades:
        drafts.append(current)
    return drafts


def _with_group(
    draft: _Draft, grouped: Sequence[Trade], used: Mapping[bytes, SignedOrder], start: int, end: int
) -> _Draft:
    out = _Draft(list(draft.trades), set(draft.parties), set(draft.orders), set(draft.nodes))
    for k in range(start, end):
        trade = grouped[k]
        out.trades.append(k)
        out.parties.add(checksum_address(trade.buyer))
        out.parties.add(checksum_address(trade.seller))
        for order_id in (bytes(trade.buy_order_id), bytes(trade.sell_order_id)):
            out.orders.add(order_id)
            out.nodes.add(used[order_id].node)
    return out


def _fits(draft: _Draft, max_bytes: int, max_gas: int) -> bool:
    # Every party of a chunk of several takes a lane; the orders left open are counted once
    # the chunks are known (plan_commit tightens the gas budget until they fit).
    size, gas = draft.size(lanes=True)
    return (
        size <= max_bytes
        and gas <= max_gas
        and len(draft.parties) <= MAX_POSITION
        and len(draft.orders) <= MAX_POSITION
        and len(draft.nodes) <= MAX_POSITION
    )


def _assemble(
    trades: tuple[Trade, ...],
    drafts: Sequence[_Draft],
    used: Mapping[bytes, SignedOrder],
    participant_index: Mapping[str, int],
) -> CommitPlan:
    heads = settlement_chain(trades, participant_index)
    filled: dict[bytes, int] = {}
    listed: dict[bytes, list[int]] = {}
    for c, draft in enumerate(drafts):
        for order_id in draft.orders:
            listed.setdefault(order_id, []).append(c)
    chunks = []
    first = 0
    for c, draft in enumerate(drafts):
        parties = tuple(sorted((checksum_address(p) for p in draft.parties), key=str.lower))
        where = {p: i for i, p in enumerate(parties)}
        ids = sorted(draft.orders)
        order_at = {order_id: i for i, order_id in enumerate(ids)}
        nodes = tuple(sorted({node_hash(used[order_id].node) for order_id in ids}))
        node_at = {hashed: i for i, hashed in enumerate(nodes)}
        words: list[int] = []
        for order_id in ids:
            order = used[order_id]
            flags = _flags(listed[order_id], c)
            words.extend(
                order_words(
                    order,
                    where[checksum_address(order.participant)],
                    flags,
                    filled.get(order_id, 0),
                    node_at[node_hash(order.node)],
                )
            )
        trade_words = []
        for k in draft.trades:
            trade = trades[k]
            trade_words.append(
                trade_word(
                    where[checksum_address(trade.buyer)],
                    where[checksum_address(trade.seller)],
                    order_at[bytes(trade.buy_order_id)],
                    order_at[bytes(trade.sell_order_id)],
                    trade.quantity_wh,
                    trade.price_per_wh,
                )
            )
        for k in draft.trades:
            trade = trades[k]
            for order_id in (bytes(trade.buy_order_id), bytes(trade.sell_order_id)):
                filled[order_id] = filled.get(order_id, 0) + trade.quantity_wh
        last = first + len(draft.trades)
        sells = sell_price_words([trades[k] for k in draft.trades])
        chunks.append(
            CommitChunk(parties, tuple(words), tuple(trade_words), heads[last], first, sells, nodes)
        )
        first = last
    return CommitPlan(trades, tuple(chunks))


def _flags(chunks_of: Sequence[int], c: int) -> int:
    """An order's flags in chunk ``c``, of the chunks ``chunks_of`` (ascending) it is listed
    in: continued from the chunk before or unparked from an earlier one; open for the next
    chunk or parked for a later one."""
    at = chunks_of.index(c)
    flags = 0
    if at > 0:
        flags |= ORDER_CONTINUED if chunks_of[at - 1] == c - 1 else ORDER_UNPARKED
    if at + 1 < len(chunks_of):
        flags |= ORDER_OPEN if chunks_of[at + 1] == c + 1 else ORDER_PARKED
    return flags


def sell_price_words(trades: Sequence[Trade]) -> tuple[int, ...]:
    """A chunk's ``sellPrices``: empty when every trade's seller price is its price, else two
    uint128 seller prices per word, trade 2k in the low half and 2k+1 in the high half."""
    if all(t.sell_price_per_wh is None or t.sell_price_per_wh == t.price_per_wh for t in trades):
        return ()
    prices = [t.seller_price_per_wh for t in trades]
    if len(prices) % 2:
        prices.append(0)
    return tuple(prices[i] | prices[i + 1] << 128 for i in range(0, len(prices), 2))


def _array(words: Sequence[bytes]) -> bytes:
    return len(words).to_bytes(WORD, "big") + b"".join(words)


def commit_calldata(
    t: int, book_root: bytes, chunk: CommitChunk, grid_root: bytes = bytes(32)
) -> bytes:
    """The calldata of ``commitInterval(t, bookRoot, gridRoot, parties, orders, nodes,
    trades, sellPrices, tailHash)``; ``grid_root`` zero off a grid."""
    parties = _array([ADDRESS_PAD + address_bytes(p) for p in chunk.parties])
    orders = _array([w.to_bytes(WORD, "big") for w in chunk.orders])
    nodes = _array([bytes32_word(n, "node") for n in chunk.nodes])
    trades = _array([w.to_bytes(WORD, "big") for w in chunk.trades])
    sells = _array([w.to_bytes(WORD, "big") for w in chunk.sell_prices])
    head = 9 * WORD
    offsets = [head]
    for array in (parties, orders, nodes, trades):
        offsets.append(offsets[-1] + len(array))
    return b"".join(
        (
            COMMIT_SELECTOR,
            t.to_bytes(WORD, "big"),
            bytes32_word(book_root, "bookRoot"),
            bytes32_word(grid_root, "gridRoot"),
            *(offset.to_bytes(WORD, "big") for offset in offsets),
            bytes32_word(chunk.tail_hash, "tailHash"),
            parties,
            orders,
            nodes,
            trades,
            sells,
        )
    )


def trades_of_chunk(
    parties: Sequence[str],
    order_ids: Sequence[bytes],
    trade_words: Sequence[int],
    sell_prices: Sequence[int] = (),
) -> tuple[Trade, ...]:
    """The trades of one ``TradesCommitted`` event (ValueError for a position out of range:
    only another contract emits one); ``sell_prices`` its seller price words."""
    out = []
    for k, word in enumerate(trade_words):
        sell = None
        if sell_prices:
            sell = (sell_prices[k >> 1] >> (128 * (k & 1))) & ((1 << 128) - 1)
        buyer, seller = word & 0xFFFF, (word >> 16) & 0xFFFF
        bo, so = (word >> 32) & 0xFFFF, (word >> 48) & 0xFFFF
        if max(buyer, seller) >= len(parties) or max(bo, so) >= len(order_ids):
            raise ValueError(f"trade word {k} names a position beyond its chunk's tables")
        out.append(
            Trade(
                buyer=checksum_address(parties[buyer]),
                seller=checksum_address(parties[seller]),
                quantity_wh=(word >> 64) & 0xFFFFFFFFFFFFFFFF,
                price_per_wh=word >> 128,
                buy_order_id=bytes(order_ids[bo]),
                sell_order_id=bytes(order_ids[so]),
                sell_price_per_wh=sell,
            )
        )
    return tuple(out)


def trades_of_chunks(
    interval: int,
    chunks: Sequence[tuple[Any, ...]],
    trade_count: int,
) -> tuple[Trade, ...]:
    """The trades of an interval's commit, in commit order, from its ``TradesCommitted``
    events given as ``(chunk, first_index, parties, order_ids, trade_words[, sell_prices])``
    in chain order.

    ValueError unless the chunks are numbered 1, 2, ... with each starting where the one
    before ended, and hold ``trade_count`` trades in all."""
    out: list[Trade] = []
    for expected, (chunk, first_index, parties, order_ids, words, *rest) in enumerate(
        chunks, start=1
    ):
        if chunk != expected or first_index != len(out):
            raise ValueError(
                f"interval {interval}'s commit chunk {chunk} (from trade {first_index}) does not "
                f"follow chunk {expected - 1} ({len(out)} trades)"
            )
        out.extend(trades_of_chunk(parties, order_ids, words, rest[0] if rest else ()))
    if len(out) != trade_count:
        raise ValueError(
            f"interval {interval}'s commit chunks hold {len(out)} trades, its commit {trade_count}"
        )
    return tuple(out)


__all__ = [
    "COMMIT_SELECTOR",
    "MAX_COMMIT_BYTES",
    "ORDER_CONTINUED",
    "ORDER_OPEN",
    "ORDER_PARKED",
    "ORDER_UNPARKED",
    "CommitChunk",
    "CommitPlan",
    "CommitTooLarge",
    "commit_calldata",
    "fresh_bit",
    "group_by_seller",
    "order_words",
    "plan_commit",
    "sell_price_words",
    "trade_word",
    "trades_of_chunk",
    "trades_of_chunks",
]
