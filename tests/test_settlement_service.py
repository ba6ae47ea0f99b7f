"""SettlementService on the embedded chain: intake, batches, deadline, chunks, restarts, faults."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from test_ledger_support import PRICE, MarketEnv, trade
from test_settlement_service_support import SettleEnv, settle_env

from chain.connection import connect
from chain.errors import ChainUnavailable
from chain.rpc import with_retries
from ledger.records import Reading, Trade
from ledger.trade_chain import settlement_chain
from settlement import chunks as chunks_module
from settlement.config import SettlementConfig
from settlement.fees import Fees
from settlement.runner import SettlementRunner
from settlement.store import FAILED, MISSED, OFFCHAIN, ONCHAIN, QUEUED, SETTLED, ReadingStore
from settlement.tx import TxSender


@pytest.fixture(scope="module")
def base() -> MarketEnv:
    return MarketEnv.build(connect(), n_participants=6)


@pytest.fixture
def env(base: MarketEnv, tmp_path: Path) -> Iterator[SettleEnv]:
    yield from settle_env(base, tmp_path)


def four_trades(env: SettleEnv) -> list[Trade]:
    a, b, c, d, e, f = env.participants
    return [
        trade(a, b, 600, n=0),
        trade(c, b, 300, 2 * PRICE, n=1),
        trade(a, d, 100, n=2),
        trade(e, f, 1000, n=3),
    ]


def exported(env: SettleEnv) -> dict[str, int]:
    a, b, _, d, _, f = env.participants
    return {b: 450, d: 100, f: 980, a: 0}


def ring_trades(env: SettleEnv) -> list[Trade]:
    """Each participant sells to the next: six sellers (each also a buyer), so every reading
    goes on-chain."""
    ps = env.participants
    return [trade(ps[i], ps[(i + 1) % len(ps)], 100 + i, n=i) for i in range(len(ps))]


def statuses(env: SettleEnv, t: int, sellers_status: str) -> None:
    """Assert each stored reading of ``t`` has ``sellers_status`` if its participant sold
    in :func:`four_trades` and is kept ``offchain`` if not."""
    sellers = {tr.seller.lower() for tr in four_trades(env)}
    found = {r.participant: r.status for r in env.service.store.readings(t)}
    assert found == {p: sellers_status if p in sellers else OFFCHAIN for p in found}


def reading_events(env: SettleEnv, t: int) -> list[str]:
    event = env.market.ledger.contract.events.ReadingSubmitted
    return [
        str(e["args"]["participant"])
        for e in event.get_logs(from_block=0, argument_filters={"interval": t})
    ]


def settler_receipts_ok(env: SettleEnv) -> list[int]:
    """Status of every journalled transaction the service's account got mined."""
    statuses = []
    for tx in env.service.store.txs():
        if tx.state == "mined":
            receipt = env.chain.w3.eth.get_transaction_receipt(tx.hash)  # type: ignore[arg-type]
            statuses.append(int(receipt["status"]))
    return statuses


def test_accepted_reading_is_durable_before_the_answer_and_costs_no_gas(env: SettleEnv) -> None:
    t = env.commit(four_trades(env))
    env.market.to_reading_window(t)
    nonce, block = env.settler_nonce(), env.chain.w3.eth.block_number
    env.accept(t, {env.p(1): 450})
    reopened = ReadingStore(env.db)
    stored = reopened.get_reading(t, env.p(1).lower())
    assert stored is not None and (stored.status, stored.exported_wh) == (QUEUED, 450)
    assert reopened.pragma("journal_mode") == "wal"
    assert reopened.pragma("synchronous") == 2  # FULL: survives a power cut, not just a kill
    reopened.close()
    assert env.settler_nonce() == nonce
    assert env.chain.w3.eth.block_number == block


def test_readings_go_on_chain_sorted_in_batches_within_the_gas_budget(env: SettleEnv) -> None:
    budget = env.chain.w3.eth.get_block("latest")["gasLimit"] // 300
    service = env.new_service(SettlementConfig(gas_fraction=(1, 300)))
    t = env.commit(ring_trades(env))
    env.market.to_reading_window(t)
    env.accept(t, {p: 10 * i for i, p in enumerate(env.participants)})
    lines = service.tick()
    txs = service.store.txs(t)
    assert len(txs) >= 3, lines  # six readings did not fit one transaction of this budget
    assert all(tx.kind == "readings" and tx.gas_limit <= budget for tx in txs)
    assert all(status == 1 for status in settler_receipts_ok(env))
    assert sorted(reading_events(env, t)) == sorted(env.participants)
    assert {r.status for r in service.store.readings(t)} == {ONCHAIN}
    indices = [env.market.ledger.participant_index(p) for p in reading_events(env, t)]
    assert indices == sorted(indices)  # sorted by participant index: words are shared


def test_settles_in_chunks_only_after_the_deadline_and_each_trade_once(env: SettleEnv) -> None:
    service = env.new_service(SettlementConfig(max_settle_trades=2))
    t = env.commit(four_trades(env))
    assert service.tick() == []  # delivery has not ended: nothing to do
    env.market.to_reading_window(t)
    env.accept(t, exported(env))
    service.tick()
    assert len(reading_events(env, t)) == 3  # the sellers'; buyer a's is kept off-chain
    assert env.market.ledger.interval_info(t).cursor == 0
    assert service.tick() == []  # the window is still open: no settlement yet
    env.market.to_deadline(t)
    lines = service.tick()
    assert env.market.ledger.interval_info(t).status == "settled"
    assert env.trade_settled_indices(t) == [0, 1, 2, 3]
    assert [tx.kind for tx in service.store.txs(t)].count("settle") == 2, lines
    assert service.store.get_interval(t).state == SETTLED  # type: ignore[union-attr]
    env.settle_model(t)
    env.assert_balances_match_model()
    report = service.report(t)
    assert report.ok and report.settled, [c for c in report.checks if not c.ok]
    assert service.tick() == []  # settled intervals are left alone


def test_reading_not_submitted_by_the_deadline_is_missed_and_counts_zero(env: SettleEnv) -> None:
    t = env.commit(four_trades(env))
    env.market.to_reading_window(t)
    env.accept(t, exported(env))
    env.market.to_deadline(t)  # the service never ran during the window
    lines = env.service.tick()
    assert any("missed the deadline" in line for line in lines)
    statuses(env, t, MISSED)
    assert reading_events(env, t) == []
    env.settle_model(t, readings=[])
    env.assert_balances_match_model()


def test_restart_after_a_kill_between_mining_and_marking_repeats_nothing(
    env: SettleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = env.new_service(SettlementConfig(gas_fraction=(1, 300)))
    t = env.commit(ring_trades(env))
    env.market.to_reading_window(t)
    env.accept(t, {p: 10 + i for i, p in enumerate(env.participants)})
    real = service.store.mark_readings

    def crash_on_mark(*args: Any, **kwargs: Any) -> int:
        if args[2] == ONCHAIN and kwargs.get("tx_hash"):
            raise KeyboardInterrupt("killed after the transaction was mined")
        return real(*args, **kwargs)

    monkeypatch.setattr(service.store, "mark_readings", crash_on_mark)
    with pytest.raises(KeyboardInterrupt):
        service.tick()
    first = reading_events(env, t)
    assert 0 < len(first) < 6
    restarted = env.new_service(SettlementConfig(gas_fraction=(1, 300)))
    restarted.tick()
    assert sorted(reading_events(env, t)) == sorted(env.participants)  # each exactly once
    assert all(status == 1 for status in settler_receipts_ok(env))  # no reverted duplicate
    assert {r.status for r in restarted.store.readings(t)} == {ONCHAIN}


def test_restart_after_a_kill_before_the_receipt_was_seen_waits_for_it(
    env: SettleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = env.new_service()
    t = env.commit(four_trades(env))
    env.market.to_reading_window(t)
    env.accept(t, exported(env))

    def crash(*_args: Any) -> None:
        raise KeyboardInterrupt("killed after broadcasting")

    monkeypatch.setattr(TxSender, "_wait", crash)
    with pytest.raises(KeyboardInterrupt):
        service.tick()
    (journalled,) = service.store.txs()
    assert journalled.state == "sent"
    monkeypatch.undo()
    nonce = env.settler_nonce()
    restarted = env.new_service()
    restarted.tick()
    assert env.settler_nonce() == nonce  # the journalled transaction was enough
    (mined,) = restarted.store.txs()
    assert (mined.hash, mined.state) == (journalled.hash, "mined")
    statuses(env, t, ONCHAIN)
    assert len(reading_events(env, t)) == 3


def test_restart_in_the_middle_of_chunked_settlement_resumes_at_the_cursor(
    env: SettleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SettlementConfig(max_settle_trades=1)
    service = env.new_service(config)
    t = env.commit(four_trades(env))
    env.market.to_reading_window(t)
    env.accept(t, exported(env))
    service.tick()
    env.market.to_deadline(t)
    real = service.store.count_tx
    chunks = []

    def crash_on_second_chunk(interval: int, kind: str) -> None:
        if kind == "settle":
            chunks.append(interval)
            if len(chunks) == 2:
                raise KeyboardInterrupt("killed between chunks")
        real(interval, kind)

    monkeypatch.setattr(service.store, "count_tx", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        service.tick()
    assert env.market.ledger.interval_info(t).cursor == 2
    env.new_service(config).tick()
    assert env.trade_settled_indices(t) == [0, 1, 2, 3]
    assert all(status == 1 for status in settler_receipts_ok(env))
    env.settle_model(t)
    env.assert_balances_match_model()


def test_reading_relayed_by_someone_else_is_recognised_without_a_transaction(
    env: SettleEnv,
) -> None:
    t = env.commit(four_trades(env))
    env.market.to_reading_window(t)
    b, d = env.p(1), env.p(3)
    env.accept(t, {b: 450, d: 100})
    relay = env.chain.accounts[7]
    same = env.market.sign(Reading(b, t, 7, 450))
    other = env.market.sign(Reading(d, t, 7, 99))  # the meter signed two readings
    env.market.ledger.submit_readings(t, [same, other], sender=relay)
    nonce = env.settler_nonce()
    env.service.tick()
    assert env.settler_nonce() == nonce
    rb = env.service.store.get_reading(t, b.lower())
    rd = env.service.store.get_reading(t, d.lower())
    assert rb is not None and rb.status == ONCHAIN
    assert rd is not None and rd.status == "superseded" and "exported 99 Wh" in (rd.reason or "")


def test_a_meter_rotated_after_the_commit_keeps_accepted_readings_valid(env: SettleEnv) -> None:
    """The contract checks a reading against the key of its interval's commit: a rotation
    after it cannot turn the seller's accepted reading into a refusal and a penalty."""
    t = env.commit(four_trades(env))
    env.market.to_reading_window(t)
    b, d = env.p(1), env.p(3)
    env.accept(t, {b: 450, d: 100})
    env.market.ledger.rotate_meter(b, Account.create().address)
    lines = env.service.tick()
    assert sorted(reading_events(env, t)) == sorted([b, d]), lines
    assert all(status == 1 for status in settler_receipts_ok(env))


def test_a_permanent_failure_is_recorded_and_the_other_intervals_settle(
    env: SettleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = env.new_service(SettlementConfig(max_settle_trades=2))
    first = env.commit(four_trades(env))
    second = env.commit(four_trades(env)[:2], first + 1)
    env.market.to_deadline(second)
    real = settlement_chain

    def wrong_tail(trades: Any, indices: Any) -> tuple[bytes, ...]:
        heads = list(real(trades, indices))
        if len(trades) == 4:
            heads[2] = b"\x01" * 32  # the first chunk's tail no longer matches the commitment
        return tuple(heads)

    monkeypatch.setattr(chunks_module, "settlement_chain", wrong_tail)
    nonce = env.settler_nonce()
    lines = service.tick()
    row = service.store.get_interval(first)
    assert row is not None and row.state == FAILED and row.error_code == "TradesMismatch"
    assert any(f"interval {first}: FAILED (TradesMismatch)" in line for line in lines)
    assert env.market.ledger.interval_info(first).cursor == 0
    assert env.market.ledger.interval_info(second).status == "settled"
    assert env.settler_nonce() == nonce + 1  # the failed interval cost no gas
    assert service.interval_status(first)["error"]["code"] == "TradesMismatch"
    assert service.tick() == []  # failed intervals wait for an operator
    monkeypatch.undo()
    assert service.retry_failed() == [first]
    service.tick()
    assert env.market.ledger.interval_info(first).status == "settled"


def test_a_paused_market_still_settles(env: SettleEnv) -> None:
    """A pause stops commits and deposits only: it cannot hold a committed interval's locks."""
    t = env.commit(four_trades(env))
    env.market.to_deadline(t)
    env.market.ledger.pause()
    env.service.tick()
    assert env.market.ledger.interval_info(t).status == "settled"
    assert env.service.interval_status(t)["error"] is None


def test_an_interval_without_trades_settles_with_one_empty_chunk(env: SettleEnv) -> None:
    t = env.commit([])
    env.market.to_deadline(t)
    env.service.tick()
    assert env.market.ledger.interval_info(t).status == "settled"
    assert env.service.report(t).ok


def test_transient_errors_are_retried_with_doubling_delays_then_reported() -> None:
    delays: list[float] = []
    calls = iter([requests.ConnectionError("refused"), requests.Timeout("slow"), 42])

    def flaky() -> int:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        assert isinstance(value, int)
        return value

    assert with_retries("testing", flaky, sleep=delays.append, first_delay=0.1) == 42
    assert delays == [0.1, 0.2]
    delays.clear()

    def down() -> int:
        raise requests.ConnectionError("Connection refused")

    with pytest.raises(ChainUnavailable):
        with_retries("testing", down, retries=3, sleep=delays.append, first_delay=0.1)
    assert delays == [0.1, 0.2, 0.4]
    with pytest.raises(ValueError):  # not transient: no retry
        with_retries("testing", lambda: int("x"), sleep=delays.append)


def test_runner_backs_off_while_the_chain_is_down_and_resumes() -> None:
    outcomes: list[Any] = [ChainUnavailable("down"), ChainUnavailable("down"), ["done"]]
    ticks: list[float] = []

    class FakeService:
        stopping = threading.Event()
        on_progress: Any = None

        def tick(self) -> list[str]:
            ticks.append(time.monotonic())
            result = outcomes.pop(0) if outcomes else []
            if isinstance(result, Exception):
                raise result
            for line in result:
                self.on_progress(line)
            return list(result)

    progress: list[str] = []
    runner = SettlementRunner(FakeService(), 0.2, on_progress=progress.append)  # type: ignore[arg-type]
    runner.start()
    deadline = time.monotonic() + 10
    while len(ticks) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop()
    assert progress == ["done"]
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps[1] > 1.5 * gaps[0]  # the second failure waited twice as long
    assert gaps[2] < 0.75 * gaps[1]  # after a good tick the poll period is back


def test_fee_bumps_round_up_and_never_lower_a_fee() -> None:
    fees = Fees(max_fee=1_000_000_001, priority_fee=7)
    bumped = fees.bumped((9, 8))
    assert bumped == Fees(max_fee=1_125_000_002, priority_fee=8)
    assert Fees(max_fee=5, priority_fee=1).at_least(bumped) == bumped
    assert Fees(gas_price=10).bumped((9, 8)) == Fees(gas_price=12)
    assert Fees(max_fee=3, priority_fee=9).at_least(Fees(max_fee=2, priority_fee=1)) == Fees(9, 9)


def test_group_commit_stores_concurrent_readings_and_refuses_only_duplicates(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from settlement.store import DuplicateKey, StoredReading

    store = ReadingStore(tmp_path / "group.db")
    participants = [f"0x{i:040x}" for i in range(120)] + [f"0x{i:040x}" for i in range(0, 120, 6)]

    def insert(p: str) -> str:
        try:
            store.insert_reading(
                StoredReading(3, p, 1, 2, "0x" + "ab" * 65, "0x" + "cd" * 20, 0, 9)
            )
        except DuplicateKey:
            return "duplicate"
        return "stored"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(insert, participants))
    assert outcomes.count("stored") == 120 and outcomes.count("duplicate") == 20
    assert {r.participant for r in ReadingStore(tmp_path / "group.db").readings(3)} == set(
        participants
    )
