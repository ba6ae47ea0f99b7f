"""EnergyMarket.commitInterval: locking, snapshots, events and every revert."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from eth_abi.abi import encode
from test_ledger_support import (
    BOOK_ROOT,
    DEFAULT_TERMS,
    DEPOSIT,
    PRICE,
    MarketEnv,
    raises,
    snapshot_env,
    trade,
)

from chain.connection import connect
from chain.reverts import mapped_reverts
from ledger.commit_plan import COMMIT_SELECTOR, plan_commit
from ledger.contract_errors import (
    AccessControlUnauthorizedAccount,
    EnforcedPause,
    InsufficientCollateral,
    IntervalAlreadyCommitted,
    IntervalAlreadyEnded,
    IntervalTooFarAhead,
    InvalidTerms,
    MalformedOrder,
    ParticipantNotRegistered,
    PartiesNotAscending,
    SelfTrade,
    SoldQuantityOverflow,
    TradeOrderMismatch,
    ZeroPrice,
    ZeroQuantity,
)
from ledger.grid_nodes import node_hash
from ledger.order_backing import back_trades, sign_order
from ledger.records import Terms, Trade
from ledger.roles import OPERATOR_ROLE
from ledger.trade_chain import orders_digest, settlement_chain
from settlement.model import collateral_locks

UINT64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def base_env() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=5)


@pytest.fixture
def env(base_env: MarketEnv) -> Iterator[MarketEnv]:
    yield from snapshot_env(base_env)


def test_commit_locks_payments_and_bonds_and_snapshots_terms(env: MarketEnv) -> None:
    t = env.next_interval()
    trades, orders = back_trades(
        t,
        [trade(env.p(0), env.p(1), 1_000, n=0), trade(env.p(2), env.p(1), 500, 2 * PRICE, n=1)],
        env.ledger.domain(),
        env.keys,
    )
    receipt = env.ledger.commit_interval(t, BOOK_ROOT, trades, orders)
    locks = collateral_locks(trades, DEFAULT_TERMS.penalty_price_per_wh)
    for p, amount in locks.items():
        assert env.ledger.balance_of(p).locked == amount
        assert env.ledger.balance_of(p).free == DEPOSIT - amount
    info = env.ledger.interval_info(t)
    _, end = env.ledger.interval_window(t)
    assert info.status == "committed" and info.trade_count == 2 and info.cursor == 0
    assert info.deadline == end + DEFAULT_TERMS.reading_window_seconds
    assert (info.penalty_price_per_wh, info.tolerance_bps) == (
        DEFAULT_TERMS.penalty_price_per_wh,
        DEFAULT_TERMS.tolerance_bps,
    )
    assert info.book_root == BOOK_ROOT
    indices = {p: env.ledger.participant_index(p) for p in env.participants}
    assert info.remaining_hash == settlement_chain(trades, indices)[0]
    (ev,) = env.ledger.events(receipt, "IntervalCommitted")
    assert ev["ordersDigest"] == orders_digest(trades) and ev["tradeCount"] == 2
    (lock_event,) = env.ledger.events(receipt, "CollateralLocked")
    locked = dict(zip(lock_event["participants"], lock_event["amounts"], strict=True))
    assert locked == locks
    (chunk,) = env.ledger.events(receipt, "TradesCommitted")
    assert (chunk["chunk"], chunk["firstIndex"], len(chunk["trades"])) == (1, 0, 2)
    assert sorted(chunk["orderIds"]) == sorted(orders)


def test_later_change_of_terms_never_rewrites_a_committed_interval(env: MarketEnv) -> None:
    t = env.commit([trade(env.p(0), env.p(1), 10)])
    before = env.ledger.interval_info(t)
    env.set_terms_now(Terms(1, 9_000, 5))
    after = env.ledger.interval_info(t)
    assert after == before


def test_committed_trades_decode_from_the_commits_events(env: MarketEnv) -> None:
    t = env.next_interval()
    trades, orders = back_trades(
        t,
        [trade(env.p(3), env.p(1), 7, n=3), trade(env.p(0), env.p(4), 9, n=4)],
        env.ledger.domain(),
        env.keys,
    )
    env.ledger.commit_interval(t, BOOK_ROOT, trades, orders)
    env.ledger._trades.clear()
    assert env.ledger.committed_trades(t) == tuple(trades)


def test_empty_interval_commits(env: MarketEnv) -> None:
    t = env.commit([])
    assert env.ledger.interval_info(t).trade_count == 0


def test_commit_by_non_operator_reverts(env: MarketEnv) -> None:
    with raises(AccessControlUnauthorizedAccount, account=env.p(0), needed_role=OPERATOR_ROLE):
        env.ledger.commit_interval(env.next_interval(), BOOK_ROOT, [], {}, sender=env.p(0))


def test_second_commit_of_an_interval_reverts(env: MarketEnv) -> None:
    t = env.commit([trade(env.p(0), env.p(1), 10)])
    with raises(IntervalAlreadyCommitted, interval=t):
        env.commit([trade(env.p(0), env.p(1), 10)], t)


def test_commit_after_the_interval_ended_reverts(env: MarketEnv) -> None:
    env.chain.advance_time(2 * env.ledger.interval_seconds())
    t = env.ledger.current_interval() - 1
    _, end = env.ledger.interval_window(t)
    with raises(IntervalAlreadyEnded, interval=t, end_time=end):
        env.commit([], t)


def test_commit_during_delivery_is_still_accepted(env: MarketEnv) -> None:
    t = env.ledger.current_interval()
    env.commit([trade(env.p(0), env.p(1), 1)], t)


def test_trade_with_unknown_participant_reverts(env: MarketEnv) -> None:
    outsider = env.chain.accounts[9]
    with raises(ParticipantNotRegistered, participant=outsider):
        env.commit([trade(outsider, env.p(0), 10)])


def test_trade_with_deregistered_participant_reverts(env: MarketEnv) -> None:
    env.ledger.deregister_participant(env.p(1))
    with raises(ParticipantNotRegistered, participant=env.p(1)):
        env.commit([trade(env.p(0), env.p(1), 10)])


def test_zero_quantity_reverts(env: MarketEnv) -> None:
    with raises(ZeroQuantity, trade_index=1):
        env.commit([trade(env.p(0), env.p(1), 10), trade(env.p(0), env.p(1), 0)])


def test_zero_price_reverts(env: MarketEnv) -> None:
    with raises(ZeroPrice, trade_index=0):
        env.commit([trade(env.p(0), env.p(1), 10, price=0)])


def test_self_trade_reverts(env: MarketEnv) -> None:
    with raises(SelfTrade, trade_index=0, participant=env.p(2)):
        env.commit([trade(env.p(2), env.p(2), 10)])


def test_trade_exceeding_collateral_reverts_with_amounts(env: MarketEnv) -> None:
    q = DEPOSIT // PRICE + 1
    with raises(InsufficientCollateral, participant=env.p(0), needed=q * PRICE, free=DEPOSIT):
        env.commit([trade(env.p(0), env.p(1), q)])


def test_seller_bond_exceeding_collateral_reverts(env: MarketEnv) -> None:
    pp = DEFAULT_TERMS.penalty_price_per_wh
    q = DEPOSIT // pp + 1
    with raises(InsufficientCollateral, participant=env.p(1), needed=q * pp, free=DEPOSIT):
        env.commit([trade(env.p(0), env.p(1), q, price=1)])


def test_collateral_exactly_equal_to_free_balance_commits(env: MarketEnv) -> None:
    env.set_terms_now(Terms(0, 0, 60))
    env.commit([trade(env.p(0), env.p(1), DEPOSIT // PRICE)])
    assert env.ledger.balance_of(env.p(0)).free == 0


def test_seller_total_above_uint64_reverts(env: MarketEnv) -> None:
    env.set_terms_now(Terms(0, 0, 60))
    t = env.next_interval()
    domain, keys = env.ledger.domain(), env.keys
    orders = [
        sign_order(keys[env.p(0)], domain, env.p(0), t, 0, UINT64_MAX, 1),
        sign_order(keys[env.p(2)], domain, env.p(2), t, 0, 1, 1),
        sign_order(keys[env.p(1)], domain, env.p(1), t, 1, UINT64_MAX, 1, nonce=1),
        sign_order(keys[env.p(1)], domain, env.p(1), t, 1, 1, 1, nonce=2),
    ]
    ids = [o.order_id for o in orders]
    trades = [
        Trade(env.p(0), env.p(1), UINT64_MAX, 1, ids[0], ids[2]),
        Trade(env.p(2), env.p(1), 1, 1, ids[1], ids[3]),
    ]
    with raises(SoldQuantityOverflow, seller=env.p(1)):
        env.ledger.commit_interval(t, BOOK_ROOT, trades, {o.order_id: o for o in orders})


def test_uint64_quantity_times_uint128_price_is_exact(env: MarketEnv) -> None:
    env.set_terms_now(Terms(0, 0, 60))
    with raises(InsufficientCollateral, needed=UINT64_MAX * (2**128 - 1)):
        env.commit([trade(env.p(0), env.p(1), UINT64_MAX, price=2**128 - 1)])


def _chunk(env: MarketEnv, t: int) -> tuple[list[str], list[int], list[int]]:
    """(parties, order words, trade words) of a one-trade commit of ``t``."""
    trades, orders = back_trades(t, [trade(env.p(0), env.p(1), 10)], env.ledger.domain(), env.keys)
    indices = {p: env.ledger.participant_index(p) for p in env.participants}
    (chunk,) = plan_commit(t, trades, orders, indices).chunks
    return list(chunk.parties), list(chunk.orders), list(chunk.trades)


def _send_raw(
    env: MarketEnv,
    t: int,
    parties: Sequence[str],
    orders: list[int],
    trades: list[int],
    sell_prices: Sequence[int] = (),
    grid_root: bytes = bytes(32),
    nodes: Sequence[bytes] = (node_hash("root"),),
) -> None:
    """Call commitInterval with raw words (nothing range-checked on the way)."""
    body = encode(
        [
            "uint64",
            "bytes32",
            "bytes32",
            "address[]",
            "uint256[]",
            "bytes32[]",
            "uint256[]",
            "uint256[]",
            "bytes32",
        ],
        [
            t,
            BOOK_ROOT,
            grid_root,
            list(parties),
            orders,
            list(nodes),
            trades,
            list(sell_prices),
            bytes(32),
        ],
    )
    with mapped_reverts():
        env.chain.w3.eth.call(
            {"from": env.admin, "to": env.ledger.address, "data": COMMIT_SELECTOR + body}
        )


def test_party_table_must_be_ascending(env: MarketEnv) -> None:
    t = env.next_interval()
    parties, orders, trades = _chunk(env, t)
    with raises(PartiesNotAscending, position=1):
        _send_raw(env, t, list(reversed(parties)), orders, trades)
    with raises(PartiesNotAscending, position=1):
        _send_raw(env, t, [parties[0], parties[0]], orders, trades)
    _send_raw(env, t, parties, orders, trades)


def test_order_fields_out_of_range_revert(env: MarketEnv) -> None:
    """The order loop reads calldata words itself, so it refuses a party position beyond the
    table, a side other than 0/1, unknown flags, a node position beyond the chunk's nodes
    and a limit above uint128."""
    t = env.next_interval()
    parties, orders, trades = _chunk(env, t)
    for i in range(0, len(orders), 4):
        for bad_meta in (
            orders[i] | 0xFFFF,  # party position 65,535 of a table of 2
            orders[i] | (2 << 16),  # side 2 (or 3)
            orders[i] | (4 << 24),  # flag 4
            orders[i] | (1 << 32),  # node position 1 of one node
            orders[i] | (1 << 40),  # node position 256
            orders[i] | (1 << 48),  # node position 65,536
        ):
            bad = list(orders)
            bad[i] = bad_meta
            with raises(MalformedOrder, order_index=i // 4):
                _send_raw(env, t, parties, bad, trades)
        bad = list(orders)
        bad[i + 1] = 2**128
        with raises(MalformedOrder, order_index=i // 4):
            _send_raw(env, t, parties, bad, trades)


def test_a_trade_naming_an_order_beyond_the_chunk_reverts(env: MarketEnv) -> None:
    t = env.next_interval()
    parties, orders, trades = _chunk(env, t)
    for shift in (32, 48):
        with raises(TradeOrderMismatch, trade_index=0):
            _send_raw(env, t, parties, orders, [trades[0] | (0xFF << shift)])


def test_commit_while_paused_reverts(env: MarketEnv) -> None:
    env.ledger.pause()
    with raises(EnforcedPause):
        env.commit([trade(env.p(0), env.p(1), 10)])


def test_a_commit_far_ahead_reverts_so_no_lock_lasts_unbounded(env: MarketEnv) -> None:
    """Attack: a commit for interval 10^12 locked a victim's deposit until a deadline 10^14 s
    away. Commits are for intervals starting within MAX_COMMIT_LEAD_SECONDS."""
    functions = env.ledger.contract.functions
    lead = functions.MAX_COMMIT_LEAD_SECONDS().call()
    length = functions.intervalSeconds().call()
    now = env.ledger.current_interval()
    too_far = now + lead // length + 2
    with raises(IntervalTooFarAhead, interval=too_far):
        env.commit([trade(env.p(0), env.p(1), 10)], too_far)
    with raises(IntervalTooFarAhead, interval=10**12):
        env.commit([trade(env.p(0), env.p(1), 10)], 10**12)
    within = now + lead // length - 1
    env.commit([trade(env.p(0), env.p(1), 10)], within)


def test_terms_cannot_set_an_unbounded_reading_window(env: MarketEnv) -> None:
    longest = env.ledger.contract.functions.MAX_READING_WINDOW_SECONDS().call()
    with raises(InvalidTerms):
        env.ledger.set_terms(Terms(1, 0, longest + 1))
    env.ledger.set_terms(Terms(1, 0, longest))
