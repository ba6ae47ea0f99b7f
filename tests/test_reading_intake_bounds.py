"""Bounded, authenticated reading intake, and the margin before a reading deadline.

* A batch of readings nobody's meter signed is refused before the chain is read at all; a
  participant's meter key is read once, and for participants never seen registered only
  within the lookup budget; a registered meter's reading goes through such a flood.
* Readings signed by another key for a registered participant do not make intake read the
  chain again and again.
* A reading that could not be mined before its interval's reading deadline (within the
  margin) is refused with ``reading_deadline_too_close`` and says when the window closed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from test_settlement_service_memory import Scene, four_trades

from ledger.errors import RequestError, WattledgerError
from market.client import AppTransport
from market.http.errors import BatchRejected
from settlement.api import create_settlement_app
from settlement.config import SettlementConfig
from settlement.errors import MeterMismatch, ReadingDeadlinePassed
from settlement.memory_chain import MemoryChain

# Only what reading intake had before these bounds is imported at the top, so that the
# attack tests run, and fail on what they check, against the code before them; the defaults
# they rely on are written out here and checked against the code below.
LOOKUPS_PER_SECOND, LOOKUP_BURST = 20.0, 40
DEFAULT_MARGIN_SECONDS = 36

CHAIN_READS = ("participant", "window", "interval", "chain_time", "submitted_readings", "now")


def count_reads(chain: MemoryChain) -> list[tuple[str, tuple[Any, ...]]]:
    """Record every read intake can make of ``chain`` as (method, arguments)."""
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for name in CHAIN_READS:
        original = getattr(chain, name)

        def counting(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append((_name, args))
            return _original(*args)

        setattr(chain, name, counting)
    return calls


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    s = Scene(tmp_path)
    yield s
    for store in s.stores:
        store.close()


def test_a_batch_of_1000_junk_readings_is_refused_without_one_chain_read(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    forger = Account.create()
    items = []
    for i in range(1000):
        who = Account.create().address  # a fresh participant each: nothing cached
        message, signature = scene.body(t, who, 10, meter=forger)
        if i % 2:
            signature = "0x" + os.urandom(64).hex() + "1b"
        # the one check without chain that fails: the physical maximum
        message["exportedWh"] = scene.config.max_reading_wh + 1
        items.append((message, signature))
    reads = count_reads(scene.chain)
    start = time.perf_counter()
    with pytest.raises(BatchRejected) as refused:
        scene.service.accept_readings(items)
    elapsed = time.perf_counter() - start
    assert reads == []
    codes = {e["code"] for e in refused.value.extra["errors"]}
    assert codes <= {"reading_out_of_bounds", "unverifiable_signature", "bad_signature"}
    assert len(refused.value.extra["errors"]) == 1000
    assert elapsed < 5.0
    assert scene.service.store.readings(t) == []


def test_a_batch_with_one_bad_signature_reads_no_meter(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    strangers = [Account.create() for _ in range(999)]  # validly signed, nobody registered
    items = [scene.body(t, s.address, 10, meter=s) for s in strangers]
    items.append((items[0][0], "0x" + "ab" * 64 + "1b"))  # and one no key signed
    reads = count_reads(scene.chain)
    with pytest.raises(BatchRejected):
        scene.service.accept_readings(items)
    assert reads == []


def test_a_flood_of_unknown_participants_reads_within_budget_and_registered_meters_pass(
    scene: Scene,
) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    b, d = scene.p(1), scene.p(3)
    scene.service.accept_reading(*scene.body(t, b, 450))  # b's meter is known from now on
    reads = count_reads(scene.chain)
    strangers = [Account.create() for _ in range(1000)]
    flood = [scene.body(t, s.address, 10, meter=s) for s in strangers]
    refusals: dict[str, int] = {}
    start = time.monotonic()
    for k in range(0, 1000, 50):
        try:
            scene.service.accept_readings(flood[k : k + 50])
        except WattledgerError as err:  # batch_rejected, chain_busy
            refusals[err.code] = refusals.get(err.code, 0) + 1
    for item in flood[:100]:
        try:
            scene.service.accept_reading(*item)
        except WattledgerError as err:  # unregistered_meter, chain_busy
            refusals[err.code] = refusals.get(err.code, 0) + 1
    scene.service.accept_reading(*scene.body(t, d, 100))  # registered: read once, accepted
    elapsed = time.monotonic() - start
    meter_reads = [args[0] for name, args in reads if name == "participant"]
    unknown = [who for who in meter_reads if who.lower() != d.lower()]
    assert len(unknown) <= LOOKUP_BURST + LOOKUPS_PER_SECOND * elapsed + 1, (len(unknown), elapsed)
    assert refusals.get("chain_busy", 0) > 0, refusals
    assert b.lower() not in {who.lower() for who in meter_reads}
    assert {r.participant for r in scene.service.store.readings(t)} == {b.lower(), d.lower()}


def test_readings_signed_by_another_key_do_not_reread_a_registered_meter_each_time(
    scene: Scene,
) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    b = scene.p(1)
    forger = Account.create()
    reads = count_reads(scene.chain)
    for _ in range(50):
        with pytest.raises(MeterMismatch):
            scene.service.accept_reading(*scene.body(t, b, 450, meter=forger))
    assert len([1 for name, _ in reads if name == "participant"]) <= 2  # first read, a refresh


def test_a_rotated_meter_is_still_seen_at_once(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    b = scene.p(1)
    scene.service.intake.meter(b)  # cached, and read long enough ago
    scene.service.intake._read_at[b.lower()] -= 60
    fresh = Account.create()
    scene.chain.rotate_meter(b, fresh.address)
    scene.service.accept_reading(*scene.body(t, b, 450, meter=fresh))


# --------------------------------------------------------------------------- the margin


def test_the_default_margin_is_three_blocks_and_never_below_the_minimum() -> None:
    from market.lookup_budget import DEFAULT_LOOKUP_BURST, DEFAULT_LOOKUPS_PER_SECOND
    from settlement.config import (
        DEFAULT_BLOCK_SECONDS,
        MIN_READING_MARGIN_SECONDS,
        default_reading_margin_seconds,
    )

    assert (DEFAULT_LOOKUPS_PER_SECOND, DEFAULT_LOOKUP_BURST) == (LOOKUPS_PER_SECOND, LOOKUP_BURST)
    assert SettlementConfig().reading_margin_seconds == DEFAULT_MARGIN_SECONDS
    assert SettlementConfig().reading_margin_seconds == 3 * DEFAULT_BLOCK_SECONDS == 36
    assert SettlementConfig(block_seconds=2).reading_margin_seconds == MIN_READING_MARGIN_SECONDS
    assert SettlementConfig(block_seconds=20).reading_margin_seconds == 60
    assert SettlementConfig(deadline_margin_seconds=5).reading_margin_seconds == 5
    assert default_reading_margin_seconds(1) == MIN_READING_MARGIN_SECONDS
    with pytest.raises(ValueError):
        SettlementConfig(block_seconds=0)


def test_a_reading_within_the_margin_of_its_deadline_is_refused(tmp_path: Path) -> None:
    s = Scene(tmp_path)
    try:
        t = s.commit(four_trades(s))
        deadline = s.chain.interval(t).deadline
        margin = DEFAULT_MARGIN_SECONDS
        a, b, _, d, _, f = s.participants
        s.chain.advance_to(deadline - margin - 1)
        s.service.accept_reading(*s.body(t, b, 450))  # the last second that is accepted
        s.chain.advance_to(deadline - margin)
        with pytest.raises(RequestError) as close:
            s.service.accept_reading(*s.body(t, d, 100))
        assert close.value.code == "reading_deadline_too_close"
        assert close.value.extra == {
            "deadline": deadline,
            "marginSeconds": margin,
            "acceptedUntil": deadline - margin,
        }
        assert str(deadline) in close.value.message and f"{margin} s" in close.value.message
        s.chain.advance_to(deadline - 1)  # main took this one, and it could not be mined
        transport = AppTransport(create_settlement_app(s.service))
        with httpx.Client(transport=transport, base_url="http://settle.local") as http:
            message, signature = s.body(t, f, 980)
            answer = http.post("/meter-readings", json={"reading": message, "signature": signature})
            overview = http.get("/settlement").json()
        transport.close()
        assert answer.status_code == 409, answer.text
        problem = answer.json()
        assert problem["code"] == "reading_deadline_too_close"
        assert (problem["deadline"], problem["marginSeconds"]) == (deadline, margin)
        assert overview["readingMarginSeconds"] == margin
        s.chain.advance_to(deadline)
        with pytest.raises(ReadingDeadlinePassed) as passed:
            s.service.accept_reading(*s.body(t, a, 0))
        assert passed.value.extra["deadline"] == deadline
    finally:
        for store in s.stores:
            store.close()


def test_the_margin_is_configurable_down_to_none(tmp_path: Path) -> None:
    s = Scene(tmp_path, config=SettlementConfig(deadline_margin_seconds=0))
    try:
        t = s.commit(four_trades(s))
        s.chain.advance_to(s.chain.interval(t).deadline - 1)
        s.service.accept_reading(*s.body(t, s.p(1), 450))
    finally:
        for store in s.stores:
            store.close()
