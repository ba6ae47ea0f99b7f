"""How the contract's node registry names a grid node (``recordNode``, ``NodeRecorded``)."""

from __future__ import annotations

from eth_utils.crypto import keccak


def node_hash(node_id: str) -> bytes:
    """``keccak256`` of the node id's UTF-8 bytes: what ``recordNode`` stores and
    ``NodeRecorded`` carries (ids of any length; the audit compares hashes)."""
    return bytes(keccak(node_id.encode("utf-8")))


__all__ = ["node_hash"]
