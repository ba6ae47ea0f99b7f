"""The embedded chain refuses, as a real node does, a transaction whose gas limit is below its
EIP-7623 calldata floor, so nothing mined there can use more gas than its block holds."""

from __future__ import annotations

import pytest

from chain.calldata_floor import calldata_floor
from chain.connection import Chain


def test_the_floor_counts_zero_bytes_once_and_others_four_times() -> None:
    assert calldata_floor(b"") == 21_000
    assert calldata_floor(b"\x00" * 10) == 21_000 + 10 * 10
    assert calldata_floor(b"\x01" * 10) == 21_000 + 10 * 40


def test_a_transaction_below_its_calldata_floor_is_refused(chain: Chain) -> None:
    w3 = chain.w3
    sender, receiver = chain.accounts[0], chain.accounts[1]
    limit = int(w3.eth.get_block("latest")["gasLimit"])
    # 29M gas for 1.7 MB of non-zero calldata: within the block's limit, but its floor is
    # 10 * 4 * 1.7M + 21k = 68M, more than the block holds (py-evm mined it as 68M gas)
    data = b"\x01" * (29_000_000 // 17)
    assert 29_000_000 < limit < calldata_floor(data)
    before = w3.eth.block_number
    with pytest.raises(Exception, match="intrinsic gas too low"):
        w3.eth.send_transaction({"from": sender, "to": receiver, "data": data, "gas": 29_000_000})
    assert w3.eth.block_number == before
    # at or above the floor, the same kind of transaction is mined and pays at least the floor
    small = b"\x01" * 1000
    tx = w3.eth.send_transaction(
        {"from": sender, "to": receiver, "data": small, "gas": calldata_floor(small)}
    )
    assert w3.eth.get_transaction_receipt(tx)["gasUsed"] == calldata_floor(small)
    # and the node's estimate covers the floor, as a real node's does
    assert w3.eth.estimate_gas({"from": sender, "to": receiver, "data": small}) == (
        calldata_floor(small)
    )
