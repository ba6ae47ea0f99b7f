"""The settlement service's calldata encoder against eth-abi, the encoding it replaces.

``encode_static_args`` writes the ABI words of ``submitReadings`` and ``settle`` arguments
itself; for every value eth-abi takes it must give eth-abi's bytes, and refuse what eth-abi
refuses (a value out of range, a malformed address or hash).
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.abi import encode_static_args

READINGS = ["uint64", "(address,uint64,uint64,uint64,bytes32,bytes32)[]"]
SETTLE = [
    "uint64",
    "uint256",
    "(address,uint32)[]",
    "(uint32,uint32,uint64,uint128,uint64,uint64)[]",
    "bytes32",
]

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
words = st.binary(min_size=32, max_size=32)


def uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=2**bits - 1)


reading_rows = st.lists(
    st.tuples(addresses, uint(64), uint(64), uint(64), words, words), max_size=8
)
party_rows = st.lists(st.tuples(addresses, uint(32)), max_size=6)
trade_rows = st.lists(
    st.tuples(uint(32), uint(32), uint(64), uint(128), uint(64), uint(64)), max_size=6
)


def checksummed(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows as eth-abi wants them: addresses checksummed."""
    return [(to_checksum_address(r[0]), *r[1:]) for r in rows]


@settings(max_examples=200, deadline=None)
@given(t=uint(64), rows=reading_rows)
def test_readings_calldata_equals_eth_abi(t: int, rows: list[tuple[Any, ...]]) -> None:
    expected = abi_encode(READINGS, [t, checksummed(rows)])
    assert encode_static_args(READINGS, [t, rows]) == expected
    assert encode_static_args(READINGS, [t, checksummed(rows)]) == expected


@settings(max_examples=200, deadline=None)
@given(t=uint(64), first=uint(256), parties=party_rows, trades=trade_rows, tail=words)
def test_settle_calldata_equals_eth_abi(
    t: int,
    first: int,
    parties: list[tuple[Any, ...]],
    trades: list[tuple[Any, ...]],
    tail: bytes,
) -> None:
    args = [t, first, checksummed(parties), trades, tail]
    assert encode_static_args(SETTLE, args) == abi_encode(SETTLE, args)


@pytest.mark.parametrize(
    "types, args",
    [
        (["uint64"], [2**64]),
        (["uint64"], [-1]),
        (["uint64"], [True]),
        (["bytes32"], [b"\x01" * 33]),
        (["address"], ["0x" + "ab" * 19]),
        (READINGS, [1, [("0x" + "ab" * 20, 2**64, 0, 0, b"\x00" * 32, b"\x00" * 32)]]),
        (READINGS, [1, [("0x" + "ab" * 20, 1, 0, 0, b"\x00" * 32)]]),
    ],
)
def test_values_eth_abi_refuses_are_refused(types: list[str], args: list[Any]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - eth-abi raises its own EncodingError types
        abi_encode(types, args)
    with pytest.raises(ValueError):
        encode_static_args(types, args)


@settings(max_examples=50, deadline=None)
@given(value=st.binary(max_size=32))
def test_a_short_hash_is_padded_as_eth_abi_pads_it(value: bytes) -> None:
    assert encode_static_args(["bytes32"], [value]) == abi_encode(["bytes32"], [value])


def test_other_types_are_left_to_eth_abi() -> None:
    types = ["string", "uint8[]"]
    args = ["wattledger", [1, 2, 3]]
    assert encode_static_args(types, args) == abi_encode(types, args)
