"""EnergyMarket.commitInterval against its signed orders: every forged, stretched or reused
order is refused on-chain, and a commit split into chunks is sound across them.

Attack 1 of the trust issue was an operator that committed a 1 Wh "sale" from a colluding
seller to each victim at the victim's whole balance. Each way of attempting it here (an
order signed by another key, a price beyond the victim's limit, more than the victim's
quantity, an order of another interval or side, one order counted twice within a chunk or
across chunks) reverts, and the victim's balance does not move.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from test_ledger_support import (
    BOOK_ROOT,
    DEFAULT_TERMS,
    DEPOSIT,
    PRICE,
    MarketEnv,
    raises,
    snapshot_env,
)
from web3 import Web3

from chain.connection import connect
from deploy.deployment import deploy_contract
from ledger.addresses import checksum_address
from ledger.calldata import settle_chunk_args
from ledger.commit_plan import (
    ORDER_CONTINUED,
    ORDER_OPEN,
    ORDER_PARKED,
    ORDER_UNPARKED,
    CommitChunk,
    commit_calldata,
    order_words,
    plan_commit,
    trade_word,
)
from ledger.contract_errors import (
    BadOrderSignature,
    BookRootMismatch,
    ChunkHeadMismatch,
    IntervalAlreadyEnded,
    MalformedOrder,
    OpenOrdersMismatch,
    OrderAlreadyFresh,
    OrderLeftOpen,
    OrderNotOpen,
    OrderOverfilled,
    OrdersNotAscending,
    PriceOutsideLimit,
    SellerSpansChunks,
    TradeOrderMismatch,
    TradesMismatch,
)
from ledger.eip712 import compact_signature, order_digest
from ledger.grid_nodes import node_hash
from ledger.order_backing import sign_order
from ledger.records import Reading, SignedOrder, Trade
from ledger.trade_chain import settlement_chain
from settlement.model import collateral_locks, settle_interval

VICTIM_DEPOSIT = DEPOSIT


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=6)


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def order(
    env: MarketEnv,
    who: int,
    t: int,
    side: int,
    quantity: int,
    price: int = PRICE,
    nonce: int = 0,
    signer: int | None = None,
) -> SignedOrder:
    """Participant ``who``'s order, signed by participant ``signer`` (default: itself)."""
    key = env.keys[env.p(who if signer is None else signer)]
    return sign_order(key, env.ledger.domain(), env.p(who), t, side, quantity, price, nonce)


def commit(env: MarketEnv, t: int, trades: Sequence[Trade], orders: Sequence[SignedOrder]) -> None:
    env.ledger.commit_interval(t, BOOK_ROOT, trades, {o.order_id: o for o in orders})


def deal(env: MarketEnv, bid: SignedOrder, ask: SignedOrder, q: int, price: int = PRICE) -> Trade:
    return Trade(bid.participant, ask.participant, q, price, bid.order_id, ask.order_id)


# ----------------------------------------------------------------------------- attack 1


def test_an_order_signed_by_another_key_is_refused_and_the_victim_keeps_its_balance(
    env: MarketEnv,
) -> None:
    t = env.next_interval()
    victim, colluder = 0, 1
    forged = order(env, victim, t, 0, 1, DEPOSIT // 2, signer=colluder)
    sale = order(env, colluder, t, 1, 1, 1)
    with raises(BadOrderSignature, participant=env.p(victim)):
        commit(env, t, [deal(env, forged, sale, 1, DEPOSIT // 2)], [forged, sale])
    assert env.ledger.balance_of(env.p(victim)).free == DEPOSIT
    assert env.ledger.interval_info(t).status == "none"


def test_a_price_beyond_either_limit_is_refused(env: MarketEnv) -> None:
    t = env.next_interval()
    bid, ask = order(env, 0, t, 0, 10, PRICE), order(env, 1, t, 1, 10, PRICE - 10)
    with raises(PriceOutsideLimit, trade_index=0, price=PRICE + 1, bid_limit=PRICE):
        commit(env, t, [deal(env, bid, ask, 10, PRICE + 1)], [bid, ask])
    with raises(PriceOutsideLimit, trade_index=0, price=PRICE - 11, ask_limit=PRICE - 10):
        commit(env, t, [deal(env, bid, ask, 10, PRICE - 11)], [bid, ask])
    commit(env, t, [deal(env, bid, ask, 10, PRICE - 10)], [bid, ask])  # the ask's limit is fine


def test_more_than_an_orders_quantity_is_refused(env: MarketEnv) -> None:
    t = env.next_interval()
    bid = order(env, 0, t, 0, 10)
    asks = [order(env, 1, t, 1, 6), order(env, 2, t, 1, 6)]
    trades = [deal(env, bid, asks[0], 6), deal(env, bid, asks[1], 5)]
    with raises(OrderOverfilled, order_id=bid.order_id, filled_wh=11, quantity_wh=10):
        commit(env, t, trades, [bid, *asks])
    commit(env, t, [trades[0], deal(env, bid, asks[1], 4)], [bid, *asks])
    assert env.ledger.balance_of(env.p(0)).locked == 10 * PRICE


def test_an_order_of_another_interval_or_side_is_refused(env: MarketEnv) -> None:
    t = env.next_interval()
    later = order(env, 0, t + 1, 0, 10)  # signed for the next interval
    ask = order(env, 1, t, 1, 10)
    # Presented for interval t, its digest is t's and its signature recovers another key.
    at_t = order(env, 0, t, 0, 10)
    moved = replace(at_t, signature=later.signature)
    with raises(BadOrderSignature, participant=env.p(0)):
        commit(env, t, [deal(env, moved, ask, 10)], [moved, ask])
    # A bid of the seller's, named as the trade's sell order.
    bid, seller_bid = order(env, 0, t, 0, 10), order(env, 2, t, 0, 10)
    chunk = build_chunk([], [bid, seller_bid], {}, bytes(32))
    ids = sorted([bid.order_id, seller_bid.order_id])
    where = sorted([env.p(0), env.p(2)], key=str.lower)
    word = trade_word(
        where.index(env.p(0)),
        where.index(env.p(2)),
        ids.index(bid.order_id),
        ids.index(seller_bid.order_id),
        10,
        PRICE,
    )
    with raises(TradeOrderMismatch, trade_index=0):
        _send(env, t, replace(chunk, trades=(word,)))


def test_one_order_twice_in_a_chunk_is_refused(env: MarketEnv) -> None:
    t = env.next_interval()
    bid, ask = order(env, 0, t, 0, 10), order(env, 1, t, 1, 10)
    indices = {env.p(1): env.ledger.participant_index(env.p(1))}
    (chunk,) = plan_commit(
        t, [deal(env, bid, ask, 10)], {o.order_id: o for o in (bid, ask)}, indices
    ).chunks
    doubled = replace(chunk, orders=chunk.orders[:4] + chunk.orders)  # the first order again
    with raises(OrdersNotAscending, order_index=1):
        env.ledger.transact_data(commit_calldata(t, BOOK_ROOT, doubled))


# ----------------------------------------------------------------------------- chunks


def _multi_chunk_book(env: MarketEnv, t: int) -> tuple[list[Trade], list[SignedOrder]]:
    """Three sellers, each buyer filled by two of them: one bid spans two sellers."""
    bids = [order(env, 0, t, 0, 300), order(env, 1, t, 0, 200)]
    asks = [order(env, 3, t, 1, 250), order(env, 4, t, 1, 150), order(env, 5, t, 1, 100)]
    trades = [
        deal(env, bids[0], asks[0], 250),
        deal(env, bids[0], asks[1], 50),
        deal(env, bids[1], asks[1], 100),
        deal(env, bids[1], asks[2], 100),
    ]
    return trades, [*bids, *asks]


def _plan(
    env: MarketEnv, t: int, trades: list[Trade], orders: list[SignedOrder], max_bytes: int
) -> tuple[CommitChunk, ...]:
    indices = {p: env.ledger.participant_index(p) for p in env.participants}
    plan = plan_commit(t, trades, {o.order_id: o for o in orders}, indices, max_bytes=max_bytes)
    return plan.chunks


def test_a_commit_in_chunks_settles_like_the_same_trades_in_one(env: MarketEnv) -> None:
    t = env.next_interval()
    trades, orders = _multi_chunk_book(env, t)
    by_id = {o.order_id: o for o in orders}
    receipts = env.ledger.commit_chunks(t, BOOK_ROOT, trades, by_id, max_bytes=1_100)
    assert len(receipts) == 3  # one seller per chunk
    committed = env.ledger.committed_trades(t)
    env.ledger._trades.clear()
    assert env.ledger.committed_trades(t) == committed  # read back from TradesCommitted
    assert sorted(committed, key=lambda x: x.sell_order_id) == sorted(
        trades, key=lambda x: x.sell_order_id
    )
    info = env.ledger.interval_info(t)
    assert (info.status, info.trade_count) == ("committed", 4)
    for p, amount in collateral_locks(trades, DEFAULT_TERMS.penalty_price_per_wh).items():
        assert env.ledger.balance_of(p).locked == amount
    exported = {env.p(3): 250, env.p(4): 90, env.p(5): 0}
    env.read(t, exported)
    env.to_deadline(t)
    env.ledger.settle(t, max_trades=3)
    expected = settle_interval(
        committed, [Reading(p, t, 0, e) for p, e in exported.items()], DEFAULT_TERMS
    )
    locks = collateral_locks(trades, DEFAULT_TERMS.penalty_price_per_wh)
    for p in env.participants:
        delta = expected.deltas.get(p)
        credited = 0 if delta is None else delta.credited
        assert env.ledger.balance_of(p).locked == 0
        assert env.ledger.balance_of(p).free == DEPOSIT - locks.get(p, 0) + credited


def test_an_order_filled_in_the_first_and_third_chunk_is_parked_in_between(
    env: MarketEnv,
) -> None:
    """The bid fills in chunks 1 and 3 only: chunk 1 parks its fill in storage, chunk 2 does
    not list it, chunk 3 unparks it; unparking an order never parked reverts."""
    t = env.next_interval()
    bid, other = order(env, 0, t, 0, 300), order(env, 1, t, 0, 150)
    asks = [order(env, 3, t, 1, 250), order(env, 4, t, 1, 150), order(env, 5, t, 1, 50)]
    trades = [
        deal(env, bid, asks[0], 250),
        deal(env, other, asks[1], 150),
        deal(env, bid, asks[2], 50),
    ]
    orders = [bid, other, *asks]
    first, second, third = _plan(env, t, trades, orders, 950)
    parked = [i for i in range(first.order_count) if first.orders[4 * i] >> 24 & ORDER_PARKED]
    assert len(parked) == 1 and second.order_count == 2
    unparked = next(
        i for i in range(third.order_count) if third.orders[4 * i] >> 24 & ORDER_UNPARKED
    )
    _send(env, t, _with_flags(first, parked[0], 0))  # closes the bid instead of parking it
    _send(env, t, second)
    with raises(OrderNotOpen, order_index=unparked):
        _send(env, t, third)
    # The honest plan commits, locking what the same trades lock in one transaction.
    t = env.next_interval() + 1
    bid, other = order(env, 0, t, 0, 300), order(env, 1, t, 0, 150)
    asks = [order(env, 3, t, 1, 250), order(env, 4, t, 1, 150), order(env, 5, t, 1, 50)]
    trades = [
        deal(env, bid, asks[0], 250),
        deal(env, other, asks[1], 150),
        deal(env, bid, asks[2], 50),
    ]
    by_id = {o.order_id: o for o in (bid, other, *asks)}
    before = {p: env.ledger.balance_of(p).locked for p in env.participants}
    assert len(env.ledger.commit_chunks(t, BOOK_ROOT, trades, by_id, max_bytes=900)) == 3
    assert env.ledger.interval_info(t).status == "committed"
    locks = collateral_locks(trades, DEFAULT_TERMS.penalty_price_per_wh)
    for p in env.participants:
        assert env.ledger.balance_of(p).locked - before[p] == locks.get(p, 0)


def _send(env: MarketEnv, t: int, chunk: CommitChunk, root: bytes = BOOK_ROOT) -> None:
    env.ledger.transact_data(commit_calldata(t, root, chunk))


def _with_flags(chunk: CommitChunk, position: int, flags: int) -> CommitChunk:
    words = list(chunk.orders)
    words[4 * position] = (words[4 * position] & ~(0xFF << 24)) | flags << 24
    return replace(chunk, orders=tuple(words))


def _refused_at(env: MarketEnv, t: int, bid: SignedOrder, ask: SignedOrder, node: str) -> Any:
    """How the contract refuses ``bid`` (signed for another node) presented at ``node``: the
    digest it recomputes is not the signed one, so the signature check fails, unless that
    digest already breaks the chunk's ascending order, which is checked first."""
    moved = order_digest(
        env.ledger.domain().separator, bid.participant, t, 0, bid.quantity_wh,
        bid.price_per_wh, bid.nonce, bid.expiry, node,
    )  # fmt: skip
    if (moved < ask.order_id) == (bid.order_id < ask.order_id):
        return raises(BadOrderSignature, participant=env.p(0))
    return raises(OrdersNotAscending, order_index=1)


def test_an_order_is_committed_only_at_the_grid_node_it_is_signed_for(env: MarketEnv) -> None:
    """The node is a field of the signed Order: the contract hashes the node the chunk names
    for each order into its digest, so moving an order to another node breaks its signature."""
    t = env.next_interval()
    domain = env.ledger.domain()
    bid = sign_order(env.keys[env.p(0)], domain, env.p(0), t, 0, 10, PRICE, node="f")
    ask = sign_order(env.keys[env.p(1)], domain, env.p(1), t, 1, 10, PRICE, node="sub")
    (chunk,) = _plan(env, t, [deal(env, bid, ask, 10)], [bid, ask], 120_000)
    assert sorted(chunk.nodes) == sorted((node_hash("f"), node_hash("sub")))
    position = sorted([bid.order_id, ask.order_id]).index(bid.order_id)
    meta = chunk.orders[4 * position]
    moved = list(chunk.orders)
    moved[4 * position] = meta ^ (1 << 32)  # the other node of the two
    with _refused_at(env, t, bid, ask, "sub"):
        _send(env, t, replace(chunk, orders=tuple(moved)))
    renamed = tuple(node_hash("root") if n == node_hash("f") else n for n in chunk.nodes)
    with _refused_at(env, t, bid, ask, "root"):
        _send(env, t, replace(chunk, nodes=renamed))
    moved[4 * position] = meta | (2 << 32)  # beyond the two nodes
    with raises(MalformedOrder, order_index=position):
        _send(env, t, replace(chunk, orders=tuple(moved)))
    moved[4 * position] = meta | (1 << 48)  # node position 65,536 or more (bits 32-63)
    with raises(MalformedOrder, order_index=position):
        _send(env, t, replace(chunk, orders=tuple(moved)))
    assert env.ledger.interval_info(t).status == "none"
    _send(env, t, chunk)
    assert env.ledger.interval_info(t).status != "none"


def test_chunks_refuse_a_wrong_head_root_or_open_order_at_the_end(env: MarketEnv) -> None:
    t = env.next_interval()
    trades, orders = _multi_chunk_book(env, t)
    first, second, third = _plan(env, t, trades, orders, 1_100)
    _send(env, t, first)
    assert env.ledger.interval_info(t).status == "committing"
    with raises(BookRootMismatch, interval=t):
        _send(env, t, second, b"\x01" * 32)
    with raises(ChunkHeadMismatch, interval=t, chunk=2):
        _send(env, t, replace(second, tail_hash=b"\x07" * 32))  # another chain from here on
    with raises(OpenOrdersMismatch, interval=t):
        _send(env, t, third)  # skips the second chunk, which opens what the third continues
    _send(env, t, second)
    open_at_end = next(i for i in range(third.order_count) if third.orders[4 * i] >> 24 & 0xFF)
    with raises(OrderLeftOpen):
        _send(env, t, _with_flags(third, open_at_end, ORDER_CONTINUED | ORDER_OPEN))
    _send(env, t, third)
    assert env.ledger.interval_info(t).status == "committed"


def _with_words(chunk: CommitChunk, position: int, third: int, fourth: int) -> CommitChunk:
    words = list(chunk.orders)
    words[4 * position + 2 : 4 * position + 4] = [third, fourth]
    return replace(chunk, orders=tuple(words))


def test_an_order_cannot_be_filled_again_in_a_later_chunk(env: MarketEnv) -> None:
    """The bid that spans two sellers is left open by the first chunk; presenting it in the
    second as fresh (signed), continuing it from a smaller fill, continuing an order never
    left open, or continuing beyond its quantity, all revert."""
    t = env.next_interval()
    trades, orders = _multi_chunk_book(env, t)
    first, second, _third = _plan(env, t, trades, orders, 1_100)
    _send(env, t, first)
    continued = next(
        i for i in range(second.order_count) if second.orders[4 * i] >> 24 & ORDER_CONTINUED
    )
    assert second.orders[4 * continued + 2 : 4 * continued + 4] == (250, 0)  # its fill so far
    quantity = (second.orders[4 * continued] >> 64) & (2**64 - 1)
    bid = next(o for o in orders if o.side == 0 and o.quantity_wh == quantity)
    r, vs = compact_signature(bid.signature)
    claimed_fresh = _with_words(
        _with_flags(second, continued, 0), continued, int.from_bytes(r), int.from_bytes(vs)
    )
    with raises(OpenOrdersMismatch, interval=t):
        _send(env, t, claimed_fresh)  # the same order, signed, claimed fresh
    with raises(OpenOrdersMismatch, interval=t):
        _send(env, t, _with_words(second, continued, 0, 0))  # continued from no fill
    with raises(MalformedOrder, order_index=continued):
        _send(env, t, _with_words(second, continued, 250, 1))  # a continued order's spare word
    fresh = next(
        i for i in range(second.order_count) if not second.orders[4 * i] >> 24 & ORDER_CONTINUED
    )
    with raises(OpenOrdersMismatch, interval=t):
        _send(env, t, _with_words(_with_flags(second, fresh, ORDER_CONTINUED), fresh, 0, 0))
    # The continued bid (300 Wh, 250 filled in chunk 1) asked for 51 more instead of 50.
    stretched = list(second.trades)
    k = next(k for k, w in enumerate(stretched) if (w >> 32) & 0xFFFF == continued)
    stretched[k] += 1 << 64
    with raises(OrderOverfilled, filled_wh=301, quantity_wh=300):
        _send(env, t, replace(second, trades=tuple(stretched)))


def build_chunk(
    trades: Sequence[Trade],
    orders: Sequence[SignedOrder],
    flags: dict[bytes, int],
    tail: bytes,
    filled: dict[bytes, int] | None = None,
) -> CommitChunk:
    """A chunk of exactly these trades and orders, with these order flags and, for continued
    orders, fills so far (by order id)."""
    parties = tuple(sorted({checksum_address(o.participant) for o in orders}, key=str.lower))
    where: dict[str, int] = {p: i for i, p in enumerate(parties)}
    ids = sorted(o.order_id for o in orders)
    by_id = {o.order_id: o for o in orders}
    words = [
        w
        for i in ids
        for w in order_words(
            by_id[i], where[by_id[i].participant], flags.get(i, 0), (filled or {}).get(i, 0)
        )
    ]
    trade_words = tuple(
        trade_word(
            where[x.buyer],
            where[x.seller],
            ids.index(x.buy_order_id),
            ids.index(x.sell_order_id),
            x.quantity_wh,
            x.price_per_wh,
        )
        for x in trades
    )
    return CommitChunk(parties, tuple(words), trade_words, tail, 0)


def test_a_seller_cannot_sell_in_two_chunks(env: MarketEnv) -> None:
    """Its sold total in the chain's links would be wrong: it sells in one chunk only."""
    t = env.next_interval()
    bids = [order(env, 0, t, 0, 10), order(env, 1, t, 0, 10)]
    ask = order(env, 3, t, 1, 20)
    trades = [deal(env, bids[0], ask, 10), deal(env, bids[1], ask, 10)]
    indices = {p: env.ledger.participant_index(p) for p in env.participants}
    heads = settlement_chain(trades, indices)
    _send(
        env,
        t,
        build_chunk(
            trades[:1],
            [bids[0], ask, bids[1]],
            {ask.order_id: ORDER_OPEN, bids[1].order_id: ORDER_OPEN},
            heads[1],
        ),
    )
    second = build_chunk(
        trades[1:],
        [bids[1], ask],
        {ask.order_id: ORDER_CONTINUED, bids[1].order_id: ORDER_CONTINUED},
        heads[2],
        {ask.order_id: 10},
    )
    with raises(SellerSpansChunks, participant=env.p(3), sold_in_chunk=1):
        _send(env, t, second)


def test_an_order_filled_in_one_chunk_cannot_come_fresh_in_a_later_one(env: MarketEnv) -> None:
    """The party's lane remembers the bit of each of its fresh orders."""
    t = env.next_interval()
    bid, later = order(env, 0, t, 0, 10), order(env, 1, t, 0, 10)
    ask = order(env, 3, t, 1, 20)
    trades = [deal(env, bid, ask, 10), deal(env, later, ask, 10)]
    heads = settlement_chain(trades, {p: env.ledger.participant_index(p) for p in env.participants})
    _send(env, t, build_chunk(trades[:1], [bid, ask], {ask.order_id: ORDER_OPEN}, heads[1]))
    both = ORDER_CONTINUED | ORDER_OPEN
    again = build_chunk([], [bid, ask], {ask.order_id: both}, heads[1], {ask.order_id: 10})
    with raises(OrderAlreadyFresh, participant=env.p(0)):
        _send(env, t, again)


def test_a_commit_left_unfinished_settles_what_it_committed_after_the_deadline(
    env: MarketEnv,
) -> None:
    """The operator disappears after the first chunk: no later chunk lands once the interval
    ends, and anyone settles the committed prefix after the deadline, releasing its locks."""
    t = env.next_interval()
    trades, orders = _multi_chunk_book(env, t)
    indices = {p: env.ledger.participant_index(p) for p in env.participants}
    plan = plan_commit(t, trades, {o.order_id: o for o in orders}, indices, max_bytes=1_100)
    first, second = plan.chunks[0], plan.chunks[1]
    _send(env, t, first)
    env.to_reading_window(t)
    with raises(IntervalAlreadyEnded, interval=t):
        _send(env, t, second)
    env.to_deadline(t)
    heads = settlement_chain(plan.trades, indices)
    with raises(TradesMismatch):  # the chain goes on past the prefix: it cannot end at zero
        prefix = plan.trades[: first.trade_count]
        env.ledger.settle_chunk(t, settle_chunk_args(prefix, indices, 0, first.trade_count))
    assert heads[first.trade_count] == first.tail_hash
    env.ledger._trades.clear()
    assert env.ledger.interval_info(t).status == "committing"
    assert env.ledger.committed_trades(t) == plan.trades[: first.trade_count]
    env.ledger.settle(t)  # from the chunk events alone, stopping where the chain stops
    assert env.ledger.interval_info(t).status == "settled"
    for p in env.participants:
        assert env.ledger.balance_of(p).locked == 0
        assert env.ledger.balance_of(p).free <= DEPOSIT + 10**30


# ----------------------------------------------------------------------------- relays and contracts


def test_a_commit_sent_through_a_relay_contract_still_settles(env: MarketEnv) -> None:
    relay, _ = deploy_contract(env.chain, "CommitRelay")
    env.ledger.grant_role(
        bytes.fromhex(env.ledger.contract.functions.OPERATOR_ROLE().call().hex()), relay.address
    )
    t = env.next_interval()
    bid, ask = order(env, 0, t, 0, 10), order(env, 1, t, 1, 10)
    trades = [deal(env, bid, ask, 10)]
    (chunk,) = _plan(env, t, trades, [bid, ask], 10_000)
    data = commit_calldata(t, BOOK_ROOT, chunk)
    relay.functions.forward(env.ledger.address, data).transact({"from": env.admin})
    env.ledger._trades.clear()
    assert env.ledger.committed_trades(t) == tuple(trades)
    env.read(t, {env.p(1): 10})
    env.to_deadline(t)
    env.ledger.settle(t)
    assert env.ledger.interval_info(t).status == "settled"


def test_a_smart_account_participant_signs_through_erc1271(env: MarketEnv) -> None:
    owner = Account.create()
    account, _ = deploy_contract(env.chain, "SmartAccount", owner.address)
    env.ledger.register_participant(account.address, Account.create().address)
    env.ledger.token.functions.mint(account.address, DEPOSIT).transact({"from": env.admin})
    env.chain.w3.eth.send_transaction(
        {"from": env.admin, "to": owner.address, "value": Web3.to_wei(1, "ether")}
    )
    env.chain.add_signer(owner)
    account.functions.deposit(env.ledger.token.address, env.ledger.address, DEPOSIT).transact(
        {"from": owner.address}
    )
    t = env.next_interval()
    bid = sign_order(bytes(owner.key), env.ledger.domain(), account.address, t, 0, 10, PRICE)
    ask = order(env, 1, t, 1, 10)
    commit(env, t, [deal(env, bid, ask, 10)], [bid, ask])
    assert env.ledger.balance_of(account.address).locked == 10 * PRICE
    stranger = sign_order(
        env.keys[env.p(2)], env.ledger.domain(), account.address, t + 1, 0, 10, PRICE
    )
    ask2 = order(env, 1, t + 1, 1, 10)
    with raises(BadOrderSignature, participant=account.address):
        commit(env, t + 1, [deal(env, stranger, ask2, 10)], [stranger, ask2])
