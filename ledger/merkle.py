"""The book root: a Merkle tree over an interval's order hashes, OpenZeppelin-compatible.

``commitInterval(t, bookRoot, trades)`` commits to the full signed order set of interval
``t`` (DESIGN §5); ``GET /intervals/{t}/orders`` publishes that set and
``GET /orders/{id}/proof`` gives each participant an inclusion proof.

The tree is exactly the one ``@openzeppelin/merkle-tree``'s
``StandardMerkleTree.of(hashes.map(h => [h]), ["bytes32"])`` builds, and each proof passes
OpenZeppelin's ``MerkleProof.verify(proof, root, leaf)``:

* **leaf** of an order: ``keccak256(bytes.concat(keccak256(abi.encode(orderHash))))``, where
  ``orderHash`` is the order's EIP-712 digest. ``abi.encode`` of one ``bytes32`` is the 32
  bytes themselves, so the leaf is ``keccak256(keccak256(orderHash))``. Hashing twice is the
  StandardMerkleTree convention: a leaf's preimage is never 64 bytes, so no inner node can be
  passed off as a leaf (second-preimage attack);
* **inner node**: ``keccak256(min(a, b) ‖ max(a, b))`` (sorted pair, OpenZeppelin's
  commutative ``_hashPair``), so proofs carry no left/right flags;
* **layout**: leaves sorted ascending, stored at the end of an array of ``2n - 1`` nodes in
  reverse; node ``i`` has children ``2i + 1`` and ``2i + 2``; the root is node 0;
* an interval with no orders has the root ``bytes32(0)``; with one order the root is its leaf
  and its proof is empty.

On-chain check (Solidity)::

    bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(orderHash))));
    require(MerkleProof.verify(proof, bookRoot, leaf));
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.hashing import keccak

EMPTY_ROOT = bytes(32)
"""The book root of an interval without orders."""


def leaf_hash(order_hash: bytes) -> bytes:
    """``keccak256(bytes.concat(keccak256(abi.encode(orderHash))))`` for one order hash."""
    if len(order_hash) != 32:
        raise ValueError("an order hash is 32 bytes")
    return keccak(keccak(order_hash))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative ``_hashPair``: keccak256 of the sorted pair."""
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True)
class MerkleTree:
    """The full tree of one interval's book; build with :meth:`of`."""

    nodes: tuple[bytes, ...]
    """All nodes in StandardMerkleTree order; ``nodes[0]`` is the root."""
    leaf_index: dict[bytes, int]
    """Order hash → index of its leaf in :attr:`nodes`."""

    @classmethod
    def of(cls, order_hashes: Sequence[bytes]) -> MerkleTree:
        """Build the tree over ``order_hashes`` (their order does not matter)."""
        if len(set(order_hashes)) != len(order_hashes):
            raise ValueError("duplicate order hash in a book")
        leaves = sorted((leaf_hash(h), h) for h in order_hashes)
        n = len(leaves)
        if n == 0:
            return cls(nodes=(), leaf_index={})
        nodes: list[bytes] = [b""] * (2 * n - 1)
        index: dict[bytes, int] = {}
        for i, (leaf, order_hash) in enumerate(leaves):
            position = len(nodes) - 1 - i
            nodes[position] = leaf
            index[order_hash] = position
        for i in range(len(nodes) - 1 - n, -1, -1):
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2])
        return cls(nodes=tuple(nodes), leaf_index=index)

    @property
    def root(self) -> bytes:
        """The book root (``bytes32(0)`` for an empty book)."""
        return self.nodes[0] if self.nodes else EMPTY_ROOT

    def proof(self, order_hash: bytes) -> list[bytes]:
        """The sibling hashes from the leaf of ``order_hash`` up to the root.

        Raises KeyError when the order is not in this book.
        """
        i = self.leaf_index[order_hash]
        out: list[bytes] = []
        while i > 0:
            out.append(self.nodes[i + 1 if i % 2 == 1 else i - 1])
            i = (i - 1) // 2
        return out


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """``MerkleProof.verify``: fold ``proof`` into ``leaf`` with sorted pairs; compare."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


__all__ = ["EMPTY_ROOT", "MerkleTree", "hash_pair", "leaf_hash", "verify"]
