"""The on-chain settlement rules as pure Python: the reference the contract is tested against.

This module mirrors ``contracts/EnergyMarket.sol`` and ``contracts/libraries/SettlementMath.sol``
rule for rule (DESIGN.md section 5). It does no I/O and imports no web3; the differential and
stateful tests run it beside the contract, and the audit re-settles intervals with it.

Units: energy in Wh, money in token base units, prices in base units per Wh, all ``int``.

The rules, per committed trade ``k`` of seller ``s`` (quantity ``q_k``, price ``p_k``):

* **Delivery.** ``D_s = min(S_s, exported_s)`` where ``S_s`` is what ``s`` sold in the interval
  and ``exported_s`` its metered export (0 without a reading).
* **Allocation** (:func:`delivered_wh`). ``D_s`` is split pro-rata to quantity with floor
  division on the seller's cumulative quantity in commit order:
  ``delivered_k = floor((B_k + q_k) * D_s / S_s) - floor(B_k * D_s / S_s)`` with ``B_k`` the
  quantity of the seller's earlier trades. Each trade gets ``floor(q_k * D_s / S_s)`` or one Wh
  more; the floor remainders carry forward in commit order and each whole Wh goes to the trade
  at which it completes, so the shares add up to exactly ``D_s`` and any chunking of settlement
  gives the same result.
* **Payment.** The buyer pays ``delivered_k * p_k`` to the seller; ``(q_k - delivered_k) * p_k``
  returns to the buyer.
* **Penalty** (:func:`penalty_base_units`). With ``shortfall = q_k - delivered_k`` and
  ``tolerance = floor(toleranceBps * q_k / 10_000)``: if ``shortfall > tolerance`` the seller
  pays the whole ``shortfall * penaltyPrice`` from its bond ``q_k * penaltyPrice`` to the
  buyer; the rest of the bond returns to the seller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger.contract_errors import (
    BalanceOverflow,
    ChunkOutOfRange,
    InsufficientCollateral,
    InsufficientFreeBalance,
    IntervalAlreadyCommitted,
    IntervalAlreadySettled,
    IntervalNotCommitted,
    InvalidSellPrice,
    ParticipantNotRegistered,
    ReadingAlreadySubmitted,
    SelfTrade,
    SoldQuantityOverflow,
    ZeroAmount,
    ZeroPrice,
    ZeroQuantity,
)
from ledger.records import Reading, SellerPosition, Terms, Trade, seller_positions

BPS = 10_000
UINT64_MAX = 2**64 - 1
UINT128_MAX = 2**128 - 1


@dataclass(frozen=True)
class TradeOutcome:
    """How one trade settled. Amounts in base units; ``delivered_wh`` in Wh."""

    index: int
    quantity_wh: int
    delivered_wh: int
    payment: int
    refund: int
    penalty: int
    bond: int
    grid_share: int = 0
    """``delivered * (price - sellPrice)``: the grid operator's; 0 off a grid."""

    @property
    def seller_payment(self) -> int:
        """What the seller receives for its delivery: ``delivered * sellPrice``."""
        return self.payment - self.grid_share

    @property
    def bond_released(self) -> int:
        """Part of the seller's bond returned to the seller."""
        return self.bond - self.penalty

    @property
    def shortfall_wh(self) -> int:
        """Contracted but undelivered energy, Wh."""
        return self.quantity_wh - self.delivered_wh


@dataclass(frozen=True)
class BalanceDelta:
    """A party's netted change: ``released`` leaves locked, ``credited`` enters free."""

    released: int
    credited: int


@dataclass(frozen=True)
class IntervalSettlement:
    """The settlement of a run of trades: per-trade outcomes and per-party netted deltas."""

    outcomes: tuple[TradeOutcome, ...]
    deltas: Mapping[str, BalanceDelta]

    @property
    def grid_revenue(self) -> int:
        """Sum of the outcomes' grid shares: what the grid operator is credited."""
        return sum(o.grid_share for o in self.outcomes)


# ------------------------------------------------------------------------- the rules


def delivered_wh(quantity_wh: int, sold_before_wh: int, sold_wh: int, exported_wh: int) -> int:
    """Energy allocated to one of a seller's trades (cumulative floor rule, see module doc).

    Rounds down on the cumulative quantity; the carried remainder goes to later trades of the
    same seller in commit order.
    """
    if exported_wh >= sold_wh:
        return quantity_wh
    return (sold_before_wh + quantity_wh) * exported_wh // sold_wh - (
        sold_before_wh * exported_wh // sold_wh
    )


def tolerance_wh(quantity_wh: int, tolerance_bps: int) -> int:
    """Tolerated shortfall ``floor(tolerance_bps * quantity_wh / 10_000)`` (rounds down)."""
    return quantity_wh * tolerance_bps // BPS


def penalty_base_units(
    quantity_wh: int, delivered: int, tolerance_bps: int, penalty_price_per_wh: int
) -> int:
    """Penalty from the seller's bond to the buyer: the whole shortfall once beyond tolerance."""
    shortfall = quantity_wh - delivered
    if shortfall > tolerance_wh(quantity_wh, tolerance_bps):
        return shortfall * penalty_price_per_wh
    return 0


def collateral_locks(trades: Iterable[Trade], penalty_price_per_wh: int) -> dict[str, int]:
    """What a commit locks per party: buyer payments ``q * price`` plus seller bonds ``q * pp``."""
    locks: dict[str, int] = {}
    for trade in trades:
        locks[trade.buyer] = locks.get(trade.buyer, 0) + trade.quantity_wh * trade.price_per_wh
        locks[trade.seller] = locks.get(trade.seller, 0) + trade.quantity_wh * penalty_price_per_wh
    return locks


def settle_trade(
    index: int,
    trade: Trade,
    position: SellerPosition,
    exported_wh: int,
    terms: Terms,
) -> TradeOutcome:
    """Settle one trade given its seller totals and the seller's exported energy."""
    q = trade.quantity_wh
    delivered = delivered_wh(q, position.sold_before_wh, position.sold_wh, exported_wh)
    return TradeOutcome(
        index=index,
        quantity_wh=q,
        delivered_wh=delivered,
        payment=delivered * trade.price_per_wh,
        refund=(q - delivered) * trade.price_per_wh,
        penalty=penalty_base_units(q, delivered, terms.tolerance_bps, terms.penalty_price_per_wh),
        bond=q * terms.penalty_price_per_wh,
        grid_share=delivered * trade.grid_fee_per_wh,
    )


def settle_range(
    trades: Sequence[Trade],
    exported_wh: Mapping[str, int],
    terms: Terms,
    start: int = 0,
    stop: int | None = None,
) -> IntervalSettlement:
    """Settle trades ``[start, stop)`` of an interval and net the results per party.

    ``exported_wh`` maps a participant to the exported energy of its accepted reading; a
    missing entry counts as 0.
    """
    positions = seller_positions(trades)
    stop = len(trades) if stop is None else stop
    outcomes: list[TradeOutcome] = []
    released: dict[str, int] = {}
    credited: dict[str, int] = {}
    for k in range(start, stop):
        trade = trades[k]
        out = settle_trade(k, trade, positions[k], exported_wh.get(trade.seller, 0), terms)
        outcomes.append(out)
        locked_payment = out.payment + out.refund
        released[trade.buyer] = released.get(trade.buyer, 0) + locked_payment
        credited[trade.buyer] = credited.get(trade.buyer, 0) + out.refund + out.penalty
        released[trade.seller] = released.get(trade.seller, 0) + out.bond
        credited[trade.seller] = (
            credited.get(trade.seller, 0) + out.seller_payment + out.bond_released
        )
    deltas = {p: BalanceDelta(released[p], credited[p]) for p in released}
    return IntervalSettlement(outcomes=tuple(outcomes), deltas=deltas)


def settle_interval(
    trades: Sequence[Trade], readings: Iterable[Reading], terms: Terms
) -> IntervalSettlement:
    """Settle a whole interval from its committed trades, accepted readings and terms."""
    exported = {r.participant: r.exported_wh for r in readings}
    return settle_range(trades, exported, terms)


# ------------------------------------------------------------------------- the ledger


@dataclass
class Balance:
    """A participant's escrow: ``free`` (withdrawable) and ``locked`` by open trades."""

    free: int = 0
    locked: int = 0


@dataclass
class IntervalState:
    """A committed interval as the model keeps it."""

    trades: tuple[Trade, ...]
    terms: Terms
    cursor: int = 0
    exported_wh: dict[str, int] = field(default_factory=dict)
    read: set[str] = field(default_factory=set)
    outcomes: list[TradeOutcome] = field(default_factory=list)
    settled: bool = False
    grid_operator: str | None = None
    """The grid operator snapshotted at commit (only when a trade has a seller price)."""


class Ledger:
    """The market's escrow and interval bookkeeping, without time, signatures or roles.

    Methods raise the same :mod:`ledger.contract_errors` exceptions (with the same arguments)
    as the contract for the same bad input, so a stateful test can compare the two.
    Time windows, signatures and roles are the chain's business and are not modelled.
    """

    def __init__(self) -> None:
        self.balances: dict[str, Balance] = {}
        self.registered: set[str] = set()
        self.intervals: dict[int, IntervalState] = {}
        self.total_escrowed = 0
        self.grid_operator: str | None = None
        """Credited with grid intervals' revenue (the contract's ``setGridOperator``)."""

    def balance(self, participant: str) -> Balance:
        """The participant's balance (a zero balance if it never had one)."""
        return self.balances.setdefault(participant, Balance())

    def register(self, participant: str) -> None:
        """Mark ``participant`` as registered."""
        self.registered.add(participant)

    def deposit(self, participant: str, amount: int) -> None:
        """Credit ``amount`` to the participant's free balance."""
        if amount == 0:
            raise ZeroAmount()
        if participant not in self.registered:
            raise ParticipantNotRegistered(participant)
        bal = self.balance(participant)
        if bal.free + amount > UINT128_MAX:
            raise BalanceOverflow(participant, bal.free + amount)
        bal.free += amount
        self.total_escrowed += amount

    def withdraw(self, participant: str, amount: int) -> None:
        """Debit ``amount`` from the participant's free balance."""
        if amount == 0:
            raise ZeroAmount()
        bal = self.balance(participant)
        if amount > bal.free:
            raise InsufficientFreeBalance(participant, amount, bal.free)
        bal.free -= amount
        self.total_escrowed -= amount

    def commit(self, interval: int, trades: Sequence[Trade], terms: Terms) -> dict[str, int]:
        """Commit an interval: check the trades, lock collateral, snapshot ``terms``.

        Returns the amount locked per party. Checks run in the contract's order: the party
        table (registration, in ascending address order), then each trade, then collateral
        (ascending address order).
        """
        if interval in self.intervals:
            raise IntervalAlreadyCommitted(interval)
        grid = any(t.sell_price_per_wh is not None for t in trades)
        if grid:
            for i, t in enumerate(trades):
                if not 1 <= t.seller_price_per_wh <= t.price_per_wh:
                    raise InvalidSellPrice(i, t.seller_price_per_wh, t.price_per_wh)
        for party in sorted({p for t in trades for p in (t.buyer, t.seller)}, key=_addr_key):
            if party not in self.registered:
                raise ParticipantNotRegistered(party)
        sold: dict[str, int] = {}
        for i, t in enumerate(trades):
            if t.buyer == t.seller:
                raise SelfTrade(i, t.buyer)
            if t.quantity_wh == 0:
                raise ZeroQuantity(i)
            if t.price_per_wh == 0:
                raise ZeroPrice(i)
            sold[t.seller] = sold.get(t.seller, 0) + t.quantity_wh
            if sold[t.seller] > UINT64_MAX:
                raise SoldQuantityOverflow(t.seller)
        locks = collateral_locks(trades, terms.penalty_price_per_wh)
        for party in sorted(locks, key=_addr_key):
            amount = locks[party]
            if amount == 0:
                continue
            bal = self.balance(party)
            if amount > bal.free:
                raise InsufficientCollateral(party, amount, bal.free)
        for party, amount in locks.items():
            bal = self.balance(party)
            bal.free -= amount
            bal.locked += amount
        self.intervals[interval] = IntervalState(
            trades=tuple(trades), terms=terms, grid_operator=self.grid_operator if grid else None
        )
        return {p: a for p, a in locks.items() if a}

    def submit_reading(self, interval: int, reading: Reading) -> None:
        """Accept a reading (signature, registration and window are checked on chain)."""
        state = self.intervals.get(interval)
        if state is None:
            raise IntervalNotCommitted(interval)
        if reading.participant in state.read:
            raise ReadingAlreadySubmitted(interval, reading.participant)
        state.read.add(reading.participant)
        state.exported_wh[reading.participant] = reading.exported_wh

    def settle(self, interval: int, max_trades: int) -> IntervalSettlement:
        """Settle the next ``max_trades`` trades (fewer at the end) and apply the deltas."""
        state = self.intervals.get(interval)
        if state is None:
            raise IntervalNotCommitted(interval)
        if state.settled:
            raise IntervalAlreadySettled(interval)
        count = len(state.trades)
        stop = min(count, state.cursor + max_trades)
        if stop == state.cursor and state.cursor < count:
            raise ChunkOutOfRange(interval, state.cursor, 0, count)
        result = settle_range(state.trades, state.exported_wh, state.terms, state.cursor, stop)
        for party, delta in result.deltas.items():
            bal = self.balance(party)
            if bal.free + delta.credited > UINT128_MAX:
                raise BalanceOverflow(party, bal.free + delta.credited)
        for party, delta in result.deltas.items():
            bal = self.balance(party)
            bal.locked -= delta.released
            bal.free += delta.credited
        revenue = result.grid_revenue
        if revenue:
            operator = state.grid_operator
            if operator is None:
                raise ValueError(f"interval {interval} has grid revenue but no grid operator")
            bal = self.balance(operator)
            if bal.free + revenue > UINT128_MAX:
                raise BalanceOverflow(operator, bal.free + revenue)
            bal.free += revenue
        state.cursor = stop
        state.outcomes.extend(result.outcomes)
        state.settled = stop == count
        return result

    def total_balances(self) -> int:
        """Sum of every free and locked balance (equals ``total_escrowed`` by conservation)."""
        return sum(b.free + b.locked for b in self.balances.values())


def _addr_key(address: str) -> int:
    """Order addresses as the contract does (as 160-bit numbers)."""
    return int(address, 16)
