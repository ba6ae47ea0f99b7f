"""A small in-memory market for simulation tests: reference clearing and settlement.

It drives agents through the same cycle the real driver uses (orders, clearing, fills,
meter, settlement) but with a naive two-pointer clearing (DESIGN §4) and the settlement
rules of DESIGN §5 written out plainly. That lets the agent and report tests run whole days
in a fraction of a second and without a chain, and it is deliberately independent of
``market.clearing`` and ``settlement.model``: the real driver's tests check those.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from simulation.agents import Agent, MarketView, build_agents
from simulation.record import RunRecord, RunRecorder, SettlementRecord
from simulation.scenario import Scenario


@dataclass(frozen=True)
class BookOrder:
    order_id: str
    participant: str
    side: str
    quantity_wh: int
    price_per_wh: int
    seq: int


def clear_reference(
    book: list[BookOrder], mechanism: str = "uniform", k: tuple[int, int] = (1, 2)
) -> tuple[int | None, list[tuple[str, str, int, int]]]:
    """``(uniform price or None, [(buy id, sell id, Wh, price)])`` by a plain two-pointer walk."""
    bids = sorted(
        (o for o in book if o.side == "buy"), key=lambda o: (-o.price_per_wh, o.seq, o.order_id)
    )
    asks = sorted(
        (o for o in book if o.side == "sell"), key=lambda o: (o.price_per_wh, o.seq, o.order_id)
    )
    left_b = [o.quantity_wh for o in bids]
    left_a = [o.quantity_wh for o in asks]
    pairs: list[tuple[int, int, int]] = []
    i = j = 0
    while i < len(bids) and j < len(asks) and bids[i].price_per_wh >= asks[j].price_per_wh:
        q = min(left_b[i], left_a[j])
        pairs.append((i, j, q))
        left_b[i] -= q
        left_a[j] -= q
        if left_b[i] == 0:
            i += 1
        if left_a[j] == 0:
            j += 1
    if not pairs:
        return None, []
    if mechanism == "pay-as-bid":
        return None, [
            (bids[b].order_id, asks[a].order_id, q, bids[b].price_per_wh) for b, a, q in pairs
        ]
    marginal_bid, marginal_ask = bids[pairs[-1][0]], asks[pairs[-1][1]]
    unfilled_bid = next((bids[n] for n in range(len(bids)) if left_b[n]), None)
    unfilled_ask = next((asks[n] for n in range(len(asks)) if left_a[n]), None)
    low = max([marginal_ask.price_per_wh] + ([unfilled_bid.price_per_wh] if unfilled_bid else []))
    high = min([marginal_bid.price_per_wh] + ([unfilled_ask.price_per_wh] if unfilled_ask else []))
    price = low + k[0] * (high - low) // k[1]
    return price, [(bids[b].order_id, asks[a].order_id, q, price) for b, a, q in pairs]


def settle_reference(
    t: int,
    trades: list[tuple[str, str, str, str, int, int]],
    exported: dict[str, int],
    penalty_price_per_wh: int,
    tolerance_bps: int,
) -> list[SettlementRecord]:
    """Settle ``(buy id, sell id, buyer, seller, Wh, price)`` trades of interval ``t``."""
    sold: dict[str, int] = defaultdict(int)
    for _, _, _, seller, q, _ in trades:
        sold[seller] += q
    delivered_of: dict[str, int] = {s: min(q, exported.get(s, 0)) for s, q in sold.items()}
    shares: list[int] = []
    for _, _, _, seller, q, _ in trades:
        shares.append(delivered_of[seller] * q // sold[seller] if sold[seller] else 0)
    remainder = {s: delivered_of[s] for s in sold}
    for n, (_, _, _, seller, _, _) in enumerate(trades):
        remainder[seller] -= shares[n]
    for n, (_, _, _, seller, q, _) in enumerate(trades):
        extra = min(remainder[seller], q - shares[n])
        shares[n] += extra
        remainder[seller] -= extra
    out = []
    for n, (buy_id, sell_id, buyer, seller, q, price) in enumerate(trades):
        delivered = shares[n]
        shortfall = q - delivered
        penalty = shortfall * penalty_price_per_wh if shortfall * 10_000 > q * tolerance_bps else 0
        out.append(
            SettlementRecord(
                t,
                buy_id,
                sell_id,
                buyer,
                seller,
                q,
                delivered,
                price,
                delivered * price,
                shortfall * price,
                penalty,
            )
        )
    return out


def run_offline(scenario: Scenario) -> tuple[RunRecord, list[Agent]]:
    """Run ``scenario`` on the in-memory market; return the record and the agents."""
    sim, market = scenario.simulation, scenario.market
    agents = build_agents(scenario)
    recorder = RunRecorder(scenario, chain="offline reference")
    for agent in agents:
        recorder.add_participant(agent, address=f"0x{agent.name}")
    prices: list[int | None] = []
    seq = 0
    for t in range(sim.intervals):
        view = MarketView(sim.interval_seconds, tuple(prices[-192:]))
        book: list[BookOrder] = []
        for agent in agents:
            for n, intent in enumerate(agent.orders(t, view)):
                order_id = f"t{t}.{agent.name}.{n}"
                recorder.add_order(t, order_id, agent.name, intent)
                book.append(
                    BookOrder(
                        order_id,
                        agent.name,
                        intent.side,
                        intent.quantity_wh,
                        intent.price_per_wh,
                        seq,
                    )
                )
                seq += 1
        price, trades = clear_reference(book, sim.mechanism, sim.k)
        recorder.add_clearing(t, price, trades)
        if trades:
            recorder.mark_committed(t)
        exported: dict[str, int] = {}
        for agent in agents:
            bought, sold = recorder.fills_of(t, agent.name)
            agent.on_fills(t, bought, sold, price)
        for agent in agents:
            sample = agent.meter(t)
            recorder.add_meter(t, agent.name, sample)
            exported[agent.name] = sample.exported_wh
        by_id = {o.order_id: o for o in book}
        rows = [(b, s, by_id[b].participant, by_id[s].participant, q, p) for b, s, q, p in trades]
        if rows:
            recorder.add_settlements(
                settle_reference(
                    t, rows, exported, market.penalty_price_per_wh, market.tolerance_bps
                )
            )
            recorder.mark_settled(t)
        if trades:
            volume = sum(q for _, _, q, _ in trades)
            prices.append(
                price if price is not None else sum(q * p for *_, q, p in trades) // volume
            )
        else:
            prices.append(None)
    return recorder.finish(agents), agents
