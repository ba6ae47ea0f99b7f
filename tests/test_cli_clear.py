"""``wattledger clear``: the documented CSV in, the documented JSON out, bad input exits 2."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from strategies import mechanisms, orders

from deploy.cli import main
from deploy.cli_clear import json_chunks
from market.clearing import clear
from market.orders import Order

ORDERS = """\
id,side,quantity_wh,price,seq
b1,buy,1000,300000000000000,1
b2,buy,500,250000000000000,2
s1,sell,800,200000000000000,3
s2,sell,900,260000000000000,4
"""


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS)
    return path


def run_clear(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["clear", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_clear_prints_documented_json(orders_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_clear([str(orders_csv)], capsys)
    assert code == 0, err
    # b1 takes s1 (800) and 200 of s2; b2 at 250 < s2 at 260 stops the walk.
    # L = max(260, 250) = 260, U = min(300, 260) = 260.
    assert json.loads(out) == {
        "price": 260_000_000_000_000,
        "volume_wh": 1000,
        "trades": [
            {"buy": "b1", "sell": "s1", "quantity_wh": 800, "price": 260_000_000_000_000},
            {"buy": "b1", "sell": "s2", "quantity_wh": 200, "price": 260_000_000_000_000},
        ],
        "fills": {"b1": 1000, "b2": 0, "s1": 800, "s2": 200},
    }


def test_pay_as_bid_prices_each_trade_at_its_bid(
    orders_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_clear([str(orders_csv), "--mechanism", "pay-as-bid"], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["price"] is None
    assert [t["price"] for t in data["trades"]] == [300_000_000_000_000] * 2


@pytest.mark.parametrize(
    ("k", "price"), [("0/1", 25), ("1/1", 28), ("1", 28), ("0", 25), ("2/3", 27)]
)
def test_k_flag_moves_price_between_L_and_U(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], k: str, price: int
) -> None:
    path = tmp_path / "k.csv"
    path.write_text(
        "id,side,quantity_wh,price\nb1,buy,10,30\nb2,buy,10,25\na1,sell,10,20\na2,sell,10,28\n"
    )
    code, out, _ = run_clear([str(path), "--k", k], capsys)
    assert code == 0
    assert json.loads(out)["price"] == price


@pytest.mark.parametrize("k", ["3/2", "1/0", "-1/2", "0.5", "a/b", ""])
def test_bad_k_exits_2_naming_the_flag(
    orders_csv: Path, capsys: pytest.CaptureFixture[str], k: str
) -> None:
    code, out, err = run_clear([str(orders_csv), f"--k={k}"], capsys)
    assert code == 2
    assert out == ""
    assert "wattledger: invalid input: --k" in err


def test_k_with_pay_as_bid_is_refused(orders_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_clear([str(orders_csv), "--mechanism", "pay-as-bid", "--k", "1/2"], capsys)
    assert code == 2
    assert "--k" in err


def test_output_file_is_written_and_summary_says_where(
    orders_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "result.json"
    code, out, err = run_clear([str(orders_csv), "--output", str(target)], capsys)
    assert code == 0
    assert out == ""
    assert json.loads(target.read_text())["volume_wh"] == 1000
    assert str(target) in err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("row", "where"),
    [
        ("x,buy,0,5,9", "row 5 (line 6), field 'quantity_wh'"),
        ("x,buy,-1,5,9", "row 5 (line 6), field 'quantity_wh'"),
        ("x,buy,5,-2,9", "row 5 (line 6), field 'price'"),
        ("x,buy,5,2.5,9", "row 5 (line 6), field 'price'"),
        ("b1,buy,5,2,9", "row 5 (line 6), field 'id': duplicate id 'b1'"),
        ("x,bid,5,2,9", "row 5 (line 6), field 'side'"),
        ("x,buy,99999999999999,2,9", "row 5 (line 6), field 'quantity_wh'"),
    ],
)
def test_bad_row_exits_2_and_leaves_existing_output_untouched(
    orders_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    row: str,
    where: str,
) -> None:
    orders_csv.write_text(ORDERS + row + "\n")
    target = tmp_path / "result.json"
    target.write_text("previous result")
    code, out, err = run_clear([str(orders_csv), "--output", str(target)], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("wattledger: invalid input: ")
    assert where in err
    assert target.read_text() == "previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.csv", "result.json"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("id,side,price\n", "missing column(s) 'quantity_wh'"),
    ],
)
def test_bad_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(text)
    code, out, err = run_clear([str(path)], capsys)
    assert code == 2
    assert out == ""
    assert message in err


def test_missing_file_and_missing_output_directory_exit_2(
    orders_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_clear([str(tmp_path / "absent.csv")], capsys)
    assert code == 2 and "absent.csv" in err
    code, _, err = run_clear([str(orders_csv), "--output", str(tmp_path / "no" / "r.json")], capsys)
    assert code == 2 and "--output" in err


@pytest.mark.parametrize(
    "text",
    [
        "id,side,quantity_wh,price\n",
        "id,side,quantity_wh,price\nb,buy,5,10\n",
        "id,side,quantity_wh,price\na,sell,5,10\nb,buy,5,9\n",
    ],
    ids=["empty-book", "one-sided", "no-crossing"],
)
def test_book_without_trades_clears_to_null_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(text)
    code, out, _ = run_clear([str(path)], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["price"] is None and data["volume_wh"] == 0 and data["trades"] == []
    assert set(data["fills"].values()) <= {0}


def test_command_line_process_reads_stdin_and_exits_2_on_bad_input() -> None:
    good = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "clear", "-"],
        input=ORDERS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["volume_wh"] == 1000
    bad = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "clear", "-"],
        input=ORDERS + "x,buy,0,1,1\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "<stdin>, row 5 (line 6), field 'quantity_wh'" in bad.stderr
    assert "Traceback" not in bad.stderr


@settings(max_examples=150, deadline=None)
@given(book=orders(extreme=True), mechanism=mechanisms)
def test_streamed_json_parses_to_the_result_json_dict(book: list[Order], mechanism: str) -> None:
    result = clear(book, mechanism)
    parsed = json.loads("".join(json_chunks(result)))
    expected = result.to_json_dict()
    assert parsed == expected
    assert list(parsed["fills"]) == list(expected["fills"])  # same (sorted by id) order


def test_output_file_gets_the_usual_mode_not_mkstemps_private_one(
    orders_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "result.json"
    umask = os.umask(0o022)
    try:
        assert run_clear([str(orders_csv), "--output", str(target)], capsys)[0] == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
