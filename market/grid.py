"""The grid document: a radial network of nodes with edge limits and fees (docs/grid.md §1).

One document per interval describes a tree. Every node but the **root** (the substation, the
point of coupling) has an edge to its parent with an export cap (most Wh out of the node's
subtree), an import cap (most Wh into it), ``None`` meaning unbounded, and a fee in base units
per Wh of net flow across the edge, either direction. The document is pure data: this module
parses and checks it, writes its canonical bytes and hashes them to ``gridRoot``; the clearing
on it lives in :mod:`market.grid_clearing`.

Canonical bytes (§1.1)
    UTF-8 JSON without whitespace, keys ascending, nodes ascending by id, integers in plain
    decimal, ``null`` as ``null``; ``gridRoot = keccak256(canonical bytes)``.

Errors (§1.3)
    Every refusal is a :class:`GridError` with one of the stable codes of :data:`GRID_CODES`;
    nothing is dropped or repaired silently. Checks run in a fixed order (shape, version,
    interval, count, each node in id order, root, parents, cycles, fee paths, canonical form),
    so one bad document always gets the same code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Final

from ledger.errors import InputError
from ledger.grid_nodes import DEFAULT_NODE
from ledger.hashing import keccak
from market.orders import ID_PATTERN

GRID_VERSION: Final = 1
"""The only document version this code reads."""
MAX_GRID_NODES: Final = 65_536
"""Most nodes in one grid document."""
MAX_GRID_INT: Final = 2**63 - 1
"""Largest cap, fee or interval, and largest fee sum on a path to the root (``F``)."""
DEFAULT_ROOT: Final = DEFAULT_NODE
"""The id of the one node of the grid used when none is given (a book without ``--grid``)."""

GRID_CODES: Final = (
    "grid.bad_json",
    "grid.version",
    "grid.interval_mismatch",
    "grid.bad_field",
    "grid.not_canonical",
    "grid.empty",
    "grid.too_many_nodes",
    "grid.bad_node_id",
    "grid.duplicate_node",
    "grid.root_count",
    "grid.root_has_edge",
    "grid.unknown_parent",
    "grid.cycle",
    "grid.bad_capacity",
    "grid.bad_fee",
    "grid.fee_path_too_large",
    "order.unknown_node",
)
"""Every code a :class:`GridError` can carry (docs/grid.md §1.3)."""

_TOP_KEYS: Final = frozenset({"version", "interval", "nodes"})
_NODE_KEYS: Final = frozenset({"id", "parent", "export_cap_wh", "import_cap_wh", "fee_per_wh"})


class GridError(InputError):
    """Raised when a grid document is refused, or an order names a node the grid lacks.

    ``code`` is one of :data:`GRID_CODES` (set per instance); the message names the node,
    field or order row.
    """

    code = "grid.bad_field"

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        if code not in GRID_CODES:  # pragma: no cover - a programming error
            raise ValueError(f"unknown grid error code {code!r}")
        super().__init__(f"{message} [{code}]", hint=hint)
        self.code = code


@dataclass(frozen=True, slots=True)
class GridNode:
    """One node and the edge to its parent (``parent`` None for the root, which has no edge).

    ``export_cap_wh``/``import_cap_wh``: most Wh out of/into the subtree across the edge,
    None = unbounded. ``fee_per_wh``: base units per Wh of net flow across the edge.
    """

    id: str
    parent: str | None
    export_cap_wh: int | None
    import_cap_wh: int | None
    fee_per_wh: int


@dataclass(frozen=True, eq=False)
class Grid:
    """A checked grid document: build it with :func:`parse_grid` or :func:`check_grid`.

    ``nodes`` are ascending by id; node ``i`` is ``nodes[i]``, and the tree arrays
    (:attr:`parent_index`, :attr:`post_order`, ...) use these indices.
    """

    interval: int
    nodes: tuple[GridNode, ...]
    index: Mapping[str, int] = field(repr=False)
    root_index: int
    parent_index: tuple[int, ...] = field(repr=False)
    """Index of each node's parent; ``-1`` for the root."""
    post_order: tuple[int, ...] = field(repr=False)
    """Children before their parent, siblings ascending by id (docs/grid.md §3.2)."""

    @property
    def root(self) -> str:
        """The id of the root node."""
        return self.nodes[self.root_index].id

    @cached_property
    def pre_order(self) -> tuple[int, ...]:
        """Parents before their children, siblings ascending by id (docs/grid.md §3.3)."""
        return tuple(_pre_order(self.parent_index, self.root_index))

    @cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        """Each node's children, ascending by id (empty for a leaf)."""
        return tuple(tuple(kids) for kids in _children(self.parent_index))

    @cached_property
    def edge_terms(self) -> tuple[tuple[int | None, int | None, int], ...]:
        """Each node's ``(import_cap_wh, export_cap_wh, fee_per_wh)``, by node index: what
        the clearing reads of every edge, once per grid rather than per interval."""
        return tuple((n.import_cap_wh, n.export_cap_wh, n.fee_per_wh) for n in self.nodes)

    @cached_property
    def node_ids(self) -> tuple[str, ...]:
        """Each node's id, by node index."""
        return tuple(n.id for n in self.nodes)

    @cached_property
    def _nodes_json(self) -> bytes:
        """The canonical bytes of the ``nodes`` array (the part no interval changes)."""
        nodes = [
            {
                "export_cap_wh": n.export_cap_wh,
                "fee_per_wh": n.fee_per_wh,
                "id": n.id,
                "import_cap_wh": n.import_cap_wh,
                "parent": n.parent,
            }
            for n in self.nodes
        ]
        return json.dumps(nodes, separators=(",", ":"), sort_keys=True).encode("ascii")

    @cached_property
    def canonical_bytes(self) -> bytes:
        """The document's canonical bytes (docs/grid.md §1.1): the keys ``interval``,
        ``nodes``, ``version`` in that (ascending) order, no whitespace."""
        return b'{"interval":%d,"nodes":%s,"version":%d}' % (
            self.interval,
            self._nodes_json,
            GRID_VERSION,
        )

    def for_interval(self, interval: int) -> Grid:
        """The same nodes as the document of ``interval``: what :func:`check_grid` gives for
        this document with its ``interval`` replaced, without checking the nodes again, and
        sharing what no interval changes (the tree's orders, ``F``, the nodes' bytes).

        A feeder whose network does not change publishes one such document per interval.
        """
        if not _is_int(interval) or not 0 <= interval <= MAX_GRID_INT:
            raise GridError(
                "grid.bad_field", f"interval {interval!r} is not an integer 0 .. {MAX_GRID_INT}"
            )
        other = Grid(
            interval=interval,
            nodes=self.nodes,
            index=self.index,
            root_index=self.root_index,
            parent_index=self.parent_index,
            post_order=self.post_order,
        )
        # Derived here once if not yet, so that every interval's copy shares them.
        shared = (
            "pre_order",
            "children",
            "largest_fee_path",
            "edge_terms",
            "node_ids",
            "_nodes_json",
        )
        other.__dict__.update({name: getattr(self, name) for name in shared})
        return other

    @cached_property
    def grid_root(self) -> bytes:
        """``keccak256(canonical bytes)``: what the chain and the audit compare."""
        return keccak(self.canonical_bytes)

    @property
    def grid_root_hex(self) -> str:
        """:attr:`grid_root` as ``0x`` and 64 lowercase hex digits."""
        return "0x" + self.grid_root.hex()

    @cached_property
    def largest_fee_path(self) -> int:
        """``F``: the largest sum of fees on a path from a node to the root."""
        return max(_fee_paths(self.nodes, self.parent_index, self.root_index))

    def __len__(self) -> int:
        return len(self.nodes)


def single_node_grid(node_id: str = DEFAULT_ROOT, interval: int = 0) -> Grid:
    """The grid of one node: clearing on it is exactly DESIGN §4 (docs/grid.md P7)."""
    return check_grid(
        {
            "version": GRID_VERSION,
            "interval": interval,
            "nodes": [
                {
                    "id": node_id,
                    "parent": None,
                    "export_cap_wh": None,
                    "import_cap_wh": None,
                    "fee_per_wh": 0,
                }
            ],
        }
    )


def parse_grid(
    data: bytes,
    *,
    interval: int | None = None,
    require_canonical: bool = True,
    source: str = "grid",
) -> Grid:
    """Parse and check a grid document from its bytes.

    ``interval``, when given, must equal the document's (``grid.interval_mismatch``).
    With ``require_canonical`` (what the market, the chain and the audit need, since
    ``gridRoot`` hashes the bytes as published) bytes that are valid but not canonical raise
    ``grid.not_canonical``; without it (hand-written files on the command line) any JSON
    layout and node order is accepted and :attr:`Grid.canonical_bytes` is what gets hashed.
    """
    try:
        text = data.decode("utf-8")
        document = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_float=_Float,
            parse_constant=_refuse_constant,
        )
    except UnicodeDecodeError as err:
        raise GridError("grid.bad_json", f"{source}: not UTF-8 text (byte {err.start})") from err
    except _DuplicateKey as err:
        raise GridError("grid.bad_field", f"{source}: key {err.args[0]!r} appears twice") from err
    except ValueError as err:
        raise GridError("grid.bad_json", f"{source}: not valid JSON: {err}") from err
    grid = check_grid(document, interval=interval, source=source)
    if require_canonical and data != grid.canonical_bytes:
        raise GridError(
            "grid.not_canonical",
            f"{source}: the bytes are not the document's canonical form (no whitespace, keys "
            "ascending, nodes ascending by id, plain integers)",
        )
    return grid


def check_grid(document: object, *, interval: int | None = None, source: str = "grid") -> Grid:
    """Check a grid document given as parsed JSON (dicts, lists, ints, strings, None).

    Nodes may come in any order; the :class:`Grid` holds them ascending by id. Raises
    :class:`GridError` with the code of the first rule broken (docs/grid.md §1.3).
    """
    if not isinstance(document, dict):
        raise GridError("grid.bad_field", f"{source}: expected a JSON object at the top")
    _check_keys(document, _TOP_KEYS, source)
    version = document["version"]
    if not _is_int(version) or version != GRID_VERSION:
        raise GridError(
            "grid.version", f"{source}, field 'version': {version!r} is not {GRID_VERSION}"
        )
    declared = document["interval"]
    if not _is_int(declared) or not 0 <= declared <= MAX_GRID_INT:
        raise GridError(
            "grid.bad_field",
            f"{source}, field 'interval': {declared!r} is not an integer 0 .. {MAX_GRID_INT}",
        )
    if interval is not None and declared != interval:
        raise GridError(
            "grid.interval_mismatch",
            f"{source}, field 'interval': the document is for interval {declared}, not {interval}",
        )
    raw_nodes = document["nodes"]
    if not isinstance(raw_nodes, list):
        raise GridError("grid.bad_field", f"{source}, field 'nodes': expected an array")
    if not raw_nodes:
        raise GridError("grid.empty", f"{source}, field 'nodes': a grid has at least one node")
    if len(raw_nodes) > MAX_GRID_NODES:
        raise GridError(
            "grid.too_many_nodes",
            f"{source}, field 'nodes': {len(raw_nodes)} nodes, at most {MAX_GRID_NODES}",
        )
    nodes = [_check_node(raw, position, source) for position, raw in enumerate(raw_nodes)]
    return _build(int(declared), nodes, source)


def _check_node(raw: object, position: int, source: str) -> GridNode:
    where = f"{source}, nodes[{position}]"
    if not isinstance(raw, dict):
        raise GridError("grid.bad_field", f"{where}: expected a JSON object")
    if "id" not in raw:
        raise GridError("grid.bad_field", f"{where}: missing 'id'")
    node_id = raw["id"]
    if not isinstance(node_id, str) or not ID_PATTERN.fullmatch(node_id):
        raise GridError(
            "grid.bad_node_id",
            f"{where}, field 'id': {node_id!r} is not a valid node id",
            hint="A node id is 1 to 128 characters from A-Z a-z 0-9 _ . : -",
        )
    where = f"{source}, node {node_id!r}"
    _check_keys(raw, _NODE_KEYS, where)
    parent = raw["parent"]
    if parent is not None and not isinstance(parent, str):
        raise GridError(
            "grid.unknown_parent", f"{where}, field 'parent': {parent!r} is not a node id"
        )
    caps = []
    for name in ("export_cap_wh", "import_cap_wh"):
        cap = raw[name]
        if cap is not None and (not _is_int(cap) or not 0 <= cap <= MAX_GRID_INT):
            raise GridError(
                "grid.bad_capacity",
                f"{where}, field {name!r}: {cap!r} is not null or an integer 0 .. {MAX_GRID_INT}",
            )
        caps.append(None if cap is None else int(cap))
    fee = raw["fee_per_wh"]
    if not _is_int(fee) or not 0 <= fee <= MAX_GRID_INT:
        raise GridError(
            "grid.bad_fee",
            f"{where}, field 'fee_per_wh': {fee!r} is not an integer 0 .. {MAX_GRID_INT}",
        )
    return GridNode(node_id, parent, caps[0], caps[1], int(fee))


def _build(interval: int, unordered: list[GridNode], source: str) -> Grid:
    nodes = sorted(unordered, key=lambda n: n.id)
    for before, after in pairwise(nodes):
        if before.id == after.id:
            raise GridError("grid.duplicate_node", f"{source}: node {after.id!r} appears twice")
    roots = [n.id for n in nodes if n.parent is None]
    if len(roots) != 1:
        raise GridError(
            "grid.root_count",
            f"{source}: {len(roots)} nodes have a null parent ({', '.join(roots[:5]) or 'none'}); "
            "exactly one, the root, must",
        )
    index = {n.id: i for i, n in enumerate(nodes)}
    root_index = index[roots[0]]
    root = nodes[root_index]
    if root.export_cap_wh is not None or root.import_cap_wh is not None or root.fee_per_wh:
        raise GridError(
            "grid.root_has_edge",
            f"{source}, node {root.id!r}: the root has no edge, so its caps are null and its fee 0",
        )
    parent_index = []
    for n in nodes:
        if n.parent is not None and n.parent not in index:
            raise GridError(
                "grid.unknown_parent", f"{source}, node {n.id!r}: parent {n.parent!r} is no node"
            )
        parent_index.append(-1 if n.parent is None else index[n.parent])
    reaches = _reaching_root(parent_index, root_index)
    if not all(reaches):
        stuck = nodes[reaches.index(False)].id
        raise GridError(
            "grid.cycle", f"{source}, node {stuck!r}: its parents never reach the root (a cycle)"
        )
    paths = _fee_paths(nodes, parent_index, root_index)
    worst = max(range(len(nodes)), key=paths.__getitem__)
    if paths[worst] > MAX_GRID_INT:
        raise GridError(
            "grid.fee_path_too_large",
            f"{source}, node {nodes[worst].id!r}: the fees on its path to the root sum to "
            f"{paths[worst]}, above {MAX_GRID_INT}",
        )
    parents = tuple(parent_index)
    return Grid(
        interval=interval,
        nodes=tuple(nodes),
        index=MappingProxyType(index),
        root_index=root_index,
        parent_index=parents,
        post_order=tuple(reversed(_pre_order(parents, root_index, reverse_siblings=True))),
    )


def _children(parent_index: Sequence[int]) -> list[list[int]]:
    """Children of each node, ascending by id (node indices are in id order)."""
    children: list[list[int]] = [[] for _ in parent_index]
    for child, parent in enumerate(parent_index):
        if parent >= 0:
            children[parent].append(child)
    return children


def _pre_order(
    parent_index: Sequence[int], root_index: int, *, reverse_siblings: bool = False
) -> list[int]:
    """Depth-first, parent first; siblings ascending by id (descending if reversed).

    Reversing a pre-order that visits siblings descending gives the post-order that visits
    them ascending, without recursion (a path of 65,536 nodes is a valid grid).
    """
    children = _children(parent_index)
    order: list[int] = []
    stack = [root_index]
    while stack:
        node = stack.pop()
        order.append(node)
        kids = children[node]
        stack.extend(kids if reverse_siblings else reversed(kids))
    return order


def _reaching_root(parent_index: Sequence[int], root_index: int) -> list[bool]:
    """Whether each node's chain of parents reaches the root."""
    reached = [False] * len(parent_index)
    for node in _pre_order(parent_index, root_index):
        reached[node] = True
    return reached


def _fee_paths(
    nodes: Sequence[GridNode], parent_index: Sequence[int], root_index: int
) -> list[int]:
    """Sum of the fees on each node's path to the root (exact Python ints)."""
    paths = [0] * len(nodes)
    for node in _pre_order(parent_index, root_index):
        if node != root_index:
            paths[node] = paths[parent_index[node]] + nodes[node].fee_per_wh
    return paths


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(obj: Mapping[str, Any], expected: frozenset[str], where: str) -> None:
    missing = sorted(expected - obj.keys())
    extra = sorted(obj.keys() - expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unknown {', '.join(map(repr, extra))}")
        raise GridError(
            "grid.bad_field",
            f"{where}: {'; '.join(parts)} (keys are {', '.join(sorted(expected))})",
        )


class _DuplicateKey(Exception):
    pass


class _Float(str):
    """A JSON number with a fraction or exponent: kept as its text, so no check mistakes it
    for an integer and nothing is rounded."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result
