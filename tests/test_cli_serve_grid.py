"""``wattledger serve``'s grid flags: what they build, and what they refuse."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from deploy.cli import build_parser
from deploy.cli_serve import grid_setup
from ledger.errors import InputError

DSO = Account.from_key((77).to_bytes(32, "big"))
GRID = {
    "version": 1,
    "interval": 0,
    "nodes": [
        {
            "id": "sub",
            "parent": None,
            "export_cap_wh": None,
            "import_cap_wh": None,
            "fee_per_wh": 0,
        },
        {"id": "f", "parent": "sub", "export_cap_wh": 60, "import_cap_wh": None, "fee_per_wh": 1},
    ],
}


class _Chain:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def env_key(self, name: str) -> str | None:
        return self.env.get(name)


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_no_grid_flag_is_a_market_without_a_grid() -> None:
    assert grid_setup(_args(), _Chain({}), ()) is None  # type: ignore[arg-type]


def test_grid_with_the_dev_key_builds_a_default_document_and_nodes(tmp_path: Path) -> None:
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID, indent=2))  # a hand-written layout is fine here
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps({"0x" + "11" * 20: "f"}))
    chain: Any = _Chain({"WATTLEDGER_GRID_OPERATOR_KEY": DSO.key.hex()})
    setup = grid_setup(_args("--grid", str(grid), "--grid-nodes", str(nodes)), chain, ())
    assert setup is not None and setup.template is not None
    assert [n.id for n in setup.template.nodes] == ["f", "sub"]
    assert setup.key == bytes(DSO.key)
    assert "key" not in repr(setup) or DSO.key.hex() not in repr(setup)
    assert setup.nodes == {"0x" + "11" * 20: "f"}


def test_grid_without_a_key_is_refused(tmp_path: Path) -> None:
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID))
    chain: Any = _Chain({})
    with pytest.raises(InputError, match="needs the grid operator"):
        grid_setup(_args("--grid", str(grid)), chain, ())
    with pytest.raises(InputError, match="needs the grid operator's key"):
        grid_setup(_args("--grid", str(grid), "--grid-operator", DSO.address), chain, ())


def test_a_grid_operator_address_alone_takes_published_documents_only() -> None:
    setup = grid_setup(_args("--grid-operator", DSO.address), _Chain({}), ())  # type: ignore[arg-type]
    assert setup is not None and setup.template is None and setup.address == DSO.address


def test_a_bad_nodes_file_is_refused(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_text("[1, 2]")
    with pytest.raises(InputError, match="address -> node id"):
        grid_setup(
            _args("--grid-operator", DSO.address, "--grid-nodes", str(nodes)),
            _Chain({}),  # type: ignore[arg-type]
            (),
        )
