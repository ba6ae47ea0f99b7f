"""ledger.commit_plan: every plan is one the contract accepts, and commits the same trades.

A pure mirror of commitInterval's chunk rules (`accept`) replays each chunk of a plan: the
order words and their digests ascending, fresh orders on free lane bits, continued orders
from open records, fills within quantity, sides and limits, a seller in one chunk, the hash
chain from head to tail, and the byte limit. Random signed books, walked the way the clearing
walks them, are split under small byte limits so that most plans take several chunks; the
contract itself runs the same kind of plan in ``tests/test_contract_signed_orders.py``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.commit_plan import (
    FRESH_BITS,
    ORDER_CONTINUED,
    ORDER_OPEN,
    ORDER_PARKED,
    ORDER_UNPARKED,
    CommitChunk,
    CommitPlan,
    CommitTooLarge,
    commit_calldata,
    group_by_seller,
    plan_commit,
    trades_of_chunk,
)
from ledger.eip712 import Domain, order_digest
from ledger.grid_nodes import node_hash
from ledger.order_backing import sign_order
from ledger.records import SignedOrder, Trade
from ledger.trade_chain import settlement_chain

T = 9
DOMAIN = Domain(31337, "0x" + "cd" * 20)
ROOT = b"\xbb" * 32
KEYS = [(0x5EED + i).to_bytes(32, "big") for i in range(16)]
ADDRESSES = [Account.from_key(k).address for k in KEYS]
INDEX = {a: i * 7 + 3 for i, a in enumerate(ADDRESSES)}  # participant indices, not positions
NODES = ("root", "f1", "feeder:2")
"""Party i signs its orders for node NODES[i % 3]."""
NODE_OF_HASH = {node_hash(n): n for n in NODES}


def walk_book(
    seed: int, parties: int, per_party: int
) -> tuple[list[Trade], dict[bytes, SignedOrder]]:
    """Bids and asks of ``parties`` participants (half each side), walked by limit price."""
    rng = random.Random(seed)
    half = max(1, parties // 2)
    bids: list[SignedOrder] = []
    asks: list[SignedOrder] = []
    for i in range(parties):
        side = 0 if i < half else 1
        for n in range(rng.randint(1, per_party)):
            price = 100 + (rng.randint(0, 50) if side == 0 else -rng.randint(0, 50))
            q = rng.randint(1, 60)
            order = sign_order(
                KEYS[i], DOMAIN, ADDRESSES[i], T, side, q, price, n, node=NODES[i % len(NODES)]
            )
            (bids if side == 0 else asks).append(order)
    bids.sort(key=lambda o: (-o.price_per_wh, o.order_id))
    asks.sort(key=lambda o: (o.price_per_wh, o.order_id))
    trades: list[Trade] = []
    i = j = 0
    left_bid, left_ask = bids[0].quantity_wh, asks[0].quantity_wh if asks else 0
    while i < len(bids) and j < len(asks):
        q = min(left_bid, left_ask)
        trades.append(
            Trade(
                bids[i].participant, asks[j].participant, q, 100, bids[i].order_id, asks[j].order_id
            )
        )
        left_bid -= q
        left_ask -= q
        if left_bid == 0:
            i += 1
            left_bid = bids[i].quantity_wh if i < len(bids) else 0
        if left_ask == 0:
            j += 1
            left_ask = asks[j].quantity_wh if j < len(asks) else 0
    return trades, {o.order_id: o for o in (*bids, *asks)}


def accept(plan: CommitPlan, max_bytes: int) -> list[Trade]:
    """Replay ``plan`` under the contract's chunk rules; return the trades it commits."""
    lanes: dict[str, tuple[int, int]] = {}
    open_orders: list[tuple[bytes, int]] = []  # the chunk before's open orders, ascending
    parked: dict[bytes, int] = {}
    committed: list[Trade] = []
    heads = settlement_chain(plan.trades, INDEX)
    expected_head = heads[0]
    for number, chunk in enumerate(plan.chunks, start=1):
        last = chunk.tail_hash == bytes(32)
        assert last == (number == len(plan.chunks))
        assert len(commit_calldata(T, ROOT, chunk)) <= max_bytes
        assert list(chunk.parties) == sorted(chunk.parties, key=lambda a: int(a, 16))
        fills: list[int] = []
        limits: list[int] = []
        metas: list[tuple[str, int, int, int]] = []
        ids: list[bytes] = []
        fresh: dict[str, int] = {}
        continued: list[tuple[bytes, int]] = []
        for k in range(chunk.order_count):
            meta, limit = chunk.orders[4 * k], chunk.orders[4 * k + 1]
            party = chunk.parties[meta & 0xFFFF]
            side, flags = (meta >> 16) & 0xFF, (meta >> 24) & 0xFF
            q, nonce, expiry = (meta >> 64) & (2**64 - 1), (meta >> 128) & (2**64 - 1), meta >> 192
            node_at, unused = (meta >> 32) & 0xFFFF, (meta >> 48) & 0xFFFF
            assert node_at < len(chunk.nodes) and unused == 0  # MalformedOrder
            node = NODE_OF_HASH[chunk.nodes[node_at]]
            assert node == NODES[ADDRESSES.index(party) % len(NODES)]
            digest = order_digest(DOMAIN.separator, party, T, side, q, limit, nonce, expiry, node)
            assert not ids or digest > ids[-1]
            ids.append(digest)
            assert flags < 16 and flags & 5 != 5 and flags & 10 != 10
            if flags & ORDER_CONTINUED:
                assert chunk.orders[4 * k + 3] == 0
                fills.append(chunk.orders[4 * k + 2])
                continued.append((digest, chunk.orders[4 * k + 2]))
            elif flags & ORDER_UNPARKED:
                assert chunk.orders[4 * k + 2 : 4 * k + 4] == (0, 0)
                fills.append(parked.pop(digest))  # KeyError: OrderNotOpen
            else:
                fills.append(0)
                fresh[party] = fresh.get(party, 0) | 1 << (
                    int.from_bytes(digest, "big") % FRESH_BITS
                )
            limits.append(limit)
            metas.append((party, side, q, flags))
        assert continued == open_orders  # OpenOrdersMismatch
        open_orders = []
        sold: dict[str, int] = {}
        for word in chunk.trades:
            bo, so = (word >> 32) & 0xFFFF, (word >> 48) & 0xFFFF
            q, price = (word >> 64) & (2**64 - 1), word >> 128
            assert metas[bo][1] == 0 and metas[so][1] == 1
            assert (
                metas[bo][0]
                == chunk.parties[word & 0xFFFF]
                != chunk.parties[(word >> 16) & 0xFFFF]
                == metas[so][0]
            )
            assert limits[so] <= price <= limits[bo] and q > 0
            fills[bo] += q
            fills[so] += q
            sold[metas[so][0]] = sold.get(metas[so][0], 0) + q
        for k, (_party, _side, q, flags) in enumerate(metas):
            assert fills[k] <= q
            if flags & ORDER_OPEN:
                assert not last
                open_orders.append((ids[k], fills[k]))
            elif flags & ORDER_PARKED:
                assert not last
                parked[ids[k]] = fills[k]
        if len(plan.chunks) > 1:
            for party in chunk.parties:
                bits, sold_in = lanes.get(party, (0, 0))
                assert bits & fresh.get(party, 0) == 0  # OrderAlreadyFresh
                assert not (party in sold and sold_in)  # SellerSpansChunks
                lanes[party] = (bits | fresh.get(party, 0), number if party in sold else sold_in)
        trades = trades_of_chunk(chunk.parties, ids, chunk.trades)
        start = len(committed)
        assert chunk.first_index == start
        committed.extend(trades)
        assert heads[start] == expected_head
        expected_head = chunk.tail_hash
        assert heads[len(committed)] == chunk.tail_hash
    assert not open_orders and not parked
    return committed


def _same_per_seller(a: Sequence[Trade], b: Sequence[Trade]) -> bool:
    def by_seller(trades: Sequence[Trade]) -> dict[str, list[Trade]]:
        out: dict[str, list[Trade]] = {}
        for x in trades:
            out.setdefault(x.seller, []).append(x)
        return out

    return by_seller(a) == by_seller(b)


def _alone_bytes(trades: Sequence[Trade], orders: dict[bytes, SignedOrder], seller: str) -> int:
    """Calldata bytes of a chunk of ``seller``'s trades alone."""
    own = [x for x in trades if x.seller == seller]
    ids = {bytes(x.buy_order_id) for x in own} | {bytes(x.sell_order_id) for x in own}
    parties = {x.buyer for x in own} | {seller}
    nodes = {orders[i].node for i in ids}
    return len(
        commit_calldata(
            T,
            ROOT,
            CommitChunk(
                tuple(parties),  # type: ignore[arg-type]
                (0,) * (4 * len(ids)),
                (0,) * len(own),
                ROOT,
                0,
                (),
                tuple(node_hash(n) for n in nodes),
            ),
        )
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    parties=st.integers(2, 16),
    per_party=st.integers(1, 6),
    max_bytes=st.integers(1_400, 6_000),
)
def test_every_plan_is_accepted_and_commits_the_same_trades(
    seed: int, parties: int, per_party: int, max_bytes: int
) -> None:
    trades, orders = walk_book(seed, parties, per_party)
    try:
        plan = plan_commit(T, trades, orders, INDEX, max_bytes=max_bytes)
    except CommitTooLarge:
        # Only a seller whose own chunk (its trades, their orders, parties and nodes) comes
        # near the limit cannot commit: the planner tightens its budget by 5 % a round when
        # the orders chunks share push a chunk over.
        assert any(
            _alone_bytes(trades, orders, s) > max_bytes * 85 // 100
            for s in {x.seller for x in group_by_seller(trades)}
        )
        return
    committed = accept(plan, max_bytes)
    assert committed == list(plan.trades)
    assert _same_per_seller(committed, trades)  # each seller's trades, in their order
    if len(plan.chunks) == 1:
        assert committed == trades  # one chunk keeps the order given


def test_a_book_too_big_for_one_chunk_is_split_and_accepted() -> None:
    trades, orders = walk_book(7, 16, 6)
    plan = plan_commit(T, trades, orders, INDEX, max_bytes=4_000)
    assert len(plan.chunks) > 2
    flags = {(w >> 24) & 0xFF for c in plan.chunks for w in c.orders[::4]}
    assert {ORDER_OPEN, ORDER_CONTINUED} <= flags  # orders spanning chunks were exercised
    assert accept(plan, 4_000) == list(plan.trades)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("missing", "not given"),
        ("other party", "is not its party's"),
        ("other interval", "is for interval"),
    ],
)
def test_a_trade_without_its_own_order_is_refused_before_sending(change: str, why: str) -> None:
    trades, orders = walk_book(3, 4, 2)
    first = trades[0]
    bid = orders[first.buy_order_id]
    if change == "missing":
        orders = {k: v for k, v in orders.items() if k != first.buy_order_id}
    elif change == "other party":
        orders = {
            **orders,
            first.buy_order_id: sign_order(KEYS[9], DOMAIN, ADDRESSES[9], T, 0, 5, 100),
        }
    else:
        later = sign_order(
            KEYS[0], DOMAIN, bid.participant, T + 1, 0, bid.quantity_wh, bid.price_per_wh
        )
        orders = {**orders, first.buy_order_id: later}
    with pytest.raises(ValueError, match=why):
        plan_commit(T, trades, orders, INDEX)
