"""``wattledger clear --grid``: the README's example, the grid JSON, errors naming the node."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from grid_strategies import GridBook, grid_books
from hypothesis import given, settings

from deploy.cli import main
from deploy.cli_clear import grid_json_chunks
from market.grid_clearing import clear_grid

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["clear", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_readme_grid_example_prints_what_the_readme_says(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^\.venv/bin/wattledger (clear .*--grid .*)$", readme, re.M)
    assert command is not None
    monkeypatch.chdir(ROOT)
    code, out, err = run(shlex.split(command.group(1))[1:], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["price"] == 20
    assert data["node_prices"] == {"feeder-a": 3, "substation": 20}
    assert data["flows"] == {"feeder-a": 6}
    assert [
        (t["buy"], t["sell"], t["quantity_wh"], t["price"], t["sell_price"]) for t in data["trades"]
    ] == [("h", "pv", 3, 3, 3), ("dc", "pv", 6, 20, 3)]
    assert data["grid"]["fee_revenue"] == 12 and data["grid"]["congestion_rent"] == 90
    for shown in ('"price": 20', '"flows": {"feeder-a": 6}', '"congestion_rent": 90'):
        assert shown in readme


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    grid = tmp_path / "grid.json"
    grid.write_text((ROOT / "docs/examples/feeder-grid.json").read_text())
    orders = tmp_path / "orders.csv"
    orders.write_text((ROOT / "docs/examples/feeder-orders.csv").read_text())
    return orders, grid


def test_unknown_node_exits_2_naming_row_line_and_node(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    orders, grid = files
    orders.write_text(orders.read_text() + "x,buy,1,5,9,feeder-b\n")
    code, out, err = run([str(orders), "--grid", str(grid)], capsys)
    assert code == 2 and out == ""
    assert "row 5 (line 6), field 'node': 'feeder-b' is not a node of the grid" in err
    assert "[order.unknown_node]" in err


def test_bad_grid_document_exits_2_with_its_code(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    orders, grid = files
    grid.write_text(grid.read_text().replace('"fee_per_wh": 2', '"fee_per_wh": -2'))
    code, out, err = run([str(orders), "--grid", str(grid)], capsys)
    assert code == 2 and out == ""
    assert "--grid:" in err and "node 'feeder-a', field 'fee_per_wh'" in err
    assert "[grid.bad_fee]" in err


def test_node_column_without_grid_means_one_node_named_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id,side,quantity_wh,price,node\nb,buy,5,10,root\na,sell,5,8,\n")
    code, out, _ = run([str(path)], capsys)
    assert code == 0
    assert json.loads(out) == {
        "price": 9,
        "volume_wh": 5,
        "trades": [{"buy": "b", "sell": "a", "quantity_wh": 5, "price": 9}],
        "fills": {"a": 5, "b": 5},
    }
    path.write_text("id,side,quantity_wh,price,node\nb,buy,5,10,feeder\n")
    code, out, err = run([str(path)], capsys)
    assert code == 2 and "'feeder' is not a node of the grid" in err


def test_output_file_summary_names_the_grid(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders, grid = files
    target = tmp_path / "result.json"
    code, out, err = run([str(orders), "--grid", str(grid), "--output", str(target)], capsys)
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["flows"] == {"feeder-a": 6}
    assert "on 2 grid nodes" in err and str(target) in err


@settings(max_examples=100, deadline=None)
@given(case=grid_books())
def test_streamed_grid_json_parses_to_the_result_json_dict(case: GridBook) -> None:
    for mechanism in ("uniform", "pay-as-bid"):
        result = clear_grid(case.orders, case.grid, case.nodes, mechanism)
        parsed = json.loads("".join(grid_json_chunks(result)))
        assert parsed == result.to_json_dict()
        assert list(parsed["node_prices"]) == list(result.to_json_dict()["node_prices"])
