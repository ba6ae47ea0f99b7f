"""``wattledger simulate`` end to end on the embedded chain: the real API, clearing, contracts
and settlement service, checked through the report, the summary and the chain itself."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sim_offline import run_offline

from deploy.assembly import prefer_fast_keccak
from deploy.cli import main
from deploy.systems import EmbeddedSystem
from ledger.eip712 import reading_digest
from ledger.records import Reading
from simulation.checks import check_record
from simulation.driver import run_simulation
from simulation.record import RunRecord
from simulation.scenario_file import load_scenario, parse_scenario
from simulation.summary import summarize

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

pytestmark = pytest.mark.slow

# A small town that trades at night: batteries sell to households, a data center has two
# jobs due within the run, and a VPP submits through /orders:batch.
TOWN = """
name = "test-town"
description = "A few of every kind, for the end-to-end tests."

[simulation]
seed = 4242
intervals = 8

[market]
penalty_price_per_kwh = "0.50"
tolerance_bps = 500

[[agents.pv]]
name = "roof"
count = 3
peak_w = 5000

[[agents.battery]]
name = "street-battery"
capacity_kwh = 80
max_power_w = 40000
initial_soc = 0.9
collateral = "500"

[[agents.battery]]
name = "home-battery"
count = 2
capacity_kwh = 10
max_power_w = 5000
initial_soc = 0.8
load_kwh_per_year = 2190

[[agents.household]]
name = "home"
count = 5
load_kwh_per_year = 3650

[[agents.data_center]]
name = "dc"
base_load_w = 8000
collateral = "300"

[[agents.data_center.jobs]]
name = "backup"
energy_kwh = 6
release_interval = 0
deadline_interval = 4
max_power_w = 10000

[[agents.data_center.jobs]]
name = "reindex"
energy_kwh = 4
release_interval = 2
deadline_interval = 6
max_power_w = 8000

[[agents.vpp]]
name = "vpp"
homes = 6
pv_homes = 3
battery_homes = 3
pv_peak_w = 4000
battery_capacity_kwh = 6
battery_max_power_w = 3000
"""


@pytest.fixture(scope="module", autouse=True)
def fast_keccak() -> None:
    prefer_fast_keccak()


def town_file(directory: Path) -> Path:
    path = directory / "test-town.toml"
    path.write_text(TOWN, encoding="utf-8")
    return path


def simulate(*args: str) -> int:
    return main(["simulate", "--no-progress", *args])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------ the CLI, default scenario


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, int]]:
    out = tmp_path_factory.mktemp("default") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = simulate("--intervals", "4", "--audit", "--out", str(out))
    yield out, stdout.getvalue(), code


def test_default_scenario_runs_end_to_end_and_every_check_holds(
    default_run: tuple[Path, str, int],
) -> None:
    out, printed, code = default_run
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "neighbourhood"
    assert summary["chain"] == "eth-tester"
    assert summary["intervals"] == 4
    assert summary["participants"]["total"] == 73
    assert summary["checks"] == {
        "energy_conserved": True,
        "tokens_conserved": True,
        "individually_rational": True,
        "committed_intervals_settled": True,
        "deadlines_met": True,
        "all_orders_accepted": True,
        "all_readings_accepted": True,
        "escrow_equals_token_balance": True,
        "ledger_balances_match_settlements": True,
        "audit_passes": True,
    }
    market, settlement = summary["market"], summary["settlement"]
    assert market["trades"] > 0 and market["traded_wh"] > 0
    assert settlement["committed_intervals"] == settlement["settled_intervals"] > 0
    assert settlement["settled_trades"] == market["trades"]
    assert settlement["contracted_wh"] == market["traded_wh"]


def test_the_run_prints_headline_figures_and_the_report_path(
    default_run: tuple[Path, str, int],
) -> None:
    out, printed, _ = default_run
    assert "Energy traded" in printed and "Checks" in printed and "all hold" in printed
    audited = re.search(r"^PASS: audited \d+ committed intervals.*$", printed, re.MULTILINE)
    assert audited and audited[0].endswith("(GET /market)"), printed  # the declared mechanism
    report = (out / "report.html").resolve()
    assert re.search(rf"^Report +{re.escape(str(report))}$", printed, re.MULTILINE), printed


def test_report_is_self_contained_and_files_are_written(
    default_run: tuple[Path, str, int],
) -> None:
    out, _, _ = default_run
    html = (out / "report.html").read_text()
    assert "<svg" in html
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    for name in ("orders.csv", "trades.csv", "settlements.csv", "meters.csv", "participants.csv"):
        assert read_csv(out / name), name
    trades, settlements = read_csv(out / "trades.csv"), read_csv(out / "settlements.csv")
    assert len(trades) == len(settlements)
    timing = json.loads((out / "timing.json").read_text())
    assert {"setup", "agents", "api", "clearing", "chain", "settlement", "total"} <= set(timing)


# ------------------------------------------------------------------- the library, small town


@pytest.fixture(scope="module")
def town_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunRecord, RunRecord, Any]:
    """The small town twice on eth-tester; the first run's system stays open for the audit."""
    directory = tmp_path_factory.mktemp("town")
    scenario = load_scenario(town_file(directory))
    first_system = EmbeddedSystem(scenario)
    first = run_simulation(scenario, first_system)
    second_system = EmbeddedSystem(scenario)
    try:
        second = run_simulation(scenario, second_system)
    finally:
        second_system.close()
    return first, second, first_system


def test_small_town_settles_every_committed_interval_and_meets_its_deadlines(
    town_runs: tuple[RunRecord, RunRecord, Any],
) -> None:
    record, _, _ = town_runs
    checks = {c.name: c for c in check_record(record)}
    assert all(c.ok for c in checks.values()), [c for c in checks.values() if not c.ok]
    due = [j for j in record.jobs if not j.open]
    assert {j.job for j in due} == {"backup", "reindex"}
    assert all(j.met for j in due)
    committed = [r for r in record.interval_results if r.committed]
    assert committed and all(r.settled for r in committed)
    vpp_orders = [o for o in record.orders if o.participant == "vpp"]
    assert vpp_orders, "the VPP placed no orders through /orders:batch"


def test_same_seed_gives_the_same_summary(
    town_runs: tuple[RunRecord, RunRecord, Any],
) -> None:
    first, second, _ = town_runs
    assert json.dumps(summarize(first), sort_keys=True) == json.dumps(
        summarize(second), sort_keys=True
    )


def test_the_real_system_agrees_with_the_offline_reference_market(
    town_runs: tuple[RunRecord, RunRecord, Any], tmp_path: Path
) -> None:
    """Same agents, same seed: the real API, clearing and contracts give the trades and
    settlements of the plain reference market of tests/sim_offline.py."""
    record, _, _ = town_runs
    reference, _ = run_offline(load_scenario(town_file(tmp_path)))
    real, expected = summarize(record), summarize(reference)
    assert real["market"] == expected["market"]
    assert real["positions"] == expected["positions"]
    for key in ("settled_trades", "contracted_wh", "delivered_wh", "paid_base_units"):
        assert real["settlement"][key] == expected["settlement"][key], key
    assert (
        real["settlement"]["penalties_base_units"] == expected["settlement"]["penalties_base_units"]
    )


def test_audit_passes_on_a_clean_simulation_run(
    town_runs: tuple[RunRecord, RunRecord, Any],
) -> None:
    record, _, system = town_runs
    try:
        committed = sorted(system.service.store.intervals_in_state("committed"))
        assert len(committed) == sum(r.committed for r in record.interval_results) > 0
        report = system.audit(committed)
        assert report.ok, "\n".join(report.lines())
        assert [r.interval for r in report.intervals] == committed
    finally:
        system.close()


def test_meter_readings_are_signed_over_the_contracts_digest(chain: Any) -> None:
    from chain.client import LedgerClient
    from deploy.deployment import deploy_system
    from ledger.eip712 import Domain

    deployment = deploy_system(chain)
    client = LedgerClient.from_deployment(chain, deployment)
    domain = Domain(chain.chain_id, client.address)
    reading = Reading(chain.accounts[1], 7, 1_234, 56)
    assert reading_digest(domain.separator, reading) == client.reading_digest(reading)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ('name = "roof"\ncount = 3\npeak_w = 5000', "agents.pv[0].colour"),
        ("capacity_kwh = 80", "agents.battery[0].round_trip_efficiency"),
        ("deadline_interval = 4", "agents.data_center[0].jobs[0].deadline_interval"),
        ("capacity_kwh = 10", "agents.battery[1].capacity_kwh"),
    ],
)
def test_a_bad_scenario_exits_2_naming_the_key_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, key: str
) -> None:
    replacement = {
        "agents.pv[0].colour": change + '\ncolour = "blue"',
        "agents.battery[0].round_trip_efficiency": change + "\nround_trip_efficiency = 1.2",
        "agents.data_center[0].jobs[0].deadline_interval": "deadline_interval = -1",
        "agents.battery[1].capacity_kwh": "capacity_kwh = -10",
    }[key]
    text = TOWN.replace(change, replacement, 1)
    assert text != TOWN
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = tmp_path / "out"
    assert simulate("--scenario", str(path), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert key in err
    assert "invalid input" in err
    assert not out.exists()


def test_a_deadline_before_its_release_is_refused(tmp_path: Path) -> None:
    from simulation.scenario import ScenarioError

    text = TOWN.replace(
        "release_interval = 2\ndeadline_interval = 6", "release_interval = 6\ndeadline_interval = 2"
    )
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text)
    assert caught.value.key == "agents.data_center[0].jobs[1].deadline_interval"


def test_api_url_without_rpc_url_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert simulate("--api-url", "http://127.0.0.1:9", "--out", str(out)) == 2
    assert "--api-url needs --rpc-url" in capsys.readouterr().err
    assert not out.exists()


def test_in_process_requests_answer_as_httpx_asgi_transport_does() -> None:
    import asyncio
    import json

    import httpx
    from fastapi import FastAPI, HTTPException

    from simulation.market_api import asgi_request

    app = FastAPI()

    @app.get("/echo")
    async def echo(q: int = 0) -> dict[str, int]:
        return {"q": q}

    @app.post("/things", status_code=201)
    async def create(body: dict[str, int]) -> dict[str, int]:
        if body.get("n", 0) < 0:
            raise HTTPException(409, "negative")
        return {"n": body["n"] * 2}

    async def both(method: str, path: str, body: object) -> None:
        direct = await asgi_request(app, method, path, body)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.request(method, path, json=body)
        assert direct[0] == response.status_code
        assert json.loads(direct[1]) == response.json()

    loop = asyncio.new_event_loop()
    try:
        for method, path, body in [
            ("GET", "/echo?q=7", None),
            ("POST", "/things", {"n": 21}),
            ("POST", "/things", {"n": -1}),
            ("POST", "/things", {"n": "x"}),
            ("GET", "/missing", None),
        ]:
            loop.run_until_complete(both(method, path, body))
        assert loop.run_until_complete(asgi_request(app, "GET", "/echo?q=7"))[0] == 200
    finally:
        loop.close()


def test_after_onboarding_the_markets_clock_is_not_behind_the_chain() -> None:
    """Each set-up transaction mines a block a second later; the market's clock must catch up,
    or a large scenario's first interval has ended on-chain before it is committed."""
    from simulation.agents import build_agents
    from simulation.system import Participant
    from simulation.transactions import local_account

    scenario = parse_scenario(TOWN, source="town.toml")
    system = EmbeddedSystem(scenario)
    try:
        before = system.now()
        agents = build_agents(scenario)
        system.onboard(
            [
                Participant(
                    a.name,
                    local_account(a.participant_private_key),
                    a.meter_address,
                    a.collateral_base_units(),
                )
                for a in agents
            ]
        )
        assert system.chain.timestamp() > before + len(agents)  # set-up moved chain time on
        assert system.now() >= system.chain.timestamp()
    finally:
        system.close()
