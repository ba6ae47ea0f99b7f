"""When a transaction counts as done: finality by depth or by the node's block tag.

A block can be replaced by a reorganisation of the chain until it is *final*. Every service
takes a step as done only once the transaction that made it is final under one
:class:`Finality` policy:

* **depth**: a block is final once ``confirmations`` blocks are on top of it, i.e. block ``b``
  is final at head ``h`` when ``b <= h - confirmations`` (0: final once mined, right for a
  dev chain that never reorganises);
* **tag**: a block is final once the node's ``finalized`` (or ``safe``) block has reached it
  (proof-of-stake Ethereum finalizes about every 13 minutes; ``safe`` is the head that an
  honest majority attested, a few blocks behind).

The default (:func:`default_finality`) is depth 0 on a local dev chain (the embedded chain,
anvil's chain id), the ``finalized`` tag on a chain whose node answers it, and
:data:`DEFAULT_CONFIRMATIONS` elsewhere. ``--confirmations N|finalized|safe`` chooses
(:func:`parse_finality`).

What a service does with it: it acts on the chain's head (sends what the head lacks, so it
is never slower than the chain) but marks a step done in its own records only at the final
block (:func:`chain.canonical.final_block`), and decides what to send by reading chain
state, never its own records, so a step a reorganisation dropped is seen missing and sent
again, once. :func:`chain.canonical.tx_fate` tells of one transaction whether it is final,
still waiting, or no longer in the canonical chain: the receipt is fetched again by hash (a
node answers only for the canonical chain) and its block checked against the canonical
block of that number.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Literal

FinalityTag = Literal["finalized", "safe"]
TAGS: tuple[FinalityTag, ...] = ("finalized", "safe")
DEFAULT_CONFIRMATIONS = 64
"""Depth on a chain that is not a dev chain and whose node has no ``finalized`` tag: two
proof-of-stake epochs (about 13 minutes of 12-second blocks), past which Ethereum has never
reorganised."""


@dataclass(frozen=True)
class Finality:
    """A block is final ``confirmations`` blocks below the head, or (``tag`` set) once the
    node's ``finalized``/``safe`` block has reached it."""

    confirmations: int = 0
    tag: FinalityTag | None = None

    def __post_init__(self) -> None:
        if self.confirmations < 0:
            raise ValueError(f"confirmations must be >= 0, got {self.confirmations}")
        if self.tag is not None and self.tag not in TAGS:
            raise ValueError(f"tag must be one of {TAGS}, got {self.tag!r}")

    @property
    def immediate(self) -> bool:
        """True when a mined block is final at once (depth 0, no tag)."""
        return self.tag is None and self.confirmations == 0

    def final_block(self, head: int, tagged: int | None = None) -> int:
        """The newest final block at ``head``; ``tagged``: the node's block of :attr:`tag`
        (None: the node has none yet, so nothing is final). -1 when no block is."""
        if self.tag is not None:
            return -1 if tagged is None else min(head, tagged)
        return head - self.confirmations

    def describe(self) -> str:
        """For messages: ``the finalized block``, ``12 confirmations``, ``once mined``."""
        if self.tag is not None:
            return f"the {self.tag} block"
        if self.confirmations == 0:
            return "once mined"
        return f"{self.confirmations} confirmation{'s' if self.confirmations != 1 else ''}"


IMMEDIATE = Finality()
"""Final once mined: the embedded chain's and anvil's default."""


def parse_finality(text: str) -> Finality:
    """``--confirmations``: a number of blocks (``0``, ``12``) or a tag (``finalized``,
    ``safe``); argparse's error otherwise."""
    word = text.strip().lower()
    if word in TAGS:
        return Finality(tag=word)
    try:
        depth = int(word)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of blocks or one of {', '.join(TAGS)}, got {text!r}"
        ) from None
    if depth < 0:
        raise argparse.ArgumentTypeError(f"expected a number of blocks >= 0, got {depth}")
    return Finality(confirmations=depth)


def default_finality(dev_chain: bool, has_finalized_tag: bool) -> Finality:
    """Depth 0 on a dev chain; else the node's ``finalized`` tag where it has one; else
    :data:`DEFAULT_CONFIRMATIONS`."""
    if dev_chain:
        return IMMEDIATE
    if has_finalized_tag:
        return Finality(tag="finalized")
    return Finality(confirmations=DEFAULT_CONFIRMATIONS)


# -- reading the chain -------------------------------------------------------------------------


def tagged_block(w3: Any, tag: str) -> int | None:
    """The number of the node's ``tag`` block (``finalized``, ``safe``), or None when the
    node has none (not yet, or does not know the tag)."""
    try:
        reply = w3.provider.make_request("eth_getBlockByNumber", [tag, False])
    except Exception:  # a node that refuses the tag outright
        return None
    result = reply.get("result") if isinstance(reply, dict) else None
    if not result or reply.get("error"):
        return None
    number = result.get("number")
    if number is None:
        return None
    return int(number, 16) if isinstance(number, str) else int(number)


def final_block_of(w3: Any, finality: Finality, head: int | None = None) -> int:
    """The newest final block of the chain behind ``w3`` (``head``: the latest block's
    number when the caller has just read it)."""
    if head is None:
        head = int(w3.eth.block_number)
    tagged = tagged_block(w3, finality.tag) if finality.tag is not None else None
    return finality.final_block(head, tagged)


__all__ = [
    "DEFAULT_CONFIRMATIONS",
    "IMMEDIATE",
    "TAGS",
    "Finality",
    "FinalityTag",
    "default_finality",
    "final_block_of",
    "parse_finality",
    "tagged_block",
]
