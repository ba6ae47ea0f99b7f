"""Reorganisations on anvil: a commit, a reading batch and a settle chunk each dropped at the
worst moment, and nothing lost or doubled.

The market and the settlement service run with finality at depth 2 (``--confirmations 2``)
on a real node. Each test drops one kind of transaction with ``anvil_reorg`` right after the
service that sent it saw it mined, before it is final: the moment the service would have
marked the step done if it took a mined transaction as done. The service must find the step
missing at the head, send it again once, and mark it done only once it is final. Afterwards
every event is on-chain exactly once (one ``IntervalCommitted``, one ``ReadingSubmitted``
per meter, each trade settled once, one ``IntervalSettled``), no balance is locked, the
escrow adds up (``totalEscrowed`` is the token balance and the deposits), and the audit of
the whole market passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_audit_support import DEPOSIT, PARTICIPANTS, PRICE, AuditChain, Session

from audit.run import audit_market
from chain.client import LedgerClient
from chain.connection import Chain
from chain.finality import Finality
from market.client import OrderSigner
from market.store import COMMITTED, FROZEN
from settlement.chain_reader import ChainReader
from settlement.config import SettlementConfig
from settlement.service import SettlementService
from settlement.store import ONCHAIN, QUEUED, SETTLED, ReadingStore
from settlement.tx import TxPolicy, TxSender

pytestmark = pytest.mark.anvil

DEPTH = 2
"""Confirmations the services wait for."""
SELLERS = (0, 1, 2)
BUYERS = (3, 4, 5)


@dataclass
class Reorgs:
    """A market session and a settlement service on anvil, with finality at :data:`DEPTH`."""

    chain: Chain
    session: Session
    settlement: SettlementService

    @property
    def ledger(self) -> LedgerClient:
        return self.session.ledger

    def reorg(self, depth: int = 1) -> None:
        """Replace the last ``depth`` blocks with empty ones (the chain keeps its height)."""
        reply = self.chain.w3.provider.make_request("anvil_reorg", [depth, []])  # type: ignore[arg-type]
        assert "error" not in reply, reply

    def finalise(self) -> None:
        """Mine enough blocks on top for everything mined so far to be final."""
        self.chain.mine(DEPTH)

    def events(self, name: str, t: int) -> list[Any]:
        event = getattr(self.ledger.contract.events, name)
        return list(event.get_logs(from_block=0, argument_filters={"interval": t}))

    def commit(self) -> int:
        """Three sellers and three buyers, crossing: an interval of three trades, committed
        and final."""
        s = self.session
        t = s.next_interval()
        for i, who in enumerate(SELLERS):
            assert s.submit(t, who, "sell", 1_000 + 100 * i, PRICE - 10 * i)
        for i, who in enumerate(BUYERS):
            assert s.submit(t, who, "buy", 1_000 + 100 * i, PRICE + 10 * i)
        s.close_gate(t)
        return t

    def accept_readings(self, t: int) -> None:
        """Every seller's meter reading, through the settlement service's intake."""
        domain = self.ledger.domain()
        for who in SELLERS:
            account = self.session.base.participants[who]
            body = OrderSigner(account, domain).reading(str(account.address), t, 0, 900 + who)
            self.settlement.accept_reading(body["reading"], body["signature"])

    def audit_passes(self) -> None:
        report = audit_market(self.chain, self.session.base.market, self.session.api)
        assert report.ok, "\n".join(report.lines())

    def assert_nothing_lost_or_doubled(self, t: int) -> None:
        trades = self.ledger.committed_trades(t)
        assert len(self.events("IntervalCommitted", t)) == 1
        readings = self.events("ReadingSubmitted", t)
        assert sorted(str(e["args"]["participant"]) for e in readings) == sorted(
            str(self.session.base.participants[w].address) for w in SELLERS
        )
        settled = sorted(int(e["args"]["tradeIndex"]) for e in self.events("TradeSettled", t))
        assert settled == list(range(len(trades)))
        assert len(self.events("IntervalSettled", t)) == 1
        info = self.ledger.interval_info(t)
        assert (info.status, info.cursor) == ("settled", len(trades))
        balances = [self.ledger.balance_of(p.address) for p in self.session.base.participants]
        assert all(b.locked == 0 for b in balances)
        total = self.ledger.total_escrowed()
        assert total == sum(b.free for b in balances) == PARTICIPANTS * DEPOSIT
        assert total == int(self.ledger.token.functions.balanceOf(self.ledger.address).call())
        row = self.settlement.store.get_interval(t)
        assert row is not None and row.state == SETTLED
        assert self.settlement.store.reading_counts(t).get(ONCHAIN) == len(SELLERS)
        self.audit_passes()

    def read_and_settle(self, t: int) -> None:
        """Readings on-chain, then settlement past the deadline, each made final."""
        self.session.to_reading_window([t])
        self.accept_readings(t)
        self.settlement.tick()
        self.finalise()
        self.settlement.tick()
        self.session.past_deadlines([t])
        self.settlement.tick()
        self.finalise()
        self.settlement.tick()


@pytest.fixture
def reorgs(anvil_chain: Chain, tmp_path: Path) -> Iterator[Reorgs]:
    anvil_chain.finality = Finality(confirmations=DEPTH)
    base = AuditChain(anvil_chain)
    with base.session() as session:
        reader = ChainReader(session.ledger, sleep=lambda _s: None)
        store = ReadingStore(tmp_path / "settlement.db")
        sender = TxSender(
            reader,
            anvil_chain.signers[-1],
            store,
            TxPolicy(receipt_timeout_seconds=5.0, poll_seconds=0.02),
        )
        config = SettlementConfig(max_batch_readings=2, max_settle_trades=1)
        service = SettlementService(reader, store, sender, config)
        yield Reorgs(anvil_chain, session, service)
        store.close()


def test_a_dropped_commit_is_sent_again_and_published_only_once_final(reorgs: Reorgs) -> None:
    t = reorgs.commit()
    store = reorgs.session.service.store
    assert reorgs.ledger.interval_info(t).status == "committed"
    record = store.get_interval(t)
    assert record is not None and record.state == FROZEN  # mined, not final: not published
    assert reorgs.session.api.clearing(t)["commit"] is None
    reorgs.reorg(1)  # the worst moment: mined and seen, not final
    assert reorgs.ledger.interval_info(t).status == "none"
    reorgs.session.service.tick()  # finds it missing at the head: sends it again
    assert reorgs.ledger.interval_info(t).status == "committed"
    record = store.get_interval(t)
    assert record is not None and record.state == FROZEN
    reorgs.finalise()
    reorgs.session.service.tick()
    record = store.get_interval(t)
    assert record is not None and record.state == COMMITTED
    commit = reorgs.session.api.clearing(t)["commit"]
    (event,) = reorgs.events("IntervalCommitted", t)
    assert commit == {
        "txHash": "0x" + bytes(event["transactionHash"]).hex().removeprefix("0x"),
        "blockNumber": event["blockNumber"],
    }
    reorgs.read_and_settle(t)
    reorgs.assert_nothing_lost_or_doubled(t)


def test_a_dropped_reading_batch_is_sent_again_once(reorgs: Reorgs) -> None:
    t = reorgs.commit()
    reorgs.finalise()
    reorgs.session.service.tick()
    reorgs.session.to_reading_window([t])
    reorgs.accept_readings(t)
    reorgs.settlement.tick()  # two batches (2 + 1 readings), the last one in the head block
    assert len(reorgs.events("ReadingSubmitted", t)) == len(SELLERS)
    assert reorgs.settlement.store.reading_counts(t).get(QUEUED) == len(SELLERS)  # not final
    reorgs.reorg(1)  # drops the last batch
    assert len(reorgs.events("ReadingSubmitted", t)) == len(SELLERS) - 1
    reorgs.settlement.tick()  # sends the dropped reading again, and nothing else
    assert len(reorgs.events("ReadingSubmitted", t)) == len(SELLERS)
    reorgs.finalise()
    reorgs.settlement.tick()
    assert reorgs.settlement.store.reading_counts(t).get(ONCHAIN) == len(SELLERS)
    reorgs.session.past_deadlines([t])
    reorgs.settlement.tick()
    reorgs.finalise()
    reorgs.settlement.tick()
    reorgs.assert_nothing_lost_or_doubled(t)


def test_a_dropped_settle_chunk_is_sent_again_once(reorgs: Reorgs) -> None:
    t = reorgs.commit()
    reorgs.finalise()
    reorgs.session.service.tick()
    reorgs.session.to_reading_window([t])
    reorgs.accept_readings(t)
    reorgs.settlement.tick()
    reorgs.finalise()
    reorgs.settlement.tick()
    reorgs.session.past_deadlines([t])
    reorgs.settlement.tick()  # one chunk per trade; the last leaves the interval Settled
    assert reorgs.ledger.interval_info(t).status == "settled"
    row = reorgs.settlement.store.get_interval(t)
    assert row is not None and row.state != SETTLED  # settled at the head, not final
    reorgs.reorg(2)  # drops the last two chunks: Settled at the head no more
    info = reorgs.ledger.interval_info(t)
    assert (info.status, info.cursor) == ("committed", 1)
    reorgs.settlement.tick()  # sends the two chunks again from the cursor
    assert reorgs.ledger.interval_info(t).status == "settled"
    reorgs.finalise()
    reorgs.settlement.tick()
    reorgs.assert_nothing_lost_or_doubled(t)
