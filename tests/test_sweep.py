"""``wattledger sweep`` without an engine: the grid, the checks before anything runs, the rows
of ``sweep.csv`` and ``sweep.json``, ``sweep.html``, one run in this process, and the command
line's refusals of bad input (each naming the key or the flag)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sweep_support import LANE, lane_file

from chain.anvil import free_port
from deploy.cli import main
from deploy.sweep_dask import RunTask, run_one
from ledger.errors import InputError
from simulation.scenario_file import read_toml
from simulation.sweep import (
    RunOutcome,
    SweepPlan,
    parse_param,
    plan_sweep,
    resume_arguments,
    split_values,
    sweep_csv_text,
    sweep_json,
    toml_value,
)
from simulation.sweep_report import render_sweep


def plan(*params: str, seeds: int = 1, intervals: int = 4, text: str = LANE) -> SweepPlan:
    return plan_sweep(
        read_toml(text),
        [parse_param(p) for p in params],
        seeds=seeds,
        intervals=intervals,
        ledger="memory",
        source="lane.toml",
    )


def refusal(*params: str, **kwargs: Any) -> str:
    with pytest.raises(InputError) as info:
        plan(*params, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- values and keys


def test_values_split_on_commas_outside_brackets_and_quotes() -> None:
    assert split_values('a, b,[1, 2],"x,y"') == ["a", "b", "[1, 2]", '"x,y"']


def test_values_are_toml_values_or_else_words() -> None:
    assert toml_value("10") == 10
    assert toml_value("0.5") == Decimal("0.5")
    assert toml_value("true") is True
    assert toml_value('"10"') == "10"
    assert toml_value("uniform") == "uniform"
    assert toml_value("1/2") == "1/2"
    assert toml_value("[1, 2]") == [1, 2]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("simulation.k", "expected KEY=V1,V2"),
        ("simulation.k=", "simulation.k: no values to sweep"),
        ("simulation.k=1/2,,1/1", "simulation.k: an empty value"),
        ("simulation.k=1/2,1/2", "simulation.k: 1/2 given more than once"),
        ("simulation..k=1", "simulation..k: not a dotted key"),
    ],
)
def test_a_malformed_param_is_refused_naming_it(text: str, said: str) -> None:
    with pytest.raises(InputError, match="--param") as info:
        parse_param(text)
    assert said in str(info.value)


# --------------------------------------------------------------------------- the grid


def test_the_grid_varies_the_first_param_slowest_and_the_seeds_fastest() -> None:
    p = plan("simulation.mechanism=uniform,pay-as-bid", "simulation.k=0/1,1/1", seeds=2)
    assert [(dict(r.values), r.seed) for r in p.runs[:3]] == [
        ({"simulation.mechanism": "uniform", "simulation.k": "0/1"}, 77),
        ({"simulation.mechanism": "uniform", "simulation.k": "0/1"}, 78),
        ({"simulation.mechanism": "uniform", "simulation.k": "1/1"}, 77),
    ]
    assert len(p.runs) == 8
    assert [r.run for r in p.runs] == [f"run-{i:04d}" for i in range(8)]
    last = p.scenario_of(p.runs[-1])
    assert (last.simulation.mechanism, last.simulation.k, last.simulation.seed) == (
        "pay-as-bid",
        (1, 1),
        78,
    )
    assert last.simulation.intervals == 4


def test_a_key_of_an_agent_group_and_a_table_the_file_lacks_are_set() -> None:
    p = plan("agents.pv[0].count=1,4", "weather.mean_clearness=0.3")
    scenarios = [p.scenario_of(r) for r in p.runs]
    assert [s.agents.pv[0].count for s in scenarios] == [1, 4]
    assert {s.weather.mean_clearness for s in scenarios} == {0.3}


def test_seeds_can_be_swept_as_a_key_instead_of_with_seeds() -> None:
    p = plan("simulation.seed=5,9")
    assert [r.seed for r in p.runs] == [5, 9]
    assert [p.scenario_of(r).simulation.seed for r in p.runs] == [5, 9]


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("simulation.speed=1,2", "simulation.speed: unknown key"),
        ("simulation.seed=abc", "simulation.seed: expected an integer, got string 'abc'"),
        ("weather.mean_clearness=0.5,2", "--param weather.mean_clearness=2"),
        ("agents.pv[1].count=2", "agents.pv: the scenario has 1 [[agents.pv]] table(s)"),
        ("agents.pv.count=2", "agents.pv: is an array of 1 table(s): name one with an index"),
        ("simulation=1", "simulation: is a table"),
        ("simulation.seed.low=1", "simulation.seed: is an integer, not a table"),
        ("planet.name=mars", "planet: unknown key"),
    ],
)
def test_a_bad_key_or_value_is_refused_before_anything_runs_naming_the_key(
    param: str, said: str
) -> None:
    assert said in refusal(param)


def test_values_that_are_fine_alone_but_not_together_are_refused_naming_both() -> None:
    message = refusal(
        "agents.battery[0].charge_price_per_kwh=0.12,0.18",
        "agents.battery[0].discharge_price_per_kwh=0.20,0.15",
    )
    assert "charge_price_per_kwh=0.18" in message
    assert "discharge_price_per_kwh=0.15" in message
    assert "must be above charge_price_per_kwh" in message


def test_seeds_twice_and_a_swept_length_are_refused() -> None:
    assert "--seeds 3 both set the seeds" in refusal("simulation.seed=1,2", seeds=3)
    assert "simulation.intervals" in refusal("simulation.intervals=4,8")
    assert "given more than once" in refusal("simulation.k=0/1", "simulation.k=1/1")


# --------------------------------------------------------------------------- rows and files


def summary(traded_wh: int, *, checks_ok: bool = True) -> dict[str, Any]:
    """A summary.json with the sections a row reads (the figures made up)."""
    return {
        "market": {
            "orders": 10,
            "trades": 4,
            "intervals_with_trades": 2,
            "traded_wh": traded_wh,
            "traded_value_base_units": str(traded_wh * 10**14),
            "average_price_per_wh": 10**14,
            "min_price_per_wh": 10**14,
            "max_price_per_wh": 10**14,
        },
        "settlement": {
            "contracted_wh": traded_wh,
            "delivered_wh": traded_wh - 1,
            "shortfall_wh": 1,
            "paid_base_units": "5",
            "penalties_base_units": "0",
            "committed_intervals": 2,
            "settled_intervals": 2,
        },
        "data_centers": {"jobs_due_in_run": 0, "deadlines_met": 0, "flexible_wh": 0},
        "checks": {"energy_conserved": True, "tokens_conserved": checks_ok},
    }


def test_sweep_csv_has_one_row_per_run_in_the_plans_order_whatever_order_runs_finished() -> None:
    p = plan("simulation.k=0/1,1/1", seeds=2)
    outcomes = {r.run: RunOutcome(summary=summary(100 + r.index)) for r in reversed(p.runs[1:])}
    outcomes["run-0000"] = RunOutcome(error="RuntimeError: out of luck")
    text = sweep_csv_text(p, outcomes)
    assert text == sweep_csv_text(p, dict(reversed(list(outcomes.items()))))
    lines = text.splitlines()
    assert lines[0].startswith("run,simulation.k,seed,status,checks,orders,trades,")
    assert lines[0].endswith(",error")
    assert lines[1].startswith("run-0000,0/1,77,failed,,,")
    assert lines[1].endswith(",RuntimeError: out of luck")
    assert lines[2].startswith("run-0001,0/1,78,ok,all hold,10,4,2,101,10100000000000000,")
    assert len(lines) == 5
    outcomes["run-0003"] = RunOutcome(summary=summary(7, checks_ok=False))
    assert "failed: tokens_conserved" in sweep_csv_text(p, outcomes).splitlines()[4]


def test_sweep_json_holds_the_plan_that_resume_plans_again() -> None:
    p = plan("simulation.k=0/1,1/1", 'calendar.holidays=[],"DE-BY"', seeds=3)
    document = json.loads(json.dumps(sweep_json(p, {})))
    assert document["runs"][0] == {
        "run": "run-0000",
        "parameters": {"simulation.k": "0/1", "calendar.holidays": "[]"},
        "seed": 77,
        "status": "pending",
    }
    again = plan_sweep(read_toml(LANE), source="lane.toml", **resume_arguments(document))
    assert again.runs == p.runs
    assert again.tables == p.tables


def test_sweep_html_is_self_contained_with_a_chart_per_figure_and_parameter() -> None:
    p = plan("simulation.k=0/1,1/1", "simulation.mechanism=uniform,pay-as-bid", seeds=2)
    outcomes = {r.run: RunOutcome(summary=summary(100 * (r.index + 1))) for r in p.runs}
    outcomes["run-0002"] = RunOutcome(error="RuntimeError: <boom>")
    page = render_sweep(p, outcomes)
    # two parameters, eight figures; no data-center job was due, so that figure has no chart
    assert page.count("<svg") == 7 * 2
    assert page.count("Deadlines met against simulation.k: no finished run has this") == 1
    assert "http" not in page and "<script" not in page and "src=" not in page
    assert "RuntimeError: &lt;boom&gt;" in page
    assert "simulation.mechanism=pay-as-bid" in page  # a line per value of the other key
    assert page == render_sweep(p, outcomes)


# --------------------------------------------------------------------------- one run


def task_of(p: SweepPlan, index: int = 0) -> RunTask:
    run = p.runs[index]
    return RunTask(
        run.run, run.values, run.seed, p.tables[run.run], p.source, p.intervals, p.ledger
    )


@pytest.mark.parametrize(("ledger", "chain"), [("memory", "memory"), ("embedded", "eth-tester")])
def test_one_run_sends_back_its_folder_as_simulate_writes_it(ledger: str, chain: str) -> None:
    p = plan("simulation.mechanism=pay-as-bid", intervals=2)
    result = run_one(replace(task_of(p), ledger=ledger))
    assert result.ok, result.error
    assert {"report.html", "summary.json", "trades.csv", "timing.json"} <= set(result.files)
    figures = json.loads(result.files["summary.json"])
    assert (figures["mechanism"], figures["intervals"], figures["seed"]) == ("pay-as-bid", 2, 77)
    assert figures["chain"].startswith(chain)
    assert all(figures["checks"].values()), figures["checks"]


def test_a_run_that_raises_comes_back_failed_with_its_error_and_traceback() -> None:
    p = plan("simulation.k=0/1")
    broken = task_of(p)
    broken.tables["simulation"]["mechanism"] = "vickrey"  # past the checks, as a bug might
    result = run_one(broken)
    assert not result.ok
    assert result.error is not None and "simulation.mechanism" in result.error
    assert "simulation.k=0/1, seed 77" in result.files["error.txt"].decode()
    assert "Traceback" in result.files["error.txt"].decode()


# --------------------------------------------------------------------------- the command line


def sweep(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["sweep", "--no-progress", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("simulation.speed=1,2", "simulation.speed: unknown key"),
        ("agents.pv[0].count=2,many", "agents.pv[0].count: expected an integer, got string"),
        ("simulation.k=", "simulation.k: no values to sweep"),
    ],
)
def test_the_command_refuses_a_bad_param_with_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], param: str, said: str
) -> None:
    out = tmp_path / "out"
    code, err = sweep(capsys, str(lane_file(tmp_path)), "--param", param, "--out", str(out))
    assert code == 2
    assert said in err and "Traceback" not in err
    assert not out.exists()  # refused before anything ran or was written


def test_workers_and_scheduler_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = sweep(
        capsys,
        str(lane_file(tmp_path)),
        "--workers",
        "2",
        "--scheduler",
        "tcp://127.0.0.1:8786",
    )
    assert code == 2
    assert "--workers and --scheduler do not go together" in err


def test_an_unreachable_scheduler_is_refused_naming_its_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "out"
    code, err = sweep(
        capsys,
        str(lane_file(tmp_path)),
        "--param",
        "simulation.k=0/1",
        "--scheduler",
        address,
        "--connect-timeout",
        "1",
        "--out",
        str(out),
    )
    assert code == 2
    assert f"--scheduler {address}: no Dask scheduler answered within 1 s" in err


def test_resume_takes_no_plan_of_its_own_and_needs_a_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = sweep(capsys, "--resume", str(tmp_path), "--param", "simulation.k=0/1")
    assert code == 2 and "drop --param" in err
    code, err = sweep(capsys, "--resume", str(tmp_path))
    assert code == 2 and "no sweep there (sweep.json is missing)" in err


def test_an_out_folder_holding_a_sweep_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sweep.json").write_text("{}")
    code, err = sweep(capsys, str(lane_file(tmp_path)), "--out", str(tmp_path))
    assert code == 2 and "holds a sweep already" in err and "--resume" in err
