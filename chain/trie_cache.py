"""A process-wide cache of decoded Merkle-Patricia trie nodes for the embedded chain.

Why: on eth-tester, py-evm's tries are a fifth of a simulated day's time. Every SLOAD walks
the contract's storage trie from its root, and ``HexaryTrie.get_node`` RLP-decodes each node
on the way; py-evm builds a fresh trie (and fresh caches) for every transaction, so the same
upper nodes are decoded again and again: a day makes ~460k ``get_node`` calls, ~350k of them
for a node hash already decoded. Decoding a 16-child branch costs ~12 us, copying the
decoded list ~0.13 us.

Nodes enter the cache two ways: when a lookup misses and decodes one, and when a caching
trie writes one. py-evm persists each transaction's storage writes into the contract's
storage trie, and the next transaction reads those new nodes back: without the second way,
every miss of a run is such a node. ``HexaryTrie`` has the node in hand as a list when it
stores it (``_persist_node`` for inner nodes, ``_set_raw_node`` for a root), so
:meth:`DecodedNodeCache.put` keeps a copy taken there (~1.2 us for a branch, ~0.7 us for a
leaf, against ~13 us and ~2.3 us to decode them) under the hash the stock method has just
stored it under.

Why it is correct: trie node storage is content-addressed. A hashed node's key is the keccak
of its RLP, so the node decoded for a hash is *the* node for that hash in every trie, every
database and every chain of the process; a hit never needs to know which database it came
from. The cache only answers hashed nodes (32-byte keys other than the blank root); blank
and embedded nodes go to the stock method. A miss reads ``self.db[node_hash]`` as the stock
method does, so a node absent from the database still raises there. (A hit can answer for a
node its database has since dropped, where the stock trie would raise ``MissingTrieNode``;
it answers with that node's true content, and nothing on the embedded chain relies on the
error.) ``HexaryTrie`` edits branch nodes in place (``node[i] = ...`` when it sets or
deletes under a branch, including embedded nodes inside a branch), so a cached node is
never handed out: each hit returns a copy. Whether a node holds embedded (nested) nodes is
found once, when it is stored: a flat node is kept as a list and copied with
``list.copy()``; a nested one is kept as nested tuples and rebuilt as nested lists. A node
put at write time is that same node: the stock method hashed exactly its RLP, the copy is
taken before the trie edits its lists again, and only a node made of ``bytes`` and lists of
them is kept, since that is what decoding its RLP gives back (RLP encodes a tuple, a
``bytearray`` or a ``bytes`` subclass as it would the equal bytes and lists; such a node
is left to a later miss).

Measured on 24 intervals of ``scenarios/bench-200.toml`` with the sun moved to the first six
hours (3,803 trades and settlements; 208k ``get_node`` calls), at the default cap: caching
only what lookups decode, 74.3 % of the hashed lookups hit and the time spent in
``get_node`` falls from 4.7 s to 2.1-2.5 s; caching written nodes as well, 99.95 % hit (93
misses in 201k lookups) and ``get_node`` takes 0.7 s, while the ~54k copies put at write
time take ~0.2 s. Reuse is close in time (within a transaction or the next ones): 98.9 %
still hit with 4,096 entries.

Memory: a decoded branch full of hashes costs ~1.1 KB with its dict slot, a leaf ~0.25 KB
(plus 65 bytes for a key the cache alone keeps). A node copied at write time costs less: its
hashes and values are the very ``bytes`` objects the trie and its database hold. Peak RSS
of the run above: 173 MB without the cache, 184 MB caching what lookups decode, 174 MB
caching written nodes as well. So :data:`DEFAULT_MAX_ENTRIES` (16,384) holds at most
~19 MB, in practice far less.

The cache keeps two generations of at most half the cap each: a node is stored in the young
one; when it fills up it becomes the old one and the previous old one is dropped; a hit in
the old generation copies the node back into the young one, as does writing it again. So
nodes in use survive a turnover, and the entry count never exceeds the cap. Nearly every
node written is read back: in the run above 52.0k nodes were put, and caching only what
lookups decode missed 51.7k times, each time on a node written earlier in the run.

Threads: ``serve`` may use the embedded chain from more than one thread. A cached node is
never mutated after it is stored, and each dict read, write and step of a generation swap
is a single operation under the GIL, so a reader sees either a correct node or a miss (at
worst a miss it would not have had: a swap caught half way shows one generation twice).
The same holds for a node put by a writer. The counters are plain ints for inspection; a
concurrent increment may be lost, which only makes them approximate.
"""

from __future__ import annotations

from typing import Any

import eth.db.account
import eth.db.storage
from trie.constants import BLANK_NODE_HASH
from trie.hexary import HexaryTrie
from trie.utils.nodes import decode_node

DEFAULT_MAX_ENTRIES = 16_384
"""Entries kept at most (see the module docstring for the memory and hit-rate figures)."""

_PATCHED_MODULES = (eth.db.storage, eth.db.account)
"""The modules whose ``HexaryTrie`` py-evm's state builds its storage and account tries with."""


_ONLY_BYTES = frozenset((bytes,))


def _freeze_checked(node: list[Any]) -> tuple[Any, ...] | None:
    """``node`` with every list (at any depth) turned into a tuple, or None when anything in
    it (at any depth) is neither ``bytes`` nor a ``list``."""
    frozen: list[Any] = []
    for item in node:
        if type(item) is bytes:
            frozen.append(item)
        elif type(item) is list:
            inner = _freeze_checked(item)
            if inner is None:
                return None
            frozen.append(inner)
        else:
            return None
    return tuple(frozen)


def _storable(node: Any) -> list[Any] | tuple[Any, ...] | None:
    """What the cache keeps of ``node``: a list copy of a flat node of ``bytes``, nested
    tuples of one with embedded nodes, None for anything that decoding would not give back
    (not a list; a tuple, ``bytearray`` or ``bytes`` subclass inside)."""
    if type(node) is not list:
        return None
    if _ONLY_BYTES.issuperset(map(type, node)):
        return node.copy()
    return _freeze_checked(node)


def _thaw(node: tuple[Any, ...]) -> list[Any]:
    """A fresh nested-list copy of a node stored as nested tuples."""
    return [_thaw(item) if type(item) is tuple else item for item in node]


class DecodedNodeCache:
    """Decoded hashed trie nodes by node hash, in two generations of ``max_entries // 2``.

    A flat node (only hashes and values as children) is kept as a ``list`` and returned as
    ``list.copy()``; a node with embedded nodes is kept frozen as nested tuples and returned
    as fresh nested lists. Stored objects are never mutated and never handed out.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 2:
            raise ValueError("a node cache needs room for at least 2 entries")
        self.max_entries = max_entries
        self.hits = 0
        """Lookups answered from the cache."""
        self.misses = 0
        """Lookups that read and decoded the node from the database."""
        self.written = 0
        """Nodes stored by :meth:`put` as a trie wrote them (not counting those it found in the
        young generation already)."""
        self._generation_size = max_entries // 2
        self._young: dict[bytes, list[Any] | tuple[Any, ...]] = {}
        self._old: dict[bytes, list[Any] | tuple[Any, ...]] = {}

    def __len__(self) -> int:
        """Entries held (a node in both generations counts twice, as it takes two slots)."""
        return len(self._young) + len(self._old)

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        self._young = {}
        self._old = {}

    def get(self, db: Any, node_hash: bytes) -> Any:
        """The decoded node stored under the 32-byte ``node_hash`` in ``db``, as a fresh
        object; from the cache when it holds it, else ``decode_node(db[node_hash])``."""
        stored = self._young.get(node_hash)
        if stored is None:
            stored = self._old.get(node_hash)
            if stored is None:
                return self._load(db, node_hash)
            self._store(node_hash, stored)
        self.hits += 1
        return stored.copy() if type(stored) is list else _thaw(stored)  # type: ignore[arg-type]

    def _load(self, db: Any, node_hash: bytes) -> Any:
        node = decode_node(db[node_hash])
        self.misses += 1
        stored = _storable(node)
        if stored is not None:
            self._store(node_hash, stored)
        return node

    def put(self, node_hash: bytes, node: Any) -> None:
        """Keep a copy of ``node``, which a trie has just stored under ``node_hash``, its
        keccak(rlp(node)), so that the next reader of that hash need not decode it.

        The copy is taken now, as the trie goes on editing its lists. Only a node made of
        ``bytes`` and lists of them is kept: those are what decoding gives back, so the
        copy equals ``decode_node(db[node_hash])`` exactly; anything else (a tuple, a
        ``bytearray``, a ``bytes`` subclass, which RLP encodes all the same) is left to a
        later miss. A node already in the young generation is left as it is.
        """
        if node_hash in self._young:
            return
        stored = self._old.get(node_hash)
        if stored is None:
            stored = _storable(node)
            if stored is None:
                return
        self.written += 1
        self._store(node_hash, stored)

    def _store(self, node_hash: bytes, stored: list[Any] | tuple[Any, ...]) -> None:
        if len(self._young) >= self._generation_size:
            self._old = self._young
            self._young = {}
        self._young[node_hash] = stored


NODE_CACHE = DecodedNodeCache()
"""The process-wide cache :class:`CachingHexaryTrie` reads through (empty until used)."""


class CachingHexaryTrie(HexaryTrie):
    """``trie.HexaryTrie`` whose hashed nodes come from :data:`NODE_CACHE`, and go into it
    as it writes them."""

    __slots__ = ()

    def get_node(self, node_hash: Any) -> Any:
        """The decoded node for ``node_hash``: hashed nodes through the cache (a fresh
        copy each time); the blank root and embedded nodes as the stock trie gives them."""
        if len(node_hash) == 32 and node_hash != BLANK_NODE_HASH:
            return NODE_CACHE.get(self.db, node_hash)
        return super().get_node(node_hash)  # type: ignore[no-untyped-call]

    def _persist_node(self, node: Any) -> Any:
        """Store ``node`` as the stock trie does, and keep a copy of it in the cache when it
        was stored under its hash (the stock method returns that hash; it returns an
        embedded node itself, and ``b""`` for the blank node)."""
        key = super()._persist_node(node)  # type: ignore[no-untyped-call]
        if type(key) is bytes and len(key) == 32:
            NODE_CACHE.put(key, node)
        return key

    def _set_raw_node(self, raw_node: Any) -> Any:
        """Store a root (or proof) node as the stock trie does, always under its hash, and
        keep a copy of it in the cache."""
        node_hash = super()._set_raw_node(raw_node)  # type: ignore[no-untyped-call]
        if node_hash != BLANK_NODE_HASH:
            NODE_CACHE.put(node_hash, raw_node)
        return node_hash


def install() -> bool:
    """Make py-evm's state build its storage and account tries as :class:`CachingHexaryTrie`;
    True if it does (again, when already installed).

    Does nothing and returns False when the installed trie or py-evm does not look like the
    versions this was written against (trie 4, py-evm 0.12): no ``HexaryTrie.get_node``, or
    a state module without the stock ``HexaryTrie`` (or one already replaced by something
    else). The chain then works as before, only slower.
    """
    stock = HexaryTrie
    if not callable(getattr(stock, "get_node", None)):
        return False
    if any(
        getattr(module, "HexaryTrie", None) not in (stock, CachingHexaryTrie)
        for module in _PATCHED_MODULES
    ):
        return False
    for module in _PATCHED_MODULES:
        module.HexaryTrie = CachingHexaryTrie  # type: ignore[attr-defined]
    return True


__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "NODE_CACHE",
    "CachingHexaryTrie",
    "DecodedNodeCache",
    "install",
]
