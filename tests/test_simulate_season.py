"""Runs longer than a day: folded day by day into a season (simulation/fold.py), reported by
day, hour and month (simulation/report/season.py), in memory (simulation/memory_system.py)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from test_simulate import town_file

from deploy.cli import main
from deploy.systems import memory_system
from ledger.records import Reading
from simulation.agents.base import OrderIntent
from simulation.aggregates import HOURS_PER_DAY, DayTotals, Season, month_of_day
from simulation.checks import check_record
from simulation.driver import run_simulation
from simulation.record import RunRecord
from simulation.report.files import write_run
from simulation.report.page import render_report
from simulation.scenario_file import load_scenario
from simulation.summary import summarize
from simulation.system import Participant

DAYS = 3


@pytest.fixture(scope="module")
def town_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunRecord, RunRecord]:
    """Three days of the small town in memory: folded by day, and kept whole."""
    scenario = load_scenario(town_file(tmp_path_factory.mktemp("town")), intervals=96 * DAYS)
    folded = run_simulation(scenario, memory_system(scenario))
    whole = run_simulation(scenario, memory_system(scenario), fold=False)
    return folded, whole


def test_a_run_folded_by_day_reports_what_the_same_run_kept_whole_reports(
    town_days: tuple[RunRecord, RunRecord],
) -> None:
    folded, whole = town_days
    assert folded.season is not None and whole.season is None
    assert folded.trades == () and folded.meters == () and folded.settlements == ()
    assert len(folded.season.days) == DAYS
    a, b = summarize(folded), summarize(whole)
    season = a.pop("season")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert b["market"]["trades"] > 100 and all(b["checks"].values())
    # the days add up to the run
    days = season["days"]
    assert sum(d["traded_wh"] for d in days) == b["market"]["traded_wh"]
    assert sum(d["delivered_wh"] for d in days) == b["settlement"]["delivered_wh"]
    assert sum(d["orders"] for d in days) == b["market"]["orders"]
    assert sum(d["load_wh"] for d in days) == sum(m.load_wh for m in whole.meters)
    assert len(season["hourly_price_per_wh"]) == DAYS
    assert all(len(row) == HOURS_PER_DAY for row in season["hourly_price_per_wh"])
    # months and dates follow the scenario's calendar (its start date, 1 June by default)
    start = folded.season.days[0].date
    assert start is not None and [d["date"] for d in days] == [
        (start + datetime.timedelta(days=n)).isoformat() for n in range(DAYS)
    ]
    assert [m["month"] for m in season["months"]] == [start.strftime("%b")]


def test_the_heat_map_holds_each_hours_volume_weighted_price(
    town_days: tuple[RunRecord, RunRecord],
) -> None:
    folded, whole = town_days
    assert folded.season is not None
    value: dict[tuple[int, int], int] = {}
    volume: dict[tuple[int, int], int] = {}
    for t in whole.trades:
        key = (t.interval // 96, t.interval % 96 // 4)
        value[key] = value.get(key, 0) + t.quantity_wh * t.price_per_wh
        volume[key] = volume.get(key, 0) + t.quantity_wh
    for d in folded.season.days:
        for h, price in enumerate(d.hourly_price_per_wh):
            key = (d.day, h)
            assert price == (value[key] // volume[key] if key in volume else None), key


def test_a_failed_check_of_one_day_fails_the_folded_run(
    town_days: tuple[RunRecord, RunRecord],
) -> None:
    """A violation found while folding a day is kept: the run's check fails, with it."""
    from simulation.fold import DayFolder

    _, whole = town_days
    folder = DayFolder(whole.interval_seconds)
    broken = list(whole.settlements)
    broken[0] = dataclasses.replace(broken[0], paid_base_units=broken[0].paid_base_units + 1)
    first_day = [x for x in broken if x.interval < 96]
    chunk = RunRecord(
        **{
            **{f: getattr(whole, f) for f in ("scenario", "seed", "intervals", "interval_seconds",
                                               "mechanism", "k", "penalty_price_per_wh",
                                               "tolerance_bps", "chain", "participants")},
            "interval_results": whole.interval_results[:96],
            "orders": tuple(o for o in whole.orders if o.interval < 96),
            "trades": tuple(t for t in whole.trades if t.interval < 96),
            "settlements": tuple(first_day),
            "meters": tuple(m for m in whole.meters if m.interval < 96),
        }
    )  # fmt: skip
    folder.add_day(0, chunk)
    record = RunRecord(**{**whole.__dict__, "season": folder.season()})
    checks = {c.name: c for c in check_record(record)}
    assert not checks["tokens_conserved"].ok
    assert "paid" in checks["tokens_conserved"].detail[0]
    assert checks["energy_conserved"].ok


def test_the_season_report_replaces_per_interval_charts(
    town_days: tuple[RunRecord, RunRecord], tmp_path: Path
) -> None:
    folded, whole = town_days
    page = render_report(folded)
    assert '<section id="season">' in page and '<section id="market">' not in page
    assert "Clearing price by hour and day" in page and "Energy mix per month" in page
    assert '<section id="book">' in page
    kept_whole = render_report(whole)  # no season: the per-interval report of a day
    assert '<section id="season">' not in kept_whole and '<section id="market">' in kept_whole
    files = write_run(folded, tmp_path / "run")
    assert set(files) == {"report.html", "summary.json", "days.csv", "participants.csv"}
    rows = (tmp_path / "run" / "days.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + DAYS and rows[0].startswith("day,month,intervals")


def _synthetic_year() -> Season:
    days = tuple(
        DayTotals(
            day=d, intervals=96, intervals_with_trades=60, orders=20_000, trades=9_000,
            traded_wh=5_000_000, traded_value_base_units=600 * 10**18, min_price_per_wh=6 * 10**13,
            max_price_per_wh=4 * 10**14,
            hourly_price_per_wh=tuple((10**14 + d * 10**11 + h * 10**12) if h % 5 else None
                                      for h in range(HOURS_PER_DAY)),
            contracted_wh=5_000_000, delivered_wh=4_900_000, paid_base_units=590 * 10**18,
            penalties_base_units=50 * 10**18, load_wh=9_000_000, generation_wh=7_000_000,
            self_supplied_wh=3_000_000, bought_wh=5_000_000, sold_wh=5_000_000,
            grid_import_wh=1_000_000, grid_export_wh=800_000,
        )
        for d in range(365)
    )  # fmt: skip
    return Season(
        days=days, positions={}, violations={}, interval_prices=(None,) * 35_040, orders=0,
        trades=0, settlements=0, traded_wh=0, traded_value_base_units=0, contracted_wh=0,
        delivered_wh=0, paid_base_units=0, penalties_base_units=0,
    )  # fmt: skip


def test_a_years_report_stays_a_few_megabytes_and_draws_every_hour_once(
    town_days: tuple[RunRecord, RunRecord],
) -> None:
    from simulation.report.season import season_section

    folded, _ = town_days
    year = folded.__class__(**{**folded.__dict__, "intervals": 35_040, "season": _synthetic_year()})
    section = season_section(year)
    assert len(section.encode()) < 3_000_000
    cells = re.findall(r"<title>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d+ \d\dh ",
                       section)  # fmt: skip
    assert len(cells) == 365 * sum(1 for h in range(HOURS_PER_DAY) if h % 5)
    months = re.findall(r'<tr><td class="l">(\w{3})</td>', section)
    assert months == ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                      "Nov", "Dec"]  # fmt: skip


def test_months_of_the_simulated_year() -> None:
    assert [month_of_day(d) for d in (0, 30, 31, 58, 59, 364, 365)] == [0, 0, 1, 1, 2, 11, 0]


# ------------------------------------------------------------------ the memory market's rules


def _market(collateral: int = 10**18) -> tuple[Any, list[str]]:
    system = memory_system(load_scenario(Path(__file__).resolve().parent.parent / "scenarios"
                                         / "neighbourhood.toml", intervals=4))  # fmt: skip
    accounts = [Account.from_key(bytes([k]) * 32) for k in (1, 2, 3)]
    system.onboard([Participant(f"p{k}", a, a.address, collateral) for k, a in enumerate(accounts)])
    return system, [a.address for a in accounts]


def test_memory_intake_refuses_what_the_market_api_refuses() -> None:
    system, (a, b, _) = _market(collateral=10**18)
    t = system.timing.current(system.now()) + 2
    price = 2 * 10**14
    # a bid, then an ask of the same participant that would cross it: SelfCross
    [[bid]] = system.submit_orders([(False, [(a, t, OrderIntent("buy", 1_000, price))])])
    [[cross]] = system.submit_orders([(False, [(a, t, OrderIntent("sell", 1_000, price))])])
    assert bid is not None and cross is None
    # collateral: 10**18 covers 1,000 Wh at 2e14 (2e17) and four more such bids, not a fifth
    more = system.submit_orders([(False, [(a, t, OrderIntent("buy", 1_000, price))] * 5)])
    assert [o is not None for o in more[0]] == [True, True, True, True, False]
    # a batch is all or none
    [batch] = system.submit_orders(
        [(True, [(b, t, OrderIntent("sell", 1_000, price)), (b, t, OrderIntent("buy", 9, price))])]
    )
    assert batch == [None, None]
    # after gate closure the interval takes no more orders
    system.advance_to(system.timing.gate_closure(t))
    system.close_gate(t)
    [[late]] = system.submit_orders([(False, [(b, t, OrderIntent("sell", 1_000, price))])])
    assert late is None


def test_memory_settlement_takes_readings_only_in_their_window() -> None:
    system, (a, b, _) = _market()
    t = system.timing.current(system.now()) + 2
    price = 2 * 10**14
    system.submit_orders([(False, [(a, t, OrderIntent("buy", 1_000, price))]),
                          (False, [(b, t, OrderIntent("sell", 1_000, price))])])  # fmt: skip
    system.advance_to(system.timing.gate_closure(t))
    system.close_gate(t)
    assert len(system.clearing(t)["trades"]) == 1
    early = [Reading(b, t, 0, 1_000)]
    assert system.submit_readings(t, early) == 1  # the interval has not ended
    system.advance_to(system.timing.end(t))
    assert system.submit_readings(t, early) == 0
    assert system.submit_readings(t, early) == 1  # once per participant
    assert system.settle([t]).settled == []  # before the deadline nothing settles
    system.advance_to(system.timing.deadline(t))
    assert system.submit_readings(t, [Reading(a, t, 1_000, 0)]) == 1  # the window closed
    progress = system.settle([t])
    assert progress.settled == [t]
    [outcome] = progress.outcomes
    assert (outcome.delivered_wh, outcome.payment_base_units, outcome.penalty_base_units) == (
        1_000,
        1_000 * price,
        0,
    )
    assert system.escrow_balanced()


def test_memory_ledger_refuses_audit_and_chain_options(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    assert main(["simulate", "--no-progress", "--ledger", "memory", "--audit", "--out", out]) == 2
    assert main(["simulate", "--no-progress", "--ledger", "memory", "--rpc-url",
                 "http://127.0.0.1:1", "--out", out]) == 2  # fmt: skip
    assert not Path(out).exists()


def test_book_interval_is_refused_for_a_run_longer_than_a_day(tmp_path: Path) -> None:
    """A run folded by day keeps only its busiest interval's orders: another interval's book
    cannot be drawn, so the option is refused before anything runs."""
    out = tmp_path / "out"
    args = ["simulate", "--no-progress", "--ledger", "memory", "--out", str(out)]
    assert main([*args, "--intervals", "97", "--book-interval", "3"]) == 2
    assert not out.exists()
