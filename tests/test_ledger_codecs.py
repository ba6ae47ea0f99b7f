"""The ledger client's hand-written ABI codecs against the eth_abi / web3 encodings they replace.

Each fast function in :mod:`chain.client` (and the checksum cache of :mod:`ledger.addresses`)
is checked on random input against a slow reference kept here: the code it replaced, or
web3's own encoder of the same call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from chain.artifacts import load_artifact
from ledger.addresses import checksum_address, checksum_of_bytes
from ledger.calldata import (
    balances_of_calldata,
    decode_balances,
    party_table,
    settle_chunk_args,
)
from ledger.records import IntervalInfo, SellerPosition, Trade, seller_positions
from ledger.trade_chain import chain_link, settlement_chain

MARKET = Web3().eth.contract(abi=load_artifact("EnergyMarket").abi)
UINT64 = 2**64
UINT128 = 2**128

# ----------------------------------------------------------------------------- references


def reference_chain_link(
    next_hash: bytes, trade: Trade, seller_index: int, position: SellerPosition
) -> bytes:
    """The link chain_link replaced: eth_abi's encoding of TradeChain.hash's arguments."""
    types = ["address", "address", "uint256", "uint256", "uint256", "uint256", "uint256", "bytes32"]
    values = [
        to_checksum_address(trade.buyer),
        to_checksum_address(trade.seller),
        seller_index,
        trade.quantity_wh,
        trade.price_per_wh,
        position.sold_wh,
        position.sold_before_wh,
        next_hash,
    ]
    return bytes(keccak(abi_encode(types, values)))


def reference_settlement_chain(
    trades: Sequence[Trade], participant_index: Mapping[str, int]
) -> tuple[bytes, ...]:
    positions = seller_positions(trades)
    heads = [b"\x00" * 32] * (len(trades) + 1)
    for k in range(len(trades) - 1, -1, -1):
        seller = to_checksum_address(trades[k].seller)
        heads[k] = reference_chain_link(
            heads[k + 1], trades[k], participant_index[seller], positions[k]
        )
    return tuple(heads)


# ----------------------------------------------------------------------------- strategies

addresses = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
bytes32 = st.binary(min_size=32, max_size=32)


@st.composite
def trade_lists(draw: st.DrawFn, max_trades: int = 30) -> list[Trade]:
    """Trades among a few random parties (no self-trades), with full-range fields."""
    pool = draw(st.lists(addresses, min_size=2, max_size=8, unique_by=str.lower))
    n = draw(st.integers(0, max_trades))
    out = []
    for _ in range(n):
        buyer, seller = draw(st.permutations(pool))[:2]
        lower = draw(st.booleans())
        out.append(
            Trade(
                buyer=buyer.lower() if lower else buyer,
                seller=seller,
                quantity_wh=draw(st.integers(1, UINT64 - 1)),
                price_per_wh=draw(st.integers(1, UINT128 - 1)),
                buy_order_id=draw(bytes32),
                sell_order_id=draw(bytes32),
            )
        )
    return out


def _canonical(trades: Sequence[Trade]) -> tuple[Trade, ...]:
    """``trades`` with checksum addresses (what a decoder gives back)."""
    return tuple(
        Trade(
            to_checksum_address(t.buyer),
            to_checksum_address(t.seller),
            t.quantity_wh,
            t.price_per_wh,
            t.buy_order_id,
            t.sell_order_id,
        )
        for t in trades
    )


# ----------------------------------------------------------------------------- checksums


@settings(max_examples=60)
@given(raw=st.binary(min_size=20, max_size=20), case=st.sampled_from((str.lower, str.upper)))
def test_cached_checksum_equals_eth_utils_for_any_spelling(raw: bytes, case: Any) -> None:
    spelled = "0x" + case(raw.hex())
    assert checksum_address(spelled) == to_checksum_address(spelled)
    assert checksum_of_bytes(raw) == to_checksum_address(raw)


def test_cached_checksum_rejects_what_eth_utils_rejects() -> None:
    for bad in ("0x1234", "0x" + "zz" * 20, ""):
        with pytest.raises(ValueError):
            to_checksum_address(bad)
        with pytest.raises(ValueError):
            checksum_address(bad)
    with pytest.raises(ValueError):
        checksum_of_bytes(b"\x01" * 19)


# ----------------------------------------------------------------------------- party table


@settings(max_examples=60)
@given(trades=trade_lists())
def test_party_table_is_sorted_by_address_value(trades: list[Trade]) -> None:
    parties = {to_checksum_address(p) for t in trades for p in (t.buyer, t.seller)}
    assert party_table(trades) == tuple(sorted(parties, key=lambda a: int(a, 16)))


# ----------------------------------------------------------------------------- hash chain


@settings(max_examples=60)
@given(trades=trade_lists(), data=st.data())
def test_settlement_chain_equals_eth_abi_links(trades: list[Trade], data: st.DataObject) -> None:
    sellers = sorted({to_checksum_address(t.seller) for t in trades})
    index: dict[str, int] = {s: data.draw(st.integers(0, 2**32 - 1)) for s in sellers}
    heads = settlement_chain(trades, index)
    assert heads == reference_settlement_chain(trades, index)
    positions = seller_positions(trades)
    for k, t in enumerate(trades):
        seller_index = index[to_checksum_address(t.seller)]
        link = chain_link(heads[k + 1], t, seller_index, positions[k])
        assert link == reference_chain_link(heads[k + 1], t, seller_index, positions[k])


@settings(max_examples=30)
@given(trades=trade_lists(max_trades=12), data=st.data())
def test_settle_chunk_args_name_parties_by_position_in_the_chunk_table(
    trades: list[Trade], data: st.DataObject
) -> None:
    index: dict[str, int] = {to_checksum_address(t.seller): i for i, t in enumerate(trades)}
    start = data.draw(st.integers(0, len(trades)))
    stop = data.draw(st.integers(start, len(trades)))
    args = settle_chunk_args(trades, index, start, stop)
    table = [p for p, _ in args.parties]
    assert table == sorted(table, key=lambda a: int(a, 16))
    for t, row in zip(trades[start:stop], args.trades, strict=True):
        assert (table[row[0]], table[row[1]]) == (
            to_checksum_address(t.buyer),
            to_checksum_address(t.seller),
        )
    assert args.tail_hash == reference_settlement_chain(trades, index)[stop]


def test_chain_link_refuses_a_malformed_address() -> None:
    bad = Trade("0x1234", to_checksum_address(b"\x0b" * 20), 1, 1, b"\x00" * 32, b"\x00" * 32)
    with pytest.raises(ValueError):
        chain_link(b"\x00" * 32, bad, 0, SellerPosition(1, 0))


# ----------------------------------------------------------------------------- balancesOf


@settings(max_examples=40)
@given(participants=st.lists(addresses, max_size=20))
def test_balances_of_calldata_equals_web3_encoding(participants: list[str]) -> None:
    expected = MARKET.encode_abi("balancesOf", args=[participants])
    assert balances_of_calldata(participants) == bytes.fromhex(expected[2:])


@settings(max_examples=40)
@given(pairs=st.lists(st.tuples(st.integers(0, 2**256 - 1), st.integers(0, 2**256 - 1))))
def test_decode_balances_equals_eth_abi(pairs: list[tuple[int, int]]) -> None:
    free = [f for f, _ in pairs]
    locked = [x for _, x in pairs]
    raw = abi_encode(["uint256[]", "uint256[]"], [free, locked])
    assert decode_balances(raw, len(pairs)) == (free, locked)
    assert [list(v) for v in abi_decode(["uint256[]", "uint256[]"], raw)] == [free, locked]


def test_decode_balances_refuses_an_answer_of_the_wrong_shape() -> None:
    raw = abi_encode(["uint256[]", "uint256[]"], [[1, 2], [3, 4]])
    for bad, count in ((raw, 3), (raw[:-32], 2), (raw[:40], 2), (b"", 0)):
        with pytest.raises(ValueError):
            decode_balances(bad, count)
    uneven = abi_encode(["uint256[]", "uint256[]"], [[1, 2], [3]])
    with pytest.raises(ValueError):
        decode_balances(uneven, 2)


def test_interval_info_names_the_contracts_statuses_and_keeps_any_other_number() -> None:
    values = [1, 3, 2, 1_700_000_000, 500, 7, b"\x01" * 32, b"\x02" * 32]
    info = IntervalInfo.from_values(values)
    assert (info.status, info.trade_count, info.cursor, info.deadline) == (
        "committed",
        3,
        2,
        1_700_000_000,
    )
    assert (info.tolerance_bps, info.penalty_price_per_wh) == (500, 7)
    assert (info.book_root, info.remaining_hash) == (b"\x01" * 32, b"\x02" * 32)
    assert [IntervalInfo.from_values([s, *values[1:]]).status for s in (0, 2, 3, 4, 255)] == [
        "none",
        "settled",
        "committing",
        "4",
        "255",
    ]
