"""The finality policy (depth or tag), its flag, its defaults, and a transaction's fate."""

from __future__ import annotations

import argparse

import pytest
from web3.types import Wei

from chain.canonical import TxFate, final_block, resolve_finality, tx_fate
from chain.connection import ANVIL_CHAIN_ID, Chain, connect, is_dev_chain
from chain.finality import (
    DEFAULT_CONFIRMATIONS,
    IMMEDIATE,
    Finality,
    default_finality,
    parse_finality,
)
from deploy.cli_audit import audit_block


def test_a_block_is_final_exactly_confirmations_below_the_head() -> None:
    assert Finality(confirmations=2).final_block(10) == 8
    assert IMMEDIATE.final_block(10) == 10
    assert Finality(confirmations=20).final_block(10) == -10  # nothing final yet


def test_a_tag_is_final_up_to_the_nodes_tagged_block_and_never_above_the_head() -> None:
    tagged = Finality(tag="finalized")
    assert tagged.final_block(100, 64) == 64
    assert tagged.final_block(100, None) == -1
    assert tagged.final_block(10, 64) == 10


def test_confirmations_flag_takes_a_depth_or_a_tag() -> None:
    assert parse_finality("0") == IMMEDIATE
    assert parse_finality("12") == Finality(confirmations=12)
    assert parse_finality("Finalized") == Finality(tag="finalized")
    assert parse_finality("safe") == Finality(tag="safe")
    for bad in ("-1", "soon", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_finality(bad)
    with pytest.raises(ValueError):
        Finality(confirmations=-1)


def test_defaults_are_immediate_on_dev_chains_and_safe_elsewhere() -> None:
    assert default_finality(True, True) == IMMEDIATE
    assert default_finality(False, True) == Finality(tag="finalized")
    assert default_finality(False, False) == Finality(confirmations=DEFAULT_CONFIRMATIONS)
    assert is_dev_chain(ANVIL_CHAIN_ID) and is_dev_chain(1, embedded=True)
    assert not is_dev_chain(1)


def test_the_embedded_chain_defaults_to_final_once_mined(chain: Chain) -> None:
    assert resolve_finality(chain, None) == IMMEDIATE
    assert resolve_finality(chain, Finality(confirmations=3)) == Finality(confirmations=3)


def test_a_transaction_is_pending_until_deep_enough_and_dropped_when_reverted_away() -> None:
    chain = connect()
    chain.finality = Finality(confirmations=2)
    a, b = chain.accounts[0], chain.accounts[1]
    before = chain.snapshot()
    tx = chain.w3.eth.send_transaction({"from": a, "to": b, "value": Wei(1)})
    chain.wait_for_receipt(tx)
    assert tx_fate(chain, tx) is TxFate.PENDING
    chain.mine(1)
    assert tx_fate(chain, tx) is TxFate.PENDING
    chain.mine(1)
    assert tx_fate(chain, tx) is TxFate.FINAL
    assert final_block(chain) == chain.block_number() - 2
    chain.revert(before)
    chain.mine(3)  # a longer chain without it
    assert tx_fate(chain, tx) is TxFate.DROPPED


def test_the_audit_reads_at_the_final_block_unless_final_once_mined() -> None:
    chain = connect()
    chain.mine(5)
    head = chain.block_number()
    assert audit_block(chain.w3, ANVIL_CHAIN_ID, None) is None  # dev chain: the latest
    assert audit_block(chain.w3, 1, Finality(confirmations=2)) == head - 2
    assert audit_block(chain.w3, 1, None) == head  # eth-tester answers "finalized": its head
