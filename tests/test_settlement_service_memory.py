"""SettlementService on the in-memory chain (:class:`settlement.memory_chain.MemoryChain`):
intake refusals, batching, chunking, exactly-once and restarts, without a chain.

The same behaviours are tested on the real contract in ``test_settlement_service.py``; here
each test takes milliseconds, so the edges (a gas budget of one reading, a crash at each
step) are cheap to cover.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address as checksum

from ledger.calldata import settle_chunk_args
from ledger.contract_errors import TradesMismatch
from ledger.eip712 import (
    Domain,
    SignedReading,
    compact_signature,
    reading_digest,
    recover,
    sign_digest,
)
from ledger.errors import RequestError
from ledger.records import Reading, Trade
from ledger.trade_chain import settlement_chain
from market.http.errors import BatchRejected, BatchTooLarge
from settlement import chunks as chunks_module
from settlement.config import SettlementConfig
from settlement.errors import (
    DuplicateReading,
    IntervalSettled,
    MeterMismatch,
    ReadingDeadlinePassed,
    ReadingOutOfBounds,
    ReadingTooEarly,
    SettlementFailed,
    UnknownInterval,
    UnregisteredMeter,
)
from settlement.gas import TX_OVERHEAD_GAS
from settlement.memory_chain import MemoryChain
from settlement.service import SettlementService
from settlement.store import (
    FAILED,
    MISSED,
    OFFCHAIN,
    ONCHAIN,
    QUEUED,
    SETTLED,
    SUPERSEDED,
    ReadingStore,
)

DEPOSIT = 10**24
PRICE = 100_000_000_000_000
_KEYS = itertools.count(1)


def _account() -> LocalAccount:
    account: LocalAccount = Account.from_key(next(_KEYS).to_bytes(32, "big"))
    return account


@dataclass
class Scene:
    """A MemoryChain with ``n`` registered, funded participants (each with a meter key) and
    a settlement service over it on a store in ``tmp``."""

    tmp: Path
    n: int = 6
    config: SettlementConfig = field(default_factory=SettlementConfig)
    chain: MemoryChain = field(default_factory=MemoryChain)
    participants: list[str] = field(default_factory=list)
    meters: dict[str, LocalAccount] = field(default_factory=dict)
    stores: list[ReadingStore] = field(default_factory=list)

    def __post_init__(self) -> None:
        for _ in range(self.n):
            who, meter = _account(), _account()
            self.chain.register(who.address, meter.address, DEPOSIT)
            self.participants.append(who.address)
            self.meters[who.address] = meter
        self.service = self.restart()

    def restart(self, config: SettlementConfig | None = None) -> SettlementService:
        """A new service on the same store file and chain, as after a crash."""
        store = ReadingStore(self.tmp / "settlement.db")
        self.stores.append(store)
        self.service = SettlementService.over(self.chain, store, config or self.config)
        return self.service

    def p(self, i: int) -> str:
        return self.participants[i]

    def commit(self, trades: list[Trade], t: int = 3) -> int:
        self.chain.commit(t, trades)
        return t

    def to_reading_window(self, t: int) -> None:
        self.chain.advance_to(self.chain.window(t)[1])

    def to_deadline(self, t: int) -> None:
        self.chain.advance_to(self.chain.interval(t).deadline)

    def body(
        self, t: int, who: str, exported_wh: int, imported_wh: int = 7, meter: Any = None
    ) -> tuple[dict[str, Any], str]:
        """A ``MeterReading`` message and its signature by ``who``'s meter (or ``meter``)."""
        key = (meter or self.meters[who]).key
        separator = Domain(self.chain.chain_id, self.chain.market).separator
        signature = sign_digest(
            key, reading_digest(separator, Reading(who, t, imported_wh, exported_wh))
        )
        message = {
            "participant": who,
            "interval": t,
            "importedWh": imported_wh,
            "exportedWh": exported_wh,
        }
        return message, signature

    def accept(self, t: int, exported: dict[str, int]) -> None:
        self.service.accept_readings([self.body(t, who, e) for who, e in exported.items()])

    def statuses(self, t: int) -> dict[str, str]:
        return {r.participant: r.status for r in self.service.store.readings(t)}

    def kinds(self, t: int) -> list[tuple[str, int]]:
        """(kind, items) of each mined transaction for ``t``."""
        return [(kind, items) for kind, interval, items in self.chain.transactions if interval == t]

    def settled_indices(self, t: int) -> list[int]:
        return sorted(e.trade_index for e in self.chain.interval_events(t).events.trade_settlements)


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    s = Scene(tmp_path)
    yield s
    for store in s.stores:
        store.close()


def four_trades(s: Scene) -> list[Trade]:
    a, b, c, d, e, f = s.participants
    return [
        Trade(a, b, 600, PRICE),
        Trade(c, b, 300, 2 * PRICE),
        Trade(a, d, 100, PRICE),
        Trade(e, f, 1000, PRICE),
    ]


def exported(s: Scene) -> dict[str, int]:
    a, b, _, d, _, f = s.participants
    return {b: 450, d: 100, f: 980, a: 0}


def sellers(s: Scene) -> set[str]:
    """The sellers of :func:`four_trades`, lower-case: the parties whose readings go on-chain."""
    return {tr.seller.lower() for tr in four_trades(s)}


def expected_statuses(s: Scene, t: int, sellers_status: str) -> dict[str, str]:
    """Each stored reading's status when the sellers' have ``sellers_status`` and the
    others (who sold nothing) are kept off-chain."""
    return {p: sellers_status if p in sellers(s) else OFFCHAIN for p in s.statuses(t)}


# --------------------------------------------------------------------------- intake


def test_intake_refuses_each_bad_reading_with_its_own_error(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    a, b = scene.p(0), scene.p(1)
    with pytest.raises(ReadingTooEarly):
        scene.service.accept_reading(*scene.body(t, b, 1))
    scene.to_reading_window(t)
    stranger = _account()
    refusals: list[tuple[Any, type[RequestError]]] = [
        (scene.body(t - 1, b, 1), UnknownInterval),
        (scene.body(t, stranger.address, 1, meter=stranger), UnregisteredMeter),
        (scene.body(t, b, 1, meter=scene.meters[a]), MeterMismatch),
        (scene.body(t, b, scene.config.max_reading_wh + 1), ReadingOutOfBounds),
    ]
    for item, error in refusals:
        with pytest.raises(error):
            scene.service.accept_reading(*item)
    assert scene.service.store.readings(t) == []
    scene.service.accept_reading(*scene.body(t, b, 1))
    with pytest.raises(DuplicateReading):
        scene.service.accept_reading(*scene.body(t, b, 2))
    scene.to_deadline(t)
    with pytest.raises(ReadingDeadlinePassed):
        scene.service.accept_reading(*scene.body(t, a, 1))
    scene.service.tick()
    with pytest.raises(IntervalSettled):
        scene.service.accept_reading(*scene.body(t, a, 1))
    assert scene.statuses(t) == {b.lower(): MISSED}


def test_a_batch_with_one_bad_reading_stores_none(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    good = [scene.body(t, p, 10) for p in scene.participants[:3]]
    forged = scene.body(t, scene.p(3), 10, meter=scene.meters[scene.p(0)])
    with pytest.raises(BatchRejected) as caught:
        scene.service.accept_readings([*good, forged, good[0]])
    indices = [(e["index"], e["code"]) for e in caught.value.extra["errors"]]
    assert indices == [(3, "meter_mismatch"), (4, "reading_duplicate")]
    assert scene.service.store.readings(t) == []
    with pytest.raises(BatchTooLarge):
        scene.restart(SettlementConfig(max_intake_readings=2)).accept_readings(good)
    assert len(scene.service.accept_readings(good[:2])) == 2


def test_a_reading_already_on_chain_is_a_duplicate(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    _, signature = scene.body(t, scene.p(1), 450)
    reading = Reading(scene.p(1), t, 7, 450)
    r, vs = compact_signature(signature)
    scene.chain.submit_readings(t, [SignedReading(reading, r, vs)], gas_limit=10**6)
    with pytest.raises(DuplicateReading, match="already on-chain"):
        scene.service.accept_reading(*scene.body(t, scene.p(1), 451))


# --------------------------------------------------------------------------- batching


def test_readings_go_on_chain_once_each_in_batches_sorted_by_participant_index(
    scene: Scene,
) -> None:
    budget = scene.chain.block_gas_limit // 300  # 100,000 gas: two readings at 25k assumed
    service = scene.restart(SettlementConfig(gas_fraction=(1, 300)))
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    scene.accept(t, {p: 10 * i for i, p in enumerate(reversed(scene.participants))})
    service.tick()
    assert scene.kinds(t) == [("readings", 2), ("readings", 1)]  # the three sellers'
    assert scene.chain.refused == []
    assert (budget - TX_OVERHEAD_GAS) // 25_000 == 2
    events = scene.chain.submitted_readings(t)
    assert set(events) == sellers(scene)
    order = [scene.chain.participant(e.participant).participant_index for e in events.values()]
    assert order == sorted(order)
    assert scene.statuses(t) == expected_statuses(scene, t, ONCHAIN)
    assert len(scene.statuses(t)) == 6
    assert service.tick() == []  # nothing left to do in the window
    assert len(scene.chain.transactions) == 2


def test_a_batch_that_runs_out_of_gas_is_retried_with_more_gas_per_reading(
    tmp_path: Path,
) -> None:
    scene = Scene(tmp_path, chain=MemoryChain(reading_gas=70_000))
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    scene.accept(t, exported(scene))
    scene.service.tick()
    assert scene.statuses(t) == expected_statuses(scene, t, ONCHAIN)
    assert sum(items for kind, items in scene.kinds(t) if kind == "readings") == 3
    assert scene.service.batcher.gas.ceiling == 120_000  # doubled after running out
    assert scene.chain.refused == [("readings", t, "OutOfGas")]


def _settle_with_every_reading(scene: Scene, readings: dict[int, int]) -> int:
    """Commit :func:`four_trades`, accept a reading of each participant index in
    ``readings`` (exported Wh), and run the service until the interval is settled."""
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    scene.accept(t, {scene.p(i): e for i, e in readings.items()})
    scene.service.tick()
    scene.to_deadline(t)
    scene.service.tick()
    assert scene.chain.interval(t).status == "settled"
    return t


def test_a_pure_buyers_reading_is_kept_published_not_sent_and_settlement_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buyers a, c, e sell nothing: their readings (a's with a PV export) are accepted,
    stored with their meter signatures and published, but not sent on-chain; the interval
    settles exactly as it does with every reading on-chain."""
    readings = {0: 300, 1: 450, 2: 0, 3: 100, 4: 0, 5: 980}
    (tmp_path / "kept").mkdir()
    (tmp_path / "every").mkdir()
    kept = Scene(tmp_path / "kept")
    t = _settle_with_every_reading(kept, readings)
    buyers = {kept.p(i).lower() for i in (0, 2, 4)}
    assert set(kept.chain.submitted_readings(t)) == sellers(kept)
    assert kept.kinds(t)[0] == ("readings", 3)
    published = {r.participant: r for r in kept.service.published_readings(t)}
    assert set(published) == {p.lower() for p in kept.participants}
    separator = Domain(kept.chain.chain_id, kept.chain.market).separator
    for who in buyers:
        r = published[who]
        assert (r.status, r.imported_wh) == (OFFCHAIN, 7)
        digest = reading_digest(separator, Reading(who, t, r.imported_wh, r.exported_wh))
        assert recover(digest, r.signature) == kept.meters[checksum(who)].address.lower()
    assert published[kept.p(0).lower()].exported_wh == 300
    report = kept.service.report(t)
    assert report.ok
    lines = {line.participant: line for line in report.participants}
    assert {w: (lines[w].imported_wh, lines[w].reading_source) for w in buyers} == {
        w: (7, "offchain") for w in buyers
    }
    assert {lines[w].reading_source for w in sellers(kept)} == {"onchain"}

    every = Scene(tmp_path / "every")  # the same interval with every reading on-chain
    monkeypatch.setattr(every.service.batcher, "sellers", lambda _t: None)
    u = _settle_with_every_reading(every, readings)
    assert len(every.chain.submitted_readings(u)) == 6

    def outcome(scene: Scene, t: int) -> tuple[Any, ...]:
        events = scene.chain.interval_events(t).events
        index = {p.lower(): i for i, p in enumerate(scene.participants)}
        return (
            [
                (
                    e.trade_index,
                    e.delivered_wh,
                    e.payment_base_units,
                    e.refund_base_units,
                    e.penalty_base_units,
                )
                for e in events.trade_settlements
            ],
            sorted(
                (index[e.participant.lower()], e.released_base_units, e.credited_base_units)
                for e in events.party_settlements
            ),
        )

    assert outcome(kept, t) == outcome(every, u)
    for s in (kept, every):
        for store in s.stores:
            store.close()


def test_a_party_that_buys_and_sells_is_a_seller_and_its_reading_goes_on_chain(
    scene: Scene,
) -> None:
    a, b, c = scene.participants[:3]
    t = scene.commit([Trade(a, b, 500, PRICE), Trade(b, c, 200, PRICE)])
    scene.to_reading_window(t)
    scene.accept(t, {a: 0, b: 190, c: 0})
    scene.service.tick()
    assert set(scene.chain.submitted_readings(t)) == {b.lower(), c.lower()}
    assert scene.statuses(t) == {a.lower(): OFFCHAIN, b.lower(): ONCHAIN, c.lower(): ONCHAIN}
    scene.to_deadline(t)
    scene.service.tick()
    delivered = [e.delivered_wh for e in scene.chain.interval_events(t).events.trade_settlements]
    assert delivered == [190, 0]


def test_when_the_sellers_cannot_be_read_every_reading_goes_on_chain(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    scene.accept(t, exported(scene))

    def unreadable(t: int) -> Any:
        raise SettlementFailed(t, "trades_unavailable", "calldata cannot be replayed")

    monkeypatch.setattr(scene.chain, "committed_trades", unreadable)
    scene.service.tick()
    assert set(scene.statuses(t).values()) == {ONCHAIN}
    assert len(scene.chain.submitted_readings(t)) == 4


def test_an_offchain_reading_relayed_by_someone_else_is_marked_on_chain(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    a = scene.p(0)
    scene.accept(t, {a: 0})
    scene.service.tick()
    assert scene.statuses(t) == {a.lower(): OFFCHAIN}
    _, signature = scene.body(t, a, 0)
    r, vs = compact_signature(signature)
    scene.chain.submit_readings(t, [SignedReading(Reading(a, t, 7, 0), r, vs)], gas_limit=10**6)
    scene.to_deadline(t)
    scene.service.tick()
    assert scene.statuses(t) == {a.lower(): ONCHAIN}


def test_reading_relayed_by_someone_else_is_marked_without_a_transaction(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    b, d = scene.p(1), scene.p(3)
    scene.accept(t, {b: 450, d: 100})
    relayed = []
    for who, value in ((b, 450), (d, 99)):  # d's meter signed two readings
        _, signature = scene.body(t, who, value)
        relayed.append(SignedReading(Reading(who, t, 7, value), *compact_signature(signature)))
    scene.chain.submit_readings(t, relayed, gas_limit=10**6)
    scene.service.tick()
    assert scene.kinds(t) == [("readings", 2)]  # only the relay's transaction
    rows = {r.participant: r for r in scene.service.store.readings(t)}
    assert rows[b.lower()].status == ONCHAIN
    assert rows[d.lower()].status == SUPERSEDED and "exported 99 Wh" in (
        rows[d.lower()].reason or ""
    )


def test_a_meter_rotated_after_the_commit_keeps_accepted_readings_valid(scene: Scene) -> None:
    """The key of the commit counts (the contract's rule): a rotation after it cannot turn an
    accepted reading into a refused one, and so into a penalty."""
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    b, d = scene.p(1), scene.p(3)
    scene.accept(t, {b: 450, d: 100})
    scene.chain.rotate_meter(b, _account().address)
    lines = scene.service.tick()
    assert scene.statuses(t) == {b.lower(): ONCHAIN, d.lower(): ONCHAIN}, lines
    assert set(scene.chain.submitted_readings(t)) == {b.lower(), d.lower()}


def test_a_participant_deregistered_after_the_commit_still_delivers(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    b, d = scene.p(1), scene.p(3)
    scene.accept(t, {b: 450, d: 100})
    scene.chain.deregister(b)
    scene.service.tick()
    assert scene.statuses(t) == {b.lower(): ONCHAIN, d.lower(): ONCHAIN}


# --------------------------------------------------------------------------- settle chunks


def test_settles_in_chunks_only_after_the_deadline_and_each_trade_once(scene: Scene) -> None:
    service = scene.restart(SettlementConfig(max_settle_trades=3))
    t = scene.commit(four_trades(scene))
    assert service.tick() == []  # delivery has not ended
    scene.to_reading_window(t)
    scene.accept(t, exported(scene))
    service.tick()
    assert service.tick() == []  # the window is open: no settlement yet
    assert scene.chain.interval(t).cursor == 0
    scene.to_deadline(t)
    service.tick()
    assert scene.kinds(t) == [("readings", 3), ("settle", 3), ("settle", 1)]
    assert scene.settled_indices(t) == [0, 1, 2, 3]
    assert scene.chain.interval(t).status == "settled"
    assert service.store.get_interval(t).state == SETTLED  # type: ignore[union-attr]
    assert scene.chain.ledger.intervals[t].exported_wh == {
        p.lower(): e for p, e in exported(scene).items() if p.lower() in sellers(scene)
    }
    report = service.report(t)
    assert report.ok and report.settled, [c for c in report.checks if not c.ok]
    assert service.tick() == []


def test_chunks_fit_the_gas_budget(tmp_path: Path) -> None:
    chain = MemoryChain(block_gas_limit=2 * (TX_OVERHEAD_GAS + 2 * 25_000))
    scene = Scene(tmp_path, chain=chain)
    t = scene.commit(four_trades(scene))
    scene.to_deadline(t)
    scene.service.tick()
    assert scene.kinds(t) == [("settle", 2), ("settle", 2)]
    assert scene.chain.refused == []  # the first chunk was sized right, not shrunk on failing
    assert scene.settled_indices(t) == [0, 1, 2, 3]


def test_reading_not_submitted_by_the_deadline_is_missed_and_counts_zero(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    scene.accept(t, exported(scene))
    scene.to_deadline(t)  # the service never ran during the window
    lines = scene.service.tick()
    assert any("missed the deadline" in line for line in lines)
    assert scene.statuses(t) == expected_statuses(scene, t, MISSED)
    assert scene.chain.submitted_readings(t) == {}
    assert scene.kinds(t) == [("settle", 4)] and scene.chain.refused == []  # none tried late
    assert scene.chain.interval(t).status == "settled"


def test_an_interval_without_trades_settles_with_one_empty_chunk(scene: Scene) -> None:
    t = scene.commit([])
    scene.to_deadline(t)
    scene.service.tick()
    assert scene.kinds(t) == [("settle", 0)]
    assert scene.chain.interval(t).status == "settled"


def test_a_paused_market_still_settles(scene: Scene) -> None:
    """A pause stops commits and deposits; readings and settlement go on (the contract's rule),
    so a pause cannot change a committed interval's outcome or hold its locks."""
    t = scene.commit(four_trades(scene))
    scene.to_deadline(t)
    scene.chain.paused = True
    scene.service.tick()
    assert scene.chain.interval(t).status == "settled"
    assert scene.service.interval_status(t)["error"] is None


def test_a_permanent_failure_is_recorded_and_the_other_intervals_settle(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = scene.restart(SettlementConfig(max_settle_trades=2))
    first = scene.commit(four_trades(scene), 3)
    second = scene.commit(four_trades(scene)[:2], 4)
    scene.to_deadline(second)
    real = settlement_chain

    def wrong_tail(trades: Any, indices: Any) -> tuple[bytes, ...]:
        heads = list(real(trades, indices))
        if len(trades) == 4:
            heads[2] = b"\x01" * 32  # the first chunk's tail no longer matches the commitment
        return tuple(heads)

    monkeypatch.setattr(chunks_module, "settlement_chain", wrong_tail)
    lines = service.tick()
    row = service.store.get_interval(first)
    assert row is not None and (row.state, row.error_code) == (FAILED, "TradesMismatch")
    assert any(f"interval {first}: FAILED (TradesMismatch)" in line for line in lines)
    assert scene.chain.interval(first).cursor == 0
    assert scene.chain.refused == [("settle", first, "TradesMismatch")]
    assert scene.chain.interval(second).status == "settled"
    assert service.tick() == []  # failed intervals wait for an operator
    monkeypatch.undo()
    assert service.retry_failed() == [first]
    service.tick()
    assert scene.settled_indices(first) == [0, 1, 2, 3]


def test_a_chunk_that_does_not_match_the_commitment_is_refused_by_the_chain(
    scene: Scene,
) -> None:
    trades = four_trades(scene)
    t = scene.commit(trades)
    scene.to_deadline(t)
    indices = {p: scene.chain.participant(p).participant_index for p in scene.participants}
    heads = list(settlement_chain(trades, indices))
    heads[2] = b"\x01" * 32
    with pytest.raises(TradesMismatch):
        scene.chain.settle(t, settle_chunk_args(trades, indices, 0, 2, heads), 10**6)
    assert scene.chain.interval(t).cursor == 0


# --------------------------------------------------------------------------- restarts


def test_restart_after_a_kill_between_mining_and_marking_repeats_nothing(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SettlementConfig(gas_fraction=(1, 300))
    service = scene.restart(config)
    t = scene.commit(four_trades(scene))
    scene.to_reading_window(t)
    scene.accept(t, {p: 10 + i for i, p in enumerate(scene.participants)})
    real = service.store.mark_readings

    def crash_on_mark(*args: Any, **kwargs: Any) -> int:
        if args[2] == ONCHAIN and kwargs.get("tx_hash"):
            raise KeyboardInterrupt("killed after the transaction was mined")
        return real(*args, **kwargs)

    monkeypatch.setattr(service.store, "mark_readings", crash_on_mark)
    with pytest.raises(KeyboardInterrupt):
        service.tick()
    assert scene.kinds(t) == [("readings", 2)]
    assert scene.statuses(t) == expected_statuses(scene, t, QUEUED)
    restarted = scene.restart(config)
    restarted.tick()
    assert scene.kinds(t) == [("readings", 2), ("readings", 1)]  # each seller's reading once
    assert scene.chain.refused == []  # nor tried twice
    assert scene.statuses(t) == expected_statuses(scene, t, ONCHAIN)


def test_restart_in_the_middle_of_chunked_settlement_resumes_at_the_cursor(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SettlementConfig(max_settle_trades=1)
    service = scene.restart(config)
    t = scene.commit(four_trades(scene))
    scene.to_deadline(t)
    real = service.store.count_tx
    chunks: list[int] = []

    def crash_on_second_chunk(interval: int, kind: str) -> None:
        if kind == "settle":
            chunks.append(interval)
            if len(chunks) == 2:
                raise KeyboardInterrupt("killed between chunks")
        real(interval, kind)

    monkeypatch.setattr(service.store, "count_tx", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        service.tick()
    assert scene.chain.interval(t).cursor == 2
    scene.restart(config).tick()
    assert scene.settled_indices(t) == [0, 1, 2, 3]
    assert scene.kinds(t) == [("settle", 1)] * 4
    assert scene.chain.refused == []
    assert scene.service.store.get_interval(t).state == SETTLED  # type: ignore[union-attr]


def test_a_restarted_service_finds_intervals_committed_while_it_was_down(scene: Scene) -> None:
    t = scene.commit(four_trades(scene))
    scene.service.tick()
    later = scene.commit(four_trades(scene)[:1], t + 1)
    scene.to_deadline(later)
    scene.restart().tick()
    assert [r.interval for r in scene.service.intervals()] == [t, later]
    assert {r.state for r in scene.service.intervals()} == {SETTLED}
