"""Whether a transaction or a block is still canonical, and final, on a connected chain.

The policy is :class:`chain.finality.Finality`, kept on the connection
(:attr:`Chain.finality <chain.connection.Chain.finality>`); here it meets the chain:
:func:`final_block` is the newest final block, :func:`tx_fate` tells of one transaction
whether it is final, still waiting, or no longer in the canonical chain, and
:func:`resolve_finality` picks a chain's default policy.
"""

from __future__ import annotations

import enum
from typing import Any

from chain.connection import Chain
from chain.finality import IMMEDIATE, Finality, default_finality, final_block_of, tagged_block


def resolve_finality(chain: Chain, requested: Finality | None) -> Finality:
    """``requested``, else the chain's default (:func:`default_finality`): the dev-chain
    rule is :attr:`Chain.is_dev <chain.connection.Chain.is_dev>`, the one raw keys from the
    environment are allowed by."""
    if requested is not None:
        return requested
    if chain.is_dev:
        return IMMEDIATE
    return default_finality(False, tagged_block(chain.w3, "finalized") is not None)


def final_block(chain: Chain, head: int | None = None) -> int:
    """The newest final block of ``chain`` under its :attr:`~chain.connection.Chain.finality`
    (the head itself when final once mined)."""
    finality = chain.finality
    if head is None:
        head = chain.block_number()
    if finality.immediate:
        return head
    return final_block_of(chain.w3, finality, head)


class TxFate(enum.Enum):
    """What became of a mined transaction."""

    FINAL = "final"
    """In a canonical block that is final."""
    PENDING = "pending"
    """In a canonical block that is not final yet."""
    DROPPED = "dropped"
    """In no canonical block: a reorganisation removed it (or it was never mined)."""


def tx_fate(chain: Chain, tx_hash: Any, head: int | None = None) -> TxFate:
    """Whether ``tx_hash`` is final, still pending, or dropped from the canonical chain under
    ``chain.finality``: its receipt is fetched again by hash and its block hash compared with
    the canonical block of that number."""
    receipt = chain.receipt(tx_hash)
    if receipt is None or receipt.get("blockNumber") is None:
        return TxFate.DROPPED
    number = int(receipt["blockNumber"])
    try:
        canonical = chain.block_hash(number)
    except Exception:  # the block is gone: the chain is shorter than it was
        return TxFate.DROPPED
    if bytes(receipt["blockHash"]) != canonical:
        return TxFate.DROPPED
    return TxFate.FINAL if number <= final_block(chain, head) else TxFate.PENDING


__all__ = ["TxFate", "final_block", "resolve_finality", "tx_fate"]
