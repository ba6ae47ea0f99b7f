"""The audit of the meter readings kept off-chain (``readings``, :mod:`audit.checks.readings`).

Only sellers' readings go on-chain; the settlement service publishes every reading it
accepted (``GET /intervals/{t}/readings``). A real market runs on eth-tester (sellers'
readings on-chain, as the settlement service sends them), and the published set is built in
the service's own shape (:func:`settlement.intake.published_reading_json`): the honest set
passes, a forged or altered buyer reading fails, and so does a seller's reading kept
off-chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_audit_support import AuditChain, MarketPlan, Session, run_plan, simple_plan

from audit.checks.readings import Metered
from audit.checks.violations import READINGS
from audit.report import AuditReport
from audit.run import audit_market
from ledger.eip712 import reading_digest, sign_digest
from ledger.records import Reading
from settlement.chain_reader import ChainReader
from settlement.intake import published_reading_json
from settlement.store import OFFCHAIN, ONCHAIN, StoredReading

BUYER_IMPORTS = {0: 2_900, 1: 1_450}
"""The buyers' (participants 0 and 1 of :func:`simple_plan`) imported Wh."""


@pytest.fixture(scope="module")
def base() -> AuditChain:
    return AuditChain()


def run(base: AuditChain, plan: MarketPlan) -> tuple[Session, int]:
    session = base.session()
    committed = run_plan(session, plan)
    assert len(committed) == 1
    return session, committed[0]


@pytest.fixture(scope="module")
def honest(base: AuditChain) -> Iterator[tuple[Session, int]]:
    session, t = run(base, simple_plan(1))
    yield session, t
    session.close()


def entry(
    session: Session, t: int, who: int, imported: int, exported: int, **change: Any
) -> dict[str, Any]:
    """Participant ``who``'s reading signed by its meter key (participant ``signer``'s
    instead when given), as the service publishes it (``offchain`` unless ``status``)."""
    signer = session.base.participants[change.pop("signer", who)]
    reading = Reading(session.address(who), t, imported, exported)
    separator = session.ledger.domain().separator
    stored = StoredReading(
        interval=t,
        participant=session.address(who).lower(),
        imported_wh=imported,
        exported_wh=exported,
        signature=sign_digest(signer.key, reading_digest(separator, reading)),
        meter=signer.address.lower(),
        participant_index=who,
        received_at=0,
        status=change.pop("status", OFFCHAIN),
    )
    return {**published_reading_json(stored), **change}


def published(session: Session, t: int, *buyers: dict[str, Any]) -> dict[int, Any]:
    """The interval's published readings: the sellers' as on-chain (from the chain's
    events) and ``buyers`` (default: the honest buyers' readings, off-chain)."""
    onchain = ChainReader(session.ledger).submitted_readings(t)
    who_of = {session.address(i).lower(): i for i in range(6)}
    entries = [
        entry(session, t, who_of[p], r.imported_wh, r.exported_wh, status=ONCHAIN)
        for p, r in onchain.items()
    ]
    if not buyers:
        buyers = tuple(entry(session, t, i, wh, 0) for i, wh in BUYER_IMPORTS.items())
    return {t: {"interval": t, "readings": [*entries, *buyers]}}


def audit(session: Session, readings: Any = None) -> AuditReport:
    return audit_market(session.chain, session.base.market, session.api, readings=readings)


def readings_messages(report: AuditReport, t: int) -> str:
    return "\n".join(v.message for v in report.violations if (v.interval, v.check) == (t, READINGS))


def test_the_honest_off_chain_set_passes_and_the_imports_come_from_both_sources(
    honest: tuple[Session, int],
) -> None:
    session, t = honest
    report = audit(session, published(session, t))
    assert report.ok, report.violations
    sellers = (2 * 7) + (3 * 7)  # run_plan's imports of sellers 2 and 3, on-chain
    assert report.interval(t).metered == Metered(
        on_chain=2,
        off_chain=2,
        imported_wh=sellers + sum(BUYER_IMPORTS.values()),
        exported_wh=report.interval(t).metered.exported_wh,  # type: ignore[union-attr]
    )
    assert report.interval(t).to_json()["readings"]["offChain"] == 2


def test_a_buyer_reading_signed_by_another_key_fails_the_readings_check(
    honest: tuple[Session, int],
) -> None:
    session, t = honest
    forged = entry(session, t, 0, 10, 0, signer=5)
    report = audit(session, published(session, t, forged))
    assert not report.ok
    assert {v.check for v in report.violations} == {READINGS}
    assert "signed by" in readings_messages(report, t)


def test_a_buyer_reading_altered_after_signing_fails_the_readings_check(
    honest: tuple[Session, int],
) -> None:
    session, t = honest
    altered = {**entry(session, t, 1, 1_450, 0), "importedWh": 145}
    report = audit(session, published(session, t, altered))
    assert "off-chain reading of" in readings_messages(report, t)


def test_a_reading_published_as_on_chain_must_be_the_chains(
    honest: tuple[Session, int],
) -> None:
    session, t = honest
    body = published(session, t)
    seller = next(r for r in body[t]["readings"] if r["onChain"])
    seller["exportedWh"] += 1
    report = audit(session, body)
    assert "published as on-chain" in readings_messages(report, t)


def test_two_readings_of_one_participant_and_a_missing_set_fail(
    honest: tuple[Session, int],
) -> None:
    session, t = honest
    twice = entry(session, t, 0, 10, 0)
    report = audit(session, published(session, t, twice, twice))
    assert "two published readings" in readings_messages(report, t)
    report = audit(session, {})
    assert "no published readings to check" in readings_messages(report, t)


def test_without_a_source_the_off_chain_readings_are_not_checked_and_the_audit_says_so(
    honest: tuple[Session, int],
) -> None:
    session, t = honest
    report = audit(session)
    assert report.ok
    assert any("not checked" in note for note in report.market_notes)
    metered = report.interval(t).metered
    assert metered is not None
    assert (metered.on_chain, metered.off_chain, metered.imported_wh) == (2, 0, 2 * 7 + 3 * 7)


def test_a_sellers_reading_kept_off_chain_fails(base: AuditChain) -> None:
    """Last in the module: its session reverts the chain the ``honest`` run is on."""
    plan = simple_plan(1)
    plan.export_factors = [{2: (1, 1)}]  # seller 3's reading never reaches the chain
    session, t = run(base, plan)
    try:
        kept = entry(session, t, 3, 0, 1_000)
        report = audit(session, published(session, t, kept))
        assert "seller" in readings_messages(report, t)
        assert "kept off-chain" in readings_messages(report, t)
    finally:
        session.close()
