"""The grid document (docs/grid.md §1): every refusal has its stable code, the canonical bytes
are unique, and gridRoot is their keccak256."""

from __future__ import annotations

import json
from typing import Any

import pytest
from grid_strategies import grids
from hypothesis import given, settings

from ledger.hashing import keccak
from market.grid import (
    MAX_GRID_INT,
    MAX_GRID_NODES,
    Grid,
    GridError,
    check_grid,
    parse_grid,
    single_node_grid,
)


def node(
    node_id: str,
    parent: Any,
    export_cap: Any = None,
    import_cap: Any = None,
    fee: Any = 0,
) -> dict[str, Any]:
    return {
        "id": node_id,
        "parent": parent,
        "export_cap_wh": export_cap,
        "import_cap_wh": import_cap,
        "fee_per_wh": fee,
    }


def document(*nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": 1, "interval": 5, "nodes": list(nodes), **top}


GOOD = document(node("root", None), node("a", "root", 10, 0, 3), node("b", "a", None, 7, 1))


def canonical(doc: dict[str, Any]) -> bytes:
    """RFC 8785 for these documents (integers below 2**53): sorted keys, no whitespace."""
    ordered = {**doc, "nodes": sorted(doc["nodes"], key=lambda n: n["id"])}
    return json.dumps(ordered, separators=(",", ":"), sort_keys=True).encode()


def test_canonical_bytes_and_grid_root_of_a_valid_document() -> None:
    data = canonical(GOOD)
    grid = parse_grid(data, interval=5)
    assert grid.canonical_bytes == data
    assert grid.grid_root == keccak(data)
    assert grid.grid_root_hex == "0x" + keccak(data).hex()
    assert grid.root == "root"
    assert [n.id for n in grid.nodes] == ["a", "b", "root"]
    assert grid.largest_fee_path == 4


def test_worked_example_grid_root_is_pinned() -> None:
    """A test vector for other implementations (the audit, another language)."""
    data = (
        b'{"interval":1,"nodes":[{"export_cap_wh":6,"fee_per_wh":2,"id":"f",'
        b'"import_cap_wh":null,"parent":"sub"},{"export_cap_wh":null,"fee_per_wh":0,'
        b'"id":"sub","import_cap_wh":null,"parent":null}],"version":1}'
    )
    grid = parse_grid(data, interval=1)
    assert grid.grid_root_hex == "0x" + keccak(data).hex()
    assert grid.grid_root_hex == (
        "0x292ce42cf9e025751a09b19abd00f73ee7a379a306be3b0c7d14765d37381afb"
    )


@settings(max_examples=100, deadline=None)
@given(grid=grids(max_nodes=10))
def test_canonical_bytes_round_trip_and_match_rfc_8785_form(grid: Grid) -> None:
    again = parse_grid(grid.canonical_bytes)
    assert again.canonical_bytes == grid.canonical_bytes
    assert grid.canonical_bytes == canonical(json.loads(grid.canonical_bytes))
    assert set(grid.post_order) == set(range(len(grid)))
    assert grid.post_order[-1] == grid.root_index == grid.pre_order[0]
    seen: set[int] = set()
    for v in grid.post_order:  # children before parents
        assert all(c in seen for c, p in enumerate(grid.parent_index) if p == v)
        seen.add(v)
        assert grid.children[v] == tuple(c for c, p in enumerate(grid.parent_index) if p == v)


@settings(max_examples=50, deadline=None)
@given(grid=grids(max_nodes=10))
def test_the_same_nodes_for_another_interval_are_what_check_grid_gives(grid: Grid) -> None:
    for interval in (0, 7, MAX_GRID_INT):
        moved = grid.for_interval(interval)
        document = {**json.loads(grid.canonical_bytes), "interval": interval}
        checked = check_grid(document, interval=interval)
        assert moved.canonical_bytes == checked.canonical_bytes == canonical(document)
        assert moved.grid_root == checked.grid_root == keccak(checked.canonical_bytes)
        assert moved.interval == interval
        for name in ("nodes", "root_index", "parent_index", "post_order", "pre_order", "children"):
            assert getattr(moved, name) == getattr(checked, name)
        assert dict(moved.index) == dict(checked.index)
        assert moved.largest_fee_path == checked.largest_fee_path
        # Shared, not derived again, even when ``grid`` had not derived them before.
        assert moved.children is grid.children and moved.pre_order is grid.pre_order
    for bad in (-1, MAX_GRID_INT + 1, True):
        with pytest.raises(GridError) as refused:
            grid.for_interval(bad)
        assert refused.value.code == "grid.bad_field"


@pytest.mark.parametrize(
    "layout",
    [
        lambda d: json.dumps(d, indent=2).encode(),
        lambda d: json.dumps({**d, "nodes": d["nodes"][::-1]}, separators=(",", ":")).encode(),
        lambda d: canonical(d).replace(b'"fee_per_wh":3', b'"fee_per_wh":3.0'),
    ],
    ids=["whitespace", "nodes-not-sorted", "float-fee"],
)
def test_non_canonical_bytes_are_refused_when_canonical_is_required(layout: Any) -> None:
    data = layout(GOOD)
    with pytest.raises(GridError) as err:
        parse_grid(data)
    assert err.value.code in ("grid.not_canonical", "grid.bad_fee")


def test_hand_written_layout_is_accepted_on_request_and_hashes_the_canonical_form() -> None:
    grid = parse_grid(json.dumps(GOOD, indent=2).encode(), require_canonical=False)
    assert grid.canonical_bytes == canonical(GOOD)


def _bad(code: str, doc: Any) -> Any:
    return pytest.param(doc, code, id=code + ":" + str(len(str(doc))))


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        _bad("grid.version", document(node("r", None), version=2)),
        _bad("grid.version", document(node("r", None), version=True)),
        _bad("grid.interval_mismatch", document(node("r", None), interval=6)),
        _bad("grid.bad_field", document(node("r", None), extra=1)),
        _bad("grid.bad_field", {"version": 1, "nodes": [node("r", None)]}),
        _bad("grid.bad_field", document({**node("r", None), "name": "x"})),
        _bad(
            "grid.bad_field",
            document({k: v for k, v in node("r", None).items() if k != "fee_per_wh"}),
        ),
        _bad("grid.bad_field", [1]),
        _bad("grid.empty", document()),
        _bad("grid.bad_node_id", document(node("r", None), node("a b", "r"))),
        _bad("grid.bad_node_id", document(node("x" * 129, None))),
        _bad("grid.duplicate_node", document(node("r", None), node("a", "r"), node("a", "r"))),
        _bad("grid.root_count", document(node("r", None), node("s", None))),
        _bad("grid.root_count", document(node("a", "b"), node("b", "a"))),
        _bad("grid.root_has_edge", document(node("r", None, export_cap=5))),
        _bad("grid.root_has_edge", document(node("r", None, fee=1))),
        _bad("grid.unknown_parent", document(node("r", None), node("a", "zz"))),
        _bad("grid.unknown_parent", document(node("r", None), node("a", 3))),
        _bad("grid.cycle", document(node("r", None), node("a", "b"), node("b", "a"))),
        _bad("grid.cycle", document(node("r", None), node("a", "a"))),
        _bad("grid.bad_capacity", document(node("r", None), node("a", "r", export_cap=-1))),
        _bad("grid.bad_capacity", document(node("r", None), node("a", "r", import_cap=True))),
        _bad("grid.bad_capacity", document(node("r", None), node("a", "r", export_cap="5"))),
        _bad("grid.bad_capacity", document(node("r", None), node("a", "r", 2**63))),
        _bad("grid.bad_fee", document(node("r", None), node("a", "r", fee=None))),
        _bad("grid.bad_fee", document(node("r", None), node("a", "r", fee=-1))),
        _bad("grid.bad_fee", document(node("r", None), node("a", "r", fee=False))),
        _bad(
            "grid.fee_path_too_large",
            document(node("r", None), node("a", "r", fee=MAX_GRID_INT), node("b", "a", fee=1)),
        ),
    ],
)
def test_each_broken_rule_has_its_stable_code(doc: Any, code: str) -> None:
    with pytest.raises(GridError) as err:
        check_grid(doc, interval=5)
    assert err.value.code == code
    assert f"[{code}]" in str(err.value)


def test_node_count_bounds() -> None:
    many = [node("r", None)] + [node(f"n{i}", "r") for i in range(MAX_GRID_NODES)]
    with pytest.raises(GridError) as err:
        check_grid(document(*many))
    assert err.value.code == "grid.too_many_nodes"
    path = [node("n0", None)] + [node(f"n{i}", f"n{i - 1}", fee=1) for i in range(1, 2000)]
    grid = check_grid(document(*path))  # a long path needs no recursion
    assert grid.largest_fee_path == 1999


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff", "grid.bad_json"),
        (b"{", "grid.bad_json"),
        (b'{"version":1,"version":1,"interval":5,"nodes":[]}', "grid.bad_field"),
        (canonical(GOOD).replace(b'"fee_per_wh":3', b'"fee_per_wh":NaN'), "grid.bad_json"),
        (canonical(GOOD).replace(b'"fee_per_wh":3', b'"fee_per_wh":3e0'), "grid.bad_fee"),
    ],
    ids=["not-utf8", "truncated", "duplicate-key", "nan", "exponent"],
)
def test_bytes_that_are_not_plain_json_are_refused(data: bytes, code: str) -> None:
    with pytest.raises(GridError) as err:
        parse_grid(data, require_canonical=False)
    assert err.value.code == code


def test_single_node_grid_is_the_root_alone() -> None:
    grid = single_node_grid()
    assert grid.root == "root" and len(grid) == 1 and grid.largest_fee_path == 0
