"""The decoded-node cache behind py-evm's tries on the embedded chain (deploy/trie_cache.py).

* differential: the same random sets and deletes on a stock ``HexaryTrie`` and on a
  :class:`CachingHexaryTrie` (each over its own database, both sharing one small cache that
  turns over often, or one that never does) give the same root, the same database and the
  same reads after every step, including for keys never set, and through fresh tries opened
  at the root (as py-evm opens one per transaction);
* nodes enter the cache as the trie writes them: a fresh reader finds the new root there,
  and with room for every node no read ever decodes; the cache keeps a copy taken at write
  time, which later edits of the writer's lists (flat or nested) do not reach, and it keeps
  only nodes made of ``bytes`` and lists, which decoding gives back exactly;
* a node handed out is a copy: ``HexaryTrie`` edits branch nodes in place, and an edit of a
  returned node (flat, or nested with embedded nodes) never reaches the next reader;
* the cap: the cache never holds more entries than its cap, and answers right after a clear
  or a turnover;
* on a real embedded chain the market ends in the same contract storage with and without
  the cache, and the cache is used;
* :func:`install` replaces only the stock class, and refuses (changing nothing) otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import eth.db.account
import eth.db.storage
import pytest
import rlp
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_support import MarketEnv, trade
from trie.exceptions import MissingTrieNode
from trie.hexary import HexaryTrie

from chain import trie_cache
from chain.connection import Chain, connect
from chain.trie_cache import CachingHexaryTrie, DecodedNodeCache, install

# Few, short keys sharing prefixes, and short values: branches, extensions and leaves small
# enough to be embedded in their parent (nested nodes), next to hashed ones.
KEYS = [bytes([a]) for a in (0x00, 0x01, 0x10, 0x11, 0x12, 0xF0)] + [
    b"\x01\x00",
    b"\x01\x01",
    b"\x01\x00\x07",
    b"\x11\x11\x11\x11",
    bytes(32),
    b"\xff" * 32,
]
keys = st.sampled_from(KEYS)
values = st.binary(min_size=0, max_size=40)
operation = st.one_of(
    st.tuples(st.just("set"), keys, values), st.tuples(st.just("delete"), keys, st.just(b""))
)
ROOMY = 1 << 16
"""A cap no test here fills: the cache never turns over."""


@contextmanager
def fresh_cache(max_entries: int) -> Iterator[DecodedNodeCache]:
    """Let every caching trie read through a new cache of ``max_entries`` for a while."""
    saved = trie_cache.NODE_CACHE
    trie_cache.NODE_CACHE = DecodedNodeCache(max_entries)
    try:
        yield trie_cache.NODE_CACHE
    finally:
        trie_cache.NODE_CACHE = saved


def filled(cls: type[HexaryTrie], items: dict[bytes, bytes]) -> Any:
    built: Any = cls({})
    for key, value in items.items():
        built.set(key, value)
    return built


def read(t: HexaryTrie, key: bytes) -> tuple[str, object]:
    """``t.get(key)``, or the type of the error it raises. (trie 4.0.0 raises
    ``ValidationError`` reading a key that ends inside an embedded branch under an
    extension, e.g. ``b"\\x01"`` after setting ``b"\\x01\\x00"`` and ``b"\\x01\\x01"`` to one
    byte each; py-evm's keys are all 32 bytes long and never meet it. The caching trie must
    fail the same way.)"""
    try:
        return ("value", t.get(key))
    except Exception as error:
        return ("error", type(error))


@settings(max_examples=150)
@given(
    ops=st.lists(operation, min_size=1, max_size=30),
    prune=st.booleans(),
    max_entries=st.one_of(st.integers(2, 12), st.just(ROOMY)),
)
def test_caching_trie_equals_stock_trie_after_every_set_and_delete(
    ops: list[tuple[str, bytes, bytes]], prune: bool, max_entries: int
) -> None:
    stock: Any = HexaryTrie({}, prune=prune)
    with fresh_cache(max_entries) as cache:
        cached: Any = CachingHexaryTrie({}, prune=prune)
        ever_filled = False
        earlier: list[tuple[bytes, list[tuple[str, object]]]] = []
        for op, key, value in ops:
            for t in (stock, cached):
                if op == "set":
                    t.set(key, value)
                else:
                    t.delete(key)
            assert cached.root_hash == stock.root_hash
            assert cached.db == stock.db
            reader = CachingHexaryTrie(cached.db, root_hash=cached.root_hash)
            if stock.root_hash != HexaryTrie.BLANK_NODE_HASH:
                # The writer stored its new root in the cache: a fresh reader finds it there.
                hits, misses = cache.hits, cache.misses
                assert reader.get_node(reader.root_hash) == stock.get_node(stock.root_hash)
                assert (cache.hits, cache.misses) == (hits + 1, misses)
            for k in KEYS:
                assert read(cached, k) == read(stock, k)
                assert read(reader, k) == read(stock, k)
            assert len(cache) <= max_entries
            # Readers of earlier roots (py-evm keeps reading a state it has moved on from):
            # an edit of a node handed out must not have reached the cache. A pruning trie
            # deletes the nodes of its old roots, so only a non-pruning one has them.
            if not prune:
                for root, expected in earlier[-3:]:
                    old_reader = CachingHexaryTrie(cached.db, root_hash=root)
                    assert [read(old_reader, k) for k in KEYS] == expected
                earlier.append((stock.root_hash, [read(stock, k) for k in KEYS]))
            ever_filled |= stock.root_hash != HexaryTrie.BLANK_NODE_HASH
            if max_entries == ROOMY:
                # Every node of every trie here was written by the caching trie, so with
                # room for all of them no read (of the writer or of any reader) decodes.
                assert cache.misses == 0
        assert (cache.hits + cache.misses > 0) == ever_filled


def test_a_returned_node_is_a_copy_flat_or_nested() -> None:
    # Two 1-byte keys under one nibble: the root is an extension whose branch (with two
    # embedded leaves) is too short to be hashed, so it sits inside the root (nested).
    nested_trie = filled(CachingHexaryTrie, {b"\x01": b"a", b"\x02": b"b"})
    # Keys in different first nibbles, with values too long to embed: a flat root branch.
    flat_trie = filled(CachingHexaryTrie, {bytes([16 * i]): bytes(40) for i in range(16)})
    with fresh_cache(64) as cache:
        for t, nested in ((nested_trie, True), (flat_trie, False)):
            reference: Any = HexaryTrie(t.db)
            original = reference.get_node(t.root_hash)
            assert any(isinstance(item, list) for item in original) == nested
            assert t.get_node(t.root_hash) == original
            handed_out = t.get_node(t.root_hash)
            assert handed_out == original
            if nested:
                handed_out[1][1] = b"changed"
                handed_out[1].append(b"more")
            handed_out[0] = b"changed"
            handed_out[-1] = b"changed"
            assert t.get_node(t.root_hash) == original
            assert CachingHexaryTrie(t.db, root_hash=t.root_hash).get_node(t.root_hash) == (
                original
            )
        assert cache.hits >= 4


def test_setting_through_cached_nodes_leaves_other_readers_of_the_old_root_intact() -> None:
    items = {bytes([16 * i, 1]): bytes([i]) * 40 for i in range(16)}
    base = filled(HexaryTrie, items)
    with fresh_cache(64):
        old_root = base.root_hash
        # A reader warms the cache with the root branch; a writer then edits that branch.
        assert CachingHexaryTrie(base.db, root_hash=old_root).get(b"\x00\x01") == bytes(40)
        writer: Any = CachingHexaryTrie(base.db, root_hash=old_root)
        writer.set(b"\x00\x01", b"new")
        writer.delete(b"\x10\x01")
        reader = CachingHexaryTrie(base.db, root_hash=old_root)
        for key, value in items.items():
            assert reader.get(key) == value
        assert writer.get(b"\x00\x01") == b"new"
        assert writer.get(b"\x10\x01") == b""


def test_a_node_written_is_cached_as_a_copy_taken_at_write_time() -> None:
    embedded: Any = [b"\x3a", b"v"]  # a leaf too short to be hashed: it sits in its parent
    flat: Any = [b"\x20" + bytes(31), bytes(40)]  # a leaf stored under its hash
    # An extension stored under its hash, holding a branch that holds the embedded leaf.
    nested: Any = [b"\x10" + bytes(20), [b"", embedded.copy()] + [b""] * 15]
    small_root: Any = [b"\x20\x01", b"v"]  # shorter than a hash; a root is hashed all the same
    with fresh_cache(64) as cache:
        writer: Any = CachingHexaryTrie({})
        written = []
        for node in (flat, nested):
            node_hash = writer._persist_node(node)
            assert node_hash == keccak(rlp.encode(node))
            written.append((node_hash, rlp.decode(rlp.encode(node))))
        root_hash = writer._set_raw_node(small_root)
        assert root_hash == keccak(rlp.encode(small_root))
        written.append((root_hash, [b"\x20\x01", b"v"]))
        assert writer._persist_node(embedded) == embedded
        assert writer._persist_node(b"") == b""
        assert (cache.written, len(cache)) == (3, 3)
        # The writer goes on editing its lists in place, at every depth.
        flat[1] = b"changed"
        nested[1][1][1] = b"changed"
        nested[1][1].append(b"more")
        nested[1][0] = b"changed"
        small_root.append(b"more")
        stock: Any = HexaryTrie(writer.db)
        for node_hash, original in written:
            reader = CachingHexaryTrie(writer.db, root_hash=node_hash)
            assert reader.get_node(node_hash) == original
            assert stock.get_node(node_hash) == original
        assert (cache.hits, cache.misses) == (3, 0)


def test_a_node_holding_anything_but_bytes_and_lists_is_left_to_a_later_read() -> None:
    class Bytes(bytes):
        pass

    leaf = [b"\x20" + bytes(31), bytes(40)]
    unlike_decoded: list[Any] = [
        [leaf[0], bytearray(leaf[1])],
        [leaf[0], Bytes(leaf[1])],
        [b"\x10", [b"", (b"\x3a", b"v")] + [b""] * 15],
        (leaf[0], leaf[1]),
    ]
    with fresh_cache(64) as cache:
        for node in unlike_decoded:
            # RLP encodes each of them as it would the equal node of bytes and lists.
            db = {keccak(rlp.encode(node)): rlp.encode(node)}
            (node_hash,) = db
            cache.put(node_hash, node)
            assert (cache.written, len(cache)) == (0, 0)
            got = cache.get(db, node_hash)
            assert got == rlp.decode(db[node_hash])
            assert type(got) is list
            assert all(type(item) in (bytes, list) for item in got)
            cache.clear()
        assert (cache.hits, cache.misses) == (0, len(unlike_decoded))


def test_a_written_node_is_kept_once_and_put_back_in_the_young_generation() -> None:
    nodes = [[b"\x20" + bytes([i]) * 31, bytes(40)] for i in range(4)]
    hashes = [keccak(rlp.encode(node)) for node in nodes]
    cache = DecodedNodeCache(4)  # two generations of two
    cache.put(hashes[0], nodes[0])
    cache.put(hashes[0], nodes[0])
    assert (cache.written, len(cache)) == (1, 1)
    cache.put(hashes[1], nodes[1])
    cache.put(hashes[2], nodes[2])  # a turnover: nodes 0 and 1 are old now
    assert (cache.written, len(cache)) == (3, 3)
    cache.put(hashes[0], nodes[0])  # written again: back into the young generation
    cache.put(hashes[3], nodes[3])  # a turnover: node 1 (old, untouched) is dropped
    assert (cache.written, len(cache)) == (5, 3)
    db: dict[bytes, bytes] = {}
    with pytest.raises(KeyError):
        cache.get(db, hashes[1])
    for i in (0, 2, 3):
        assert cache.get(db, hashes[i]) == nodes[i]
    assert (cache.hits, cache.misses) == (3, 0)


@settings(max_examples=60)
@given(
    lookups=st.lists(st.tuples(st.booleans(), st.integers(0, 19)), min_size=1, max_size=120),
    max_entries=st.integers(2, 16),
)
def test_cache_never_exceeds_its_cap_and_answers_right(
    lookups: list[tuple[bool, int]], max_entries: int
) -> None:
    # Twenty hashed nodes: flat branches and leaves, and nodes holding embedded nodes.
    nodes: list[list[Any]] = []
    for i in range(20):
        if i % 3 == 0:
            nodes.append([bytes([i]) * 32 if j == i % 16 else b"" for j in range(16)] + [b""])
        elif i % 3 == 1:
            nodes.append([b"\x20" + bytes([i]), bytes([i]) * 40])
        else:
            nodes.append([b"\x10" + bytes([i]), [b"", [b"\x3a", b"v"]] + [b""] * 15])
    db = {keccak(rlp.encode(node)): rlp.encode(node) for node in nodes}
    hashes = list(db)
    cache = DecodedNodeCache(max_entries)
    gets = 0
    for n, (write, i) in enumerate(lookups, start=1):
        if write:
            # As a trie stores a node it has in hand (a fresh list, as decoded).
            cache.put(hashes[i], rlp.decode(db[hashes[i]]))
        else:
            got = cache.get(db, hashes[i])
            assert got == rlp.decode(db[hashes[i]])
            gets += 1
        assert len(cache) <= max_entries
        assert cache.hits + cache.misses == gets
        if n % 7 == 0:
            cache.clear()
            assert len(cache) == 0


def test_a_hit_is_counted_and_a_cleared_cache_reads_the_database_again() -> None:
    node = [b"\x20\x01", bytes(40)]
    db = {keccak(rlp.encode(node)): rlp.encode(node)}
    (node_hash,) = db
    cache = DecodedNodeCache(4)
    assert cache.get(db, node_hash) == node
    assert cache.get(db, node_hash) == node
    assert (cache.hits, cache.misses) == (1, 1)
    cache.clear()
    assert cache.get(db, node_hash) == node
    assert (cache.hits, cache.misses) == (1, 2)
    with pytest.raises(KeyError):
        cache.get(db, keccak(b"never stored"))


def test_a_missing_node_still_raises_as_in_the_stock_trie() -> None:
    root = keccak(b"no such node")
    classes: tuple[Any, ...] = (HexaryTrie, CachingHexaryTrie)
    with fresh_cache(8):
        for cls in classes:
            with pytest.raises(KeyError):
                cls({}, root_hash=root).get_node(root)
            with pytest.raises(MissingTrieNode):
                cls({}, root_hash=root).get(b"\x01")
            assert cls({}).get(b"\x01") == b""


def state_trie(module: ModuleType) -> object:
    """The trie class ``module`` (one of py-evm's state modules) builds its tries with."""
    return vars(module)["HexaryTrie"]


def market_storage_roots(chain: Chain, t: int) -> tuple[dict[str, bytes], list[Any]]:
    """Deploy the market, register and fund four participants, commit six trades at ``t``;
    the storage roots of the token and the market, and every participant's balance."""
    env = MarketEnv.build(chain, n_participants=4)
    ps = env.participants
    env.commit([trade(ps[i % 4], ps[(i + 1) % 4], 10 + i, n=i) for i in range(6)], t)
    state = chain._tester.backend.chain.get_vm().state
    contracts = {"token": env.ledger.token.address, "market": env.ledger.address}
    roots = {
        name: bytes(state._account_db._get_storage_root(bytes.fromhex(address[2:])))
        for name, address in contracts.items()
    }
    return roots, [env.ledger.balance_of(p) for p in ps]


def test_embedded_market_ends_in_the_same_storage_with_and_without_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stock = HexaryTrie
    install()
    # Far enough ahead that both runs can commit it, whatever the clock does meanwhile, and
    # within the contract's commit lead (MAX_COMMIT_LEAD_SECONDS, two days): interval numbers
    # count from each market's epoch, its deployment time (900-second intervals).
    t = 100
    with monkeypatch.context() as patch:
        patch.setattr(trie_cache, "install", lambda: False)
        for module in (eth.db.storage, eth.db.account):
            patch.setattr(module, "HexaryTrie", stock)
        hits_before = trie_cache.NODE_CACHE.hits
        written_before = trie_cache.NODE_CACHE.written
        without_cache = market_storage_roots(connect(), t)
        assert trie_cache.NODE_CACHE.hits == hits_before
        assert trie_cache.NODE_CACHE.written == written_before
    assert state_trie(eth.db.storage) is CachingHexaryTrie
    hits_before = trie_cache.NODE_CACHE.hits
    written_before = trie_cache.NODE_CACHE.written
    with_cache = market_storage_roots(connect(), t)
    assert trie_cache.NODE_CACHE.hits > hits_before
    assert trie_cache.NODE_CACHE.written > written_before
    assert with_cache == without_cache
    assert all(root != stock.BLANK_NODE_HASH for root in with_cache[0].values())


def test_install_replaces_the_stock_trie_in_pys_evm_state_and_is_idempotent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in (eth.db.storage, eth.db.account):
        monkeypatch.setattr(module, "HexaryTrie", HexaryTrie)
    assert install() is True
    assert state_trie(eth.db.storage) is CachingHexaryTrie
    assert state_trie(eth.db.account) is CachingHexaryTrie
    assert install() is True
    assert state_trie(eth.db.storage) is CachingHexaryTrie


def test_install_refuses_when_state_uses_another_trie_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class OtherTrie(HexaryTrie):
        __slots__ = ()

    monkeypatch.setattr(eth.db.storage, "HexaryTrie", OtherTrie)
    monkeypatch.setattr(eth.db.account, "HexaryTrie", HexaryTrie)
    assert install() is False
    assert state_trie(eth.db.storage) is OtherTrie
    assert state_trie(eth.db.account) is HexaryTrie


def test_install_refuses_when_the_trie_has_no_get_node(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (eth.db.storage, eth.db.account):
        monkeypatch.setattr(module, "HexaryTrie", HexaryTrie)
    monkeypatch.delattr(HexaryTrie, "get_node")
    assert install() is False
    assert state_trie(eth.db.storage) is HexaryTrie
    assert state_trie(eth.db.account) is HexaryTrie
