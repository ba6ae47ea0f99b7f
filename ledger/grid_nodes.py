"""How the contract's node registry names a grid node (``recordNode``, ``NodeRecorded``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from eth_utils.crypto import keccak

DEFAULT_NODE: Final = "root"
"""The one node of a market without a grid, and the root of a grid by default."""
NODE_ID_PATTERN: Final = "^[A-Za-z0-9_.:-]{1,128}$"
"""A grid node id (docs/grid.md §1.1, the order-id charset) as a JSON Schema pattern: an
Order's ``node``, the only string field of a signed type."""


@lru_cache(maxsize=65_536)
def node_hash(node_id: str) -> bytes:
    """``keccak256`` of the node id's UTF-8 bytes: what ``recordNode`` stores and
    ``NodeRecorded`` carries (ids of any length; the audit compares hashes), how EIP-712
    encodes an Order's ``node`` and the word ``commitInterval``'s ``nodes`` carries.
    Memoised: a market has few nodes and every order hashes one."""
    return bytes(keccak(node_id.encode("utf-8")))


__all__ = ["DEFAULT_NODE", "NODE_ID_PATTERN", "node_hash"]
