"""How the contract's node registry names a grid node (``recordNode``, ``NodeRecorded``)."""

from __future__ import annotations

from functools import lru_cache

from eth_utils.crypto import keccak


@lru_cache(maxsize=65_536)
def node_hash(node_id: str) -> bytes:
    """``keccak256`` of the node id's UTF-8 bytes: what ``recordNode`` stores and
    ``NodeRecorded`` carries (ids of any length; the audit compares hashes), how EIP-712
    encodes an Order's ``node`` and the word ``commitInterval``'s ``nodes`` carries.
    Memoised: a market has few nodes and every order hashes one."""
    return bytes(keccak(node_id.encode("utf-8")))


__all__ = ["node_hash"]
