"""Receipts read past web3's formatters equal web3's receipts, on eth-tester and on anvil.

:meth:`Chain.receipt` and :meth:`Chain.wait_for_receipt` build receipts themselves (from
py-evm on the embedded chain, from the bare JSON-RPC answer on a node). Every consumer reads
them as web3's receipts: status and gas, hashes, and the logs the event decoder
(:mod:`chain.events`) reads, which decodes them as web3's ``process_receipt`` does.
So each must be equal to ``w3.eth.get_transaction_receipt`` in keys, values *and* types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_support import MarketEnv, trade
from web3.datastructures import AttributeDict
from web3.logs import DISCARD
from web3.types import TxReceipt

from chain.connection import Chain
from chain.receipts import format_receipt


def shape(value: Any) -> Any:
    """``value`` with the type of every part spelled out (``==`` alone equates 1 and True,
    a ``str`` and an equal ``HexBytes`` never, but a list and a tuple of HexBytes do)."""
    if isinstance(value, Mapping):
        return (type(value).__name__, {k: shape(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return (type(value).__name__, [shape(v) for v in value])
    return (type(value).__name__, value)


def market_transactions(chain: Chain) -> list[bytes]:
    """A deployment, registrations, deposits, a commit with many logs, a legacy transaction
    that reverts and a dynamic-fee one; every transaction hash of the chain, oldest first."""
    env = MarketEnv.build(chain, n_participants=5)
    ps = env.participants
    env.commit([trade(ps[i % 5], ps[(i + 2) % 5], 10 + i, n=i) for i in range(12)])
    w3 = chain.w3
    signer = chain.signers[1]
    data = env.ledger.contract.functions.withdraw(10**30)._encode_transaction_data()
    nonce = w3.eth.get_transaction_count(signer.address)
    common = {"chainId": chain.chain_id, "to": env.ledger.address, "value": 0, "gas": 300_000}
    legacy = {**common, "nonce": nonce, "data": data, "gasPrice": 10**10}
    dynamic = {
        **common,
        "nonce": nonce + 1,
        "data": env.ledger.contract.functions.withdraw(1)._encode_transaction_data(),
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "type": 2,
    }
    for tx in (legacy, dynamic):
        chain.wait_for_receipt(
            w3.eth.send_raw_transaction(signer.sign_transaction(tx).raw_transaction)
        )
    hashes = []
    for number in range(1, w3.eth.block_number + 1):
        block: Any = w3.eth.get_block(number)
        hashes += [bytes(h) for h in block["transactions"]]
    return hashes


def check_receipts_equal_web3s(chain: Chain) -> None:
    hashes = market_transactions(chain)
    assert len(hashes) > 20
    statuses = set()
    with_logs = 0
    created = 0
    for tx_hash in hashes:
        expected = chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        got = chain.receipt(tx_hash)
        assert got is not None
        assert shape(got) == shape(expected)
        assert shape(chain.receipt("0x" + tx_hash.hex())) == shape(expected)
        assert shape(chain.wait_for_receipt(tx_hash)) == shape(expected)
        statuses.add(got["status"])
        with_logs += len(got["logs"]) >= 3  # a commit: its locks, trades and completion
        created += got["contractAddress"] is not None
    assert statuses == {0, 1}
    assert with_logs and created


def check_logs_decode_like_web3s(chain: Chain) -> None:
    env = MarketEnv.build(chain, n_participants=4)
    ps = env.participants
    receipt = env.commit_receipt(
        [trade(ps[0], ps[1], 5), trade(ps[2], ps[3], 7, n=1)], env.next_interval()
    )
    web3s = chain.w3.eth.get_transaction_receipt(receipt["transactionHash"])
    for name in ("CollateralLocked", "IntervalCommitted", "TradesCommitted"):
        decoded = env.ledger.events(receipt, name)
        assert decoded
        assert decoded == env.ledger.events(web3s, name)
        event = env.ledger.contract.events[name]()
        assert decoded == [dict(e["args"]) for e in event.process_receipt(web3s, errors=DISCARD)]


def test_embedded_receipts_equal_web3s(chain: Chain) -> None:
    check_receipts_equal_web3s(chain)


def test_embedded_receipt_logs_decode_like_web3s(chain: Chain) -> None:
    check_logs_decode_like_web3s(chain)


def test_embedded_receipt_is_none_for_unknown_and_reverted_transactions(chain: Chain) -> None:
    assert chain.receipt(b"\x12" * 32) is None
    snapshot = chain.snapshot()
    signer = chain.signers[1]
    tx: dict[str, Any] = {
        "chainId": chain.chain_id,
        "nonce": chain.w3.eth.get_transaction_count(signer.address),
        "to": chain.accounts[2],
        "value": 1,
        "gas": 21_000,
        "gasPrice": 10**10,
    }
    tx_hash = chain.w3.eth.send_raw_transaction(signer.sign_transaction(tx).raw_transaction)
    assert chain.receipt(tx_hash) is not None
    chain.revert(snapshot)
    chain.mine(3)  # the abandoned transaction's block number is canonical again
    assert chain.receipt(tx_hash) is None


@pytest.mark.anvil
def test_anvil_receipts_equal_web3s(anvil_chain: Chain) -> None:
    check_receipts_equal_web3s(anvil_chain)


@pytest.mark.anvil
def test_anvil_receipt_logs_decode_like_web3s(anvil_chain: Chain) -> None:
    check_logs_decode_like_web3s(anvil_chain)


@pytest.mark.anvil
def test_anvil_receipt_is_none_for_unknown_transactions(anvil_chain: Chain) -> None:
    assert anvil_chain.receipt(b"\x12" * 32) is None


# ----------------------------------------------------------------------------- format_receipt


def web3_format(raw: dict[str, Any]) -> TxReceipt:
    """The reference: web3's own receipt formatter, then its AttributeDict middleware."""
    from web3._utils.method_formatters import receipt_formatter

    formatted: Any = receipt_formatter(raw)
    return AttributeDict.recursive(formatted)  # type: ignore[no-any-return]


def hex_of(size: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=size, max_size=size).map(lambda b: "0x" + b.hex())


quantity = st.integers(min_value=0, max_value=2**64).map(hex)
address = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
nullable = st.none() | quantity
log_entry = st.fixed_dictionaries(
    {
        "address": address,
        "topics": st.lists(hex_of(32), max_size=4),
        "data": st.binary(max_size=96).map(lambda b: "0x" + b.hex()),
        "logIndex": quantity,
    },
    optional={
        "blockHash": st.none() | hex_of(32),
        "blockNumber": nullable,
        "transactionHash": st.none() | hex_of(32),
        "transactionIndex": nullable,
        "removed": st.booleans(),
        "blockTimestamp": quantity,
    },
)
raw_receipt = st.fixed_dictionaries(
    {
        "transactionHash": hex_of(32),
        "status": quantity,
        "gasUsed": quantity,
        "logs": st.lists(log_entry, max_size=5),
    },
    optional={
        "blockHash": st.none() | hex_of(32),
        "blockNumber": nullable,
        "transactionIndex": nullable,
        "cumulativeGasUsed": quantity,
        "effectiveGasPrice": quantity,
        "type": quantity,
        "from": address,
        "to": st.none() | address,
        "contractAddress": st.none() | address,
        "logsBloom": hex_of(256),
        "blobGasUsed": quantity,
        "root": hex_of(32),
        "l1Fee": quantity,
        "extra": st.dictionaries(st.sampled_from(["a", "b"]), st.lists(quantity, max_size=2)),
    },
)


@settings(max_examples=200)
@given(raw=raw_receipt)
def test_format_receipt_equals_web3s_formatter(raw: dict[str, Any]) -> None:
    assert shape(format_receipt(raw)) == shape(web3_format(raw))


def test_format_receipt_drops_leading_zero_bytes_and_refuses_long_hashes() -> None:
    raw = {"transactionHash": "0x00" + "ab" * 32, "status": "0x1", "gasUsed": "0x5208"}
    assert format_receipt(raw)["transactionHash"] == web3_format(raw)["transactionHash"]
    with pytest.raises(ValueError):
        format_receipt({**raw, "transactionHash": "0x01" + "ab" * 32})
