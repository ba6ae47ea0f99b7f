"""Run record, summary, CSVs and the self-contained HTML report."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sim_offline import run_offline

from simulation.checks import check_record
from simulation.positions import interval_average_prices, positions
from simulation.record import IntervalRecord, JobRecord, RunRecord
from simulation.report.display import clock
from simulation.report.files import ORDER_COLUMNS, SETTLEMENT_COLUMNS, TRADE_COLUMNS, write_run
from simulation.report.headline import headline_text
from simulation.report.market import busiest_interval
from simulation.report.page import render_report
from simulation.scenario_file import load_scenario
from simulation.summary import summarize

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.fixture(scope="module")
def record() -> RunRecord:
    run, _ = run_offline(load_scenario(SCENARIOS / "neighbourhood.toml"))
    return run


@pytest.fixture(scope="module")
def html(record: RunRecord) -> str:
    return render_report(record)


def checks_of(record: RunRecord) -> dict[str, bool]:
    return {c.name: c.ok for c in check_record(record)}


# --------------------------------------------------------------------------- record and summary


def test_the_reference_day_passes_every_check(record: RunRecord) -> None:
    assert checks_of(record) == {
        "energy_conserved": True,
        "tokens_conserved": True,
        "individually_rational": True,
        "committed_intervals_settled": True,
        "deadlines_met": True,
    }


def test_net_positions_sum_to_zero_and_match_the_settlements(record: RunRecord) -> None:
    pos = positions(record)
    assert sum(p.net_base_units for p in pos.values()) == 0
    assert sum(p.bought_wh for p in pos.values()) == sum(t.quantity_wh for t in record.trades)
    assert sum(p.sold_wh for p in pos.values()) == sum(t.quantity_wh for t in record.trades)
    paid = sum(s.paid_base_units for s in record.settlements)
    assert sum(p.earned_base_units for p in pos.values()) == paid
    assert any(p.net_base_units > 0 for p in pos.values())
    assert any(p.net_base_units < 0 for p in pos.values())


def test_the_same_seed_gives_the_same_summary_and_another_seed_does_not() -> None:
    scenario = load_scenario(SCENARIOS / "datacenter-heavy.toml", intervals=48)
    first = json.dumps(summarize(run_offline(scenario)[0]), indent=2)
    again = json.dumps(summarize(run_offline(scenario)[0]), indent=2)
    assert first == again
    reseeded = replace(scenario, simulation=replace(scenario.simulation, seed=99))
    assert json.dumps(summarize(run_offline(reseeded)[0]), indent=2) != first


def test_the_summary_leaves_wall_time_out(record: RunRecord) -> None:
    timed = replace(record, timing_seconds={"agents": 1.5, "chain": 7.0})
    assert summarize(timed) == summarize(record)
    assert "agents" in render_report(timed)  # the report does show it


def test_summary_amounts_of_money_are_exact_decimal_strings(record: RunRecord) -> None:
    summary = summarize(record)
    value = sum(t.quantity_wh * t.price_per_wh for t in record.trades)
    assert summary["market"]["traded_value_base_units"] == str(value)
    assert summary["market"]["traded_wh"] == sum(t.quantity_wh for t in record.trades)
    assert summary["market"]["average_price_per_wh"] == value // summary["market"]["traded_wh"]
    assert all(isinstance(p["net_base_units"], str) for p in summary["positions"].values())
    assert (
        summary["data_centers"]["deadlines_met"] == summary["data_centers"]["jobs_due_in_run"] == 4
    )


def _corrupt_first_settlement(record: RunRecord, **changes: int) -> RunRecord:
    first = replace(record.settlements[0], **changes)  # type: ignore[arg-type]
    return replace(record, settlements=(first, *record.settlements[1:]))


def test_checks_catch_a_payment_that_does_not_add_up(record: RunRecord) -> None:
    s = record.settlements[0]
    broken = _corrupt_first_settlement(record, refunded_base_units=s.refunded_base_units + 1)
    assert checks_of(broken)["tokens_conserved"] is False


def test_checks_catch_a_penalty_above_the_shortfall_times_the_penalty_price(
    record: RunRecord,
) -> None:
    s = record.settlements[0]
    too_much = (s.shortfall_wh + 1) * record.penalty_price_per_wh
    assert (
        checks_of(_corrupt_first_settlement(record, penalty_base_units=too_much))[
            "tokens_conserved"
        ]
        is False
    )


def test_checks_catch_delivery_that_disagrees_with_the_meters(record: RunRecord) -> None:
    s = next(s for s in record.settlements if s.delivered_wh > 0)
    index = record.settlements.index(s)
    changed = replace(
        s,
        delivered_wh=s.delivered_wh - 1,
        paid_base_units=s.paid_base_units - s.price_per_wh,
        refunded_base_units=s.refunded_base_units + s.price_per_wh,
    )
    settlements = (*record.settlements[:index], changed, *record.settlements[index + 1 :])
    broken = replace(record, settlements=settlements)
    assert checks_of(broken)["energy_conserved"] is False
    assert checks_of(broken)["tokens_conserved"] is True


def test_checks_catch_a_trade_outside_its_limits(record: RunRecord) -> None:
    trade = record.trades[0]
    bid = next(o for o in record.orders if o.order_id == trade.buy_order_id)
    dear = replace(trade, price_per_wh=bid.price_per_wh + 1)
    assert (
        checks_of(replace(record, trades=(dear, *record.trades[1:])))["individually_rational"]
        is False
    )


def test_checks_catch_an_unsettled_committed_interval_and_a_missing_settlement(
    record: RunRecord,
) -> None:
    t = next(r.interval for r in record.interval_results if r.committed)
    results = tuple(
        replace(r, settled=False) if r.interval == t else r for r in record.interval_results
    )
    assert (
        checks_of(replace(record, interval_results=results))["committed_intervals_settled"] is False
    )
    missing = tuple(s for s in record.settlements if s.interval != t)
    assert checks_of(replace(record, settlements=missing))["committed_intervals_settled"] is False


def test_checks_catch_a_missed_deadline_but_not_an_open_job(record: RunRecord) -> None:
    job = record.jobs[0]
    missed = replace(job, consumed_wh=job.energy_wh - 1)
    assert checks_of(replace(record, jobs=(missed, *record.jobs[1:])))["deadlines_met"] is False
    still_open = replace(missed, open=True, finished_interval=None)
    assert checks_of(replace(record, jobs=(still_open, *record.jobs[1:])))["deadlines_met"] is True


def test_checks_catch_fills_that_do_not_match_the_trades(record: RunRecord) -> None:
    order = next(o for o in record.orders if o.filled_wh > 0)
    index = record.orders.index(order)
    orders = (
        *record.orders[:index],
        replace(order, filled_wh=order.filled_wh + 1),
        *record.orders[index + 1 :],
    )
    assert checks_of(replace(record, orders=orders))["energy_conserved"] is False


def test_extra_checks_from_the_driver_are_reported(record: RunRecord) -> None:
    flagged = replace(record, extra_checks={"escrow_matches_token_balance": False})
    assert checks_of(flagged)["escrow_matches_token_balance"] is False
    assert summarize(flagged)["checks"]["escrow_matches_token_balance"] is False


# --------------------------------------------------------------------------- CSV and JSON


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_write_run_writes_the_report_summary_and_csvs(record: RunRecord, tmp_path: Path) -> None:
    files = write_run(record, tmp_path / "run")
    assert set(files) == {
        "report.html",
        "summary.json",
        "orders.csv",
        "trades.csv",
        "settlements.csv",
        "meters.csv",
        "participants.csv",
    }
    assert all(path.is_file() and path.parent == tmp_path / "run" for path in files.values())
    assert json.loads(files["summary.json"].read_text()) == summarize(record)

    orders = _rows(files["orders.csv"])
    assert tuple(orders[0]) == ORDER_COLUMNS and len(orders) == len(record.orders)
    trades = _rows(files["trades.csv"])
    assert tuple(trades[0]) == TRADE_COLUMNS and len(trades) == len(record.trades)
    for row in trades[:50]:
        assert int(row["value_base_units"]) == int(row["quantity_wh"]) * int(row["price_per_wh"])
    assert sum(int(r["quantity_wh"]) for r in trades) == summarize(record)["market"]["traded_wh"]
    settlements = _rows(files["settlements.csv"])
    assert tuple(settlements[0]) == SETTLEMENT_COLUMNS
    assert len(settlements) == len(record.settlements)
    assert sum(int(r["penalty_base_units"]) for r in settlements) == int(
        summarize(record)["settlement"]["penalties_base_units"]
    )
    participants = _rows(files["participants.csv"])
    assert len(participants) == len(record.participants)
    assert sum(int(r["net_base_units"]) for r in participants) == 0
    assert len(_rows(files["meters.csv"])) == len(record.meters)


def test_headline_text_names_the_figures_checks_and_report(record: RunRecord) -> None:
    text = headline_text(record, "runs/x/report.html")
    assert "Energy traded" in text and "Deadlines met  4 / 4" in text
    assert "Checks" in text and "all hold" in text
    assert text.splitlines()[-1].endswith("runs/x/report.html")


# --------------------------------------------------------------------------- the HTML


class _Structure(HTMLParser):
    """Checks that every non-void element is closed in order, and collects what is used."""

    VOID = frozenset(
        {"meta", "br", "hr", "img", "input", "link", "source", "wbr", "col", "area", "base"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: dict[str, int] = {}
        self.attributes: list[tuple[str, str | None]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attributes += attrs
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attributes += attrs

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse(html: str) -> _Structure:
    parser = _Structure()
    parser.feed(html)
    parser.close()
    return parser


def test_the_report_is_well_formed_html(html: str) -> None:
    parsed = parse(html)
    assert parsed.errors == [] and parsed.stack == []
    assert html.startswith("<!doctype html>")
    assert parsed.tags["html"] == 1 and parsed.tags["svg"] >= 8


def test_the_report_needs_nothing_from_the_network(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    parsed = parse(html)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert not [a for a in parsed.attributes if a[0] in ("src", "href")]
    assert "@import" not in html and "url(" not in html


def test_the_report_has_every_section_and_chart_with_tooltips(record: RunRecord, html: str) -> None:
    for section in ("checks", "market", "book", "delivery", "participants", "data-centers"):
        assert f'<section id="{section}">' in html
    for phrase in (
        "Clearing price",
        "Traded volume",
        "Supply and demand",
        "Contracted and delivered energy",
        "Penalties",
        "Net position",
        "Energy mix",
        "Data-center load shifting",
        "edge-dc",
    ):
        assert phrase in html
    # axis titles carry units
    for unit in ("price (currency/kWh)", "volume (kWh)", "energy (kWh)", "penalties (tokens)"):
        assert unit in html
    assert html.count("<title>") > 200  # tooltips on the marks
    traded = summarize(record)["market"]["traded_wh"]
    assert f"{traded / 1000:,.1f} kWh" in html  # the headline figure
    assert html.count('class="ok">met</span>') == 4


def test_charts_carry_their_colours_so_they_render_outside_a_browser(html: str) -> None:
    bars = re.findall(r'<rect class="bar-volume"[^>]*>', html)
    assert bars and all('fill="#93c5fd"' in bar for bar in bars)
    assert 'font-family="system-ui' in html


def test_the_report_is_a_pure_function_of_the_record(record: RunRecord, html: str) -> None:
    assert render_report(record) == html


def test_the_supply_and_demand_curves_default_to_the_busiest_interval(
    record: RunRecord, html: str
) -> None:
    t = busiest_interval(record)
    assert record.interval_results[t].volume_wh == max(r.volume_wh for r in record.interval_results)
    assert f"interval {t} (" in html
    other = render_report(record, book_interval=3)
    assert "The order book of interval 3 (00:45)" in other


def test_a_failed_check_is_shown_with_its_detail(record: RunRecord) -> None:
    job = record.jobs[0]
    broken = replace(record, jobs=(replace(job, consumed_wh=job.energy_wh - 5), *record.jobs[1:]))
    html = render_report(broken)
    assert '<span class="bad">✗</span> deadlines met' in html
    assert f"{job.job}: {job.energy_wh - 5} of {job.energy_wh} Wh" in html
    assert '<span class="bad">missed</span>' in html


def test_text_from_the_scenario_is_escaped(record: RunRecord) -> None:
    hostile = replace(record, description="<script>alert(1)</script>", scenario="a&b")
    html = render_report(hostile)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "a&amp;b" in html


def test_an_empty_run_still_renders() -> None:
    empty = RunRecord(
        scenario="empty",
        seed=1,
        intervals=4,
        interval_seconds=900,
        mechanism="uniform",
        k=(1, 2),
        penalty_price_per_wh=1,
        tolerance_bps=0,
        chain="none",
        participants=(),
        interval_results=tuple(IntervalRecord(t, None, 0) for t in range(4)),
    )
    html = render_report(empty)
    assert parse(html).errors == []
    assert "Nothing traded." in html and "—" in html
    assert all(checks_of(empty).values())


def test_a_pay_as_bid_run_shows_the_volume_weighted_price() -> None:
    scenario = load_scenario(SCENARIOS / "neighbourhood.toml", intervals=60)
    scenario = replace(scenario, simulation=replace(scenario.simulation, mechanism="pay-as-bid"))
    record, _ = run_offline(scenario)
    assert all(r.price_per_wh is None for r in record.interval_results)
    prices = interval_average_prices(record)
    t = busiest_interval(record)
    trades = [tr for tr in record.trades if tr.interval == t]
    volume = sum(tr.quantity_wh for tr in trades)
    assert prices[t] == sum(tr.quantity_wh * tr.price_per_wh for tr in trades) // volume
    assert all(checks_of(record).values())
    assert "Pay-as-bid" in render_report(record)


def test_multi_day_runs_label_the_day() -> None:
    assert clock(5, 900, False) == "01:15"
    assert clock(100, 900, True) == "d2 01:00"


def test_open_jobs_are_reported_as_open_not_missed() -> None:
    scenario = load_scenario(SCENARIOS / "neighbourhood.toml", intervals=20)
    record, _ = run_offline(scenario)
    open_jobs = [j for j in record.jobs if j.open]
    assert [j.job for j in open_jobs] == ["nightly-backup"]  # deadline 31, run ends at 19
    assert all(isinstance(j, JobRecord) for j in record.jobs)
    assert checks_of(record)["deadlines_met"]
    assert "open at end of run" in render_report(record)
    assert summarize(record)["data_centers"]["open_at_end"] == 1
