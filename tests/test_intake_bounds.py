"""Bounded, authenticated order intake: what an unsigned or unknown sender can make the market
do, how far one key can split its energy, and when a cancel still counts.

* A batch nobody signed is refused before the chain is read for any of its orders.
* Fresh keys (free to make) reach the chain only within the lookup budget, in total; a
  participant the market knows trades through such a flood untouched.
* ``min_order_wh`` and ``max_orders_per_interval`` bound the trades one key can make of an
  interval, and ``GET /market`` publishes both.
* A cancel at or after its interval's gate closure time is refused like an order, even
  before the gate closure has run.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from market_harness import PRICE, Market, account, make_market, signed

from ledger.addresses import checksum_address
from ledger.errors import WattledgerError
from market.client import AppTransport, OrderSigner
from market.http.app import create_app
from market.http.errors import BatchRejected, IntervalClosed
from market.ledger_port import MemoryLedger
from market.service import MarketConfig

# The attack tests import only what the market had before these bounds, so that they run,
# and fail on what they check, against the code before them; the defaults they rely on are
# written out here and checked against the code by the last test.
DEFAULT_LOOKUPS_PER_SECOND, DEFAULT_LOOKUP_BURST = 20.0, 40
DEFAULT_MIN_ORDER_WH, DEFAULT_MAX_ORDERS_PER_INTERVAL = 10, 16


def refused_code(err: BaseException) -> str:
    assert isinstance(err, WattledgerError)
    return err.code


READS = ("is_registered", "participant", "balances", "balances_of", "participants")
"""The ledger port's reads of a participant."""


def count_reads(ledger: MemoryLedger, delay_seconds: float = 0.0) -> list[tuple[str, Any]]:
    """Record every participant read of ``ledger`` as (method, argument), each taking
    ``delay_seconds`` (a view call on a node costs milliseconds)."""
    calls: list[tuple[str, Any]] = []
    for name in READS:
        original = getattr(ledger, name, None)
        if original is None:  # the code before these bounds had no registry scan
            continue

        def counting(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append((_name, args[0] if args else None))
            if delay_seconds:
                time.sleep(delay_seconds)
            return _original(*args)

        setattr(ledger, name, counting)
    return calls


@contextmanager
def served(m: Market) -> Iterator[httpx.Client]:
    transport = AppTransport(create_app(m.service))
    try:
        with httpx.Client(transport=transport, base_url="http://market.test") as http:
            yield http
    finally:
        transport.close()


def _fresh_address(i: int) -> str:
    return checksum_address("0x" + (0xA11CE000 + i).to_bytes(20, "big").hex())


# --------------------------------------------------------------------------- amplification


def test_a_batch_of_1000_junk_signatures_is_refused_fast_without_one_chain_read(
    tmp_path: Path,
) -> None:
    m = make_market(tmp_path)
    reads = count_reads(m.ledger, delay_seconds=0.01)  # a node's round trip
    forger = OrderSigner(account(666), m.service.domain)
    orders = []
    for i in range(1000):
        body = forger.order(m.t, "buy", 10, PRICE)
        body["order"]["participant"] = _fresh_address(i)  # signed by the forger, not by it
        if i % 2:  # or no signature at all: 65 random bytes
            body["signature"] = "0x" + os.urandom(64).hex() + "1b"
        orders.append(body)
    with served(m) as http:
        start = time.perf_counter()
        answer = http.post("/orders:batch", json={"orders": orders})
        elapsed = time.perf_counter() - start
    assert answer.status_code in (400, 403), answer.text
    problem = answer.json()
    assert problem["code"] == "batch_rejected"
    assert {e["code"] for e in problem["errors"]} <= {
        "signer_mismatch",
        "unverifiable_signature",
        "bad_signature",
    }
    assert len(problem["errors"]) == 1000
    assert reads == []
    # 1,000 reads would take 10 s at 10 ms; refusing is the signature recoveries alone.
    assert elapsed < 5.0, elapsed
    assert m.service.open_order_count() == 0


def test_a_flood_of_fresh_keys_reads_the_chain_within_budget_and_known_participants_trade(
    tmp_path: Path,
) -> None:
    rate, burst = DEFAULT_LOOKUPS_PER_SECOND, DEFAULT_LOOKUP_BURST
    m = make_market(tmp_path)
    domain = m.service.domain
    fresh = [OrderSigner(account(10_000 + i), domain) for i in range(1000)]
    flood = [s.order(m.t, "buy", 10, PRICE) for s in fresh]
    flooders = {s.account.address.lower() for s in fresh}
    alice = m.alice.account.address.lower()
    with served(m) as http:
        assert http.post("/orders", json=m.alice.order(m.t, "buy", 10, PRICE)).status_code == 201
        reads = count_reads(m.ledger)
        carols = []
        answers, alices = [], []
        start = time.monotonic()
        for k in range(0, 1000, 50):
            answers.append(http.post("/orders:batch", json={"orders": flood[k : k + 50]}))
            body = m.alice.order(m.t + 1 + k // 50 % 4, "buy", 10, PRICE)
            alices.append(http.post("/orders", json=body))
            if k == 500:  # a registered participant never seen before, in mid-flood
                carols.append(http.post("/orders", json=m.carol.order(m.t, "sell", 10, 2 * PRICE)))
        for body in flood[:200]:  # the same keys again, one order a request
            answers.append(http.post("/orders", json=body))
        elapsed = time.monotonic() - start
    assert [a.status_code for a in alices] == [201] * 20  # the known participant trades on
    assert [c.status_code for c in carols] == [201]  # and so does a registered newcomer
    carol = m.carol.account.address.lower()
    # Her registration is read again only after a registry event (at most once here: the
    # harness registered its participants after the service started), outside the budget.
    assert len([r for r in reads if r[1] == alice]) <= 1
    floods = [who for name, who in reads if who not in (alice, carol) and name != "participants"]
    assert {str(who).lower() for who in floods} <= flooders
    assert len(floods) <= burst + rate * elapsed + 1, (len(floods), elapsed)
    scans = [name for name, _ in reads if name == "participants"]  # the registry, when spent
    assert len(scans) <= elapsed + 1
    busy = [a for a in answers if a.status_code == 503]
    assert busy, [a.status_code for a in answers]
    for answer in busy:
        assert answer.json()["code"] == "chain_busy"
        assert int(answer.headers["Retry-After"]) >= 1
    assert {a.status_code for a in answers} <= {403, 503}
    assert m.service.open_order_count() == 22


def test_with_the_budget_spent_only_registered_participants_are_read(tmp_path: Path) -> None:
    from market.http.errors import ChainBusy

    m = make_market(tmp_path, config=MarketConfig(lookups_per_second=0.001, lookup_burst=1))
    stranger = OrderSigner(account(4), m.service.domain)
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 10, PRICE)))  # the one lookup
    reads = count_reads(m.ledger)
    with pytest.raises(ChainBusy):
        m.service.submit_order(signed(stranger.order(m.t, "buy", 10, PRICE)))
    # refused without reading it: only the registry was scanned, and it does not name it
    assert reads == [("participants", None)]
    # Bob is registered but never seen: found in the registry, read outside the budget.
    m.service.submit_order(signed(m.bob.order(m.t, "buy", 10, PRICE)))
    m.ledger.register(account(5).address)  # a registry event: every kept registration goes
    m.service.refresh_facts()
    assert m.service.collateral.registered == set()
    m.service.submit_order(signed(m.alice.order(m.t, "buy", 10, PRICE)))  # read, no budget
    assert m.service.collateral.budget.spent == 1


def test_the_lookup_budget_is_a_token_bucket() -> None:
    from market.http.errors import ChainBusy
    from market.lookup_budget import LookupBudget

    now = [100.0]
    budget = LookupBudget(2.0, 3, clock=lambda: now[0])
    assert [budget.try_take() for _ in range(4)] == [True, True, True, False]
    assert budget.retry_after_seconds() == 1
    now[0] += 0.5  # one token back at 2/s
    assert budget.try_take() and not budget.try_take()
    now[0] += 100.0  # never more than the burst
    assert [budget.try_take() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ChainBusy) as refused:
        budget.take("a registration")
    assert refused.value.retry_after_seconds == 1
    assert (budget.spent, budget.refused) == (7, 4)
    slow = LookupBudget(0.1, 1, clock=lambda: now[0])
    slow.try_take()
    assert slow.retry_after_seconds() == 10


# --------------------------------------------------------------------------- splitting


def test_one_key_cannot_split_its_energy_into_many_tiny_trades(tmp_path: Path) -> None:
    m = make_market(tmp_path)
    t = m.t
    tiny = [m.alice.order(t, "buy", 1, PRICE) for _ in range(1000)]
    with pytest.raises(BatchRejected) as refused:
        m.service.submit_orders([signed(b) for b in tiny])
    assert {e["code"] for e in refused.value.extra["errors"]} == {"order_too_small"}
    accepted = 0
    for _ in range(100):
        try:
            m.service.submit_order(signed(m.alice.order(t, "buy", DEFAULT_MIN_ORDER_WH, PRICE)))
            accepted += 1
        except WattledgerError as err:
            assert err.code == "too_many_orders"
    assert accepted == DEFAULT_MAX_ORDERS_PER_INTERVAL
    m.service.submit_order(signed(m.bob.order(t, "sell", 10_000, PRICE)))
    m.close_due(t)
    clearing = m.service.clearing(t).clearing
    assert clearing is not None
    assert len(clearing["trades"]) == DEFAULT_MAX_ORDERS_PER_INTERVAL


def test_the_minimum_order_is_enforced_configurable_and_published(tmp_path: Path) -> None:
    m = make_market(tmp_path)
    with pytest.raises(WattledgerError) as refused:
        m.service.submit_order(signed(m.alice.order(m.t, "buy", DEFAULT_MIN_ORDER_WH - 1, PRICE)))
    assert refused_code(refused.value) == "order_too_small"
    assert str(DEFAULT_MIN_ORDER_WH) in refused.value.message
    m.service.submit_order(signed(m.alice.order(m.t, "buy", DEFAULT_MIN_ORDER_WH, PRICE)))
    (tmp_path / "25").mkdir()
    m25 = make_market(tmp_path / "25", config=MarketConfig(min_order_wh=25))
    with served(m25) as http:
        bounds = http.get("/market").json()["bounds"]
        small = http.post("/orders", json=m25.alice.order(m25.t, "buy", 24, PRICE))
        enough = http.post("/orders", json=m25.alice.order(m25.t, "buy", 25, PRICE))
        schema = http.get("/openapi.json").json()
    assert bounds["minQuantityWh"] == 25
    assert bounds["maxOrdersPerInterval"] == DEFAULT_MAX_ORDERS_PER_INTERVAL
    assert (small.status_code, small.json()["code"]) == (422, "order_too_small")
    assert enough.status_code == 201
    post = schema["paths"]["/orders"]["post"]
    assert "bounds.minQuantityWh" in post["description"]
    assert "order_too_small" in post["responses"]["422"]["x-problem-codes"]
    assert "too_many_orders" in post["responses"]["409"]["x-problem-codes"]
    assert "chain_busy" in post["responses"]["503"]["x-problem-codes"]
    quantity = schema["components"]["schemas"]["OrderMessage"]["properties"]["quantityWh"]
    assert "bounds.minQuantityWh" in quantity["description"]
    number, text = quantity["anyOf"]
    assert number["minimum"] == 25  # the configured minimum, in the schema
    assert re.fullmatch(text["pattern"], "25") and not re.fullmatch(text["pattern"], "24")


def test_the_open_orders_of_one_participant_in_one_interval_are_capped(tmp_path: Path) -> None:
    m = make_market(tmp_path, config=MarketConfig(max_orders_per_interval=3))
    t = m.t
    ids = [m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE))).id for _ in "abc"]
    with pytest.raises(WattledgerError) as refused:
        m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE)))
    assert refused_code(refused.value) == "too_many_orders"
    m.service.submit_order(signed(m.alice.order(t + 1, "buy", 10, PRICE)))  # another interval
    m.service.submit_order(signed(m.bob.order(t, "buy", 10, PRICE)))  # another participant
    m.service.cancel_order(ids[0], signed(m.alice.cancel(ids[0])))  # a cancel frees a place
    m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE)))
    batch = [signed(m.carol.order(t, "buy", 10, PRICE)) for _ in range(4)]  # cumulative
    with pytest.raises(BatchRejected) as refused:
        m.service.submit_orders(batch)
    errors = refused.value.extra["errors"]
    assert [(e["index"], e["code"]) for e in errors] == [(3, "too_many_orders")]
    m.service.submit_orders(batch[:3])
    with served(m) as http:
        over = http.post("/orders", json=m.carol.order(t, "buy", 10, PRICE))
        assert http.get("/market").json()["bounds"]["maxOrdersPerInterval"] == 3
    assert (over.status_code, over.json()["code"]) == (409, "too_many_orders")


# --------------------------------------------------------------------------- cancels


def test_a_cancel_at_gate_closure_time_is_refused_before_the_gate_closure_runs(
    tmp_path: Path,
) -> None:
    m = make_market(tmp_path)
    t = m.t
    early = m.service.submit_order(signed(m.alice.order(t, "buy", 10, PRICE)))
    late = m.service.submit_order(signed(m.alice.order(t, "buy", 20, PRICE)))
    gate = m.service.gate_closure_at(t)
    m.clock.set(gate - 1)
    m.service.cancel_order(early.id, signed(m.alice.cancel(early.id)))  # the last second
    m.clock.set(gate)  # the gate has closed; the closing tick has not run yet
    with pytest.raises(IntervalClosed):
        m.service.cancel_order(late.id, signed(m.alice.cancel(late.id)))
    with served(m) as http:
        answer = http.request(
            "DELETE", f"/orders/{late.id}", json=m.alice.cancel(late.id, expiry=gate + 60)
        )
    assert (answer.status_code, answer.json()["code"]) == (409, "interval_closed")
    assert str(gate) in answer.json()["detail"]
    m.service.tick()
    assert m.service.get_order(late.id).status != "cancelled"


def test_the_defaults_these_tests_assume_are_the_codes() -> None:
    from market import lookup_budget, service

    assert (lookup_budget.DEFAULT_LOOKUPS_PER_SECOND, lookup_budget.DEFAULT_LOOKUP_BURST) == (
        DEFAULT_LOOKUPS_PER_SECOND,
        DEFAULT_LOOKUP_BURST,
    )
    assert (service.DEFAULT_MIN_ORDER_WH, service.DEFAULT_MAX_ORDERS_PER_INTERVAL) == (
        DEFAULT_MIN_ORDER_WH,
        DEFAULT_MAX_ORDERS_PER_INTERVAL,
    )
    config = MarketConfig()
    assert (config.min_order_wh, config.max_orders_per_interval) == (10, 16)
    assert (config.lookups_per_second, config.lookup_burst) == (20.0, 40)
