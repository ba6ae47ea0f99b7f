"""What the market service needs from the on-chain ledger, as a small interface.

The market service sees the EnergyMarket contract only through :class:`Ledger`: who is
registered, free and locked balances, the terms that size a seller's bond, the interval
timing, and ``commitInterval``. :class:`market.chain_ledger.ChainLedger` implements it over
the real contract client; :class:`MemoryLedger` implements it in memory with the same
collateral rule, for fast tests of the service logic. Keeping this interface small keeps the
service free of web3 (only ``market.chain_ledger`` touches ``chain/``, DESIGN §2).

The values that cross it are the contract's own records (:mod:`ledger.records`): ``Terms``,
``Balance`` (``balanceOf``) and ``Trade`` (the struct ``commitInterval`` takes); only what
the contract has no record for is defined here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ledger import eip712 as signing
from ledger.errors import BadSignature, WattledgerError
from ledger.records import Balance, ParticipantInfo, SignedOrder, Terms, Trade


@dataclass(frozen=True, slots=True)
class IntervalTiming:
    """Interval ``t`` covers ``[epoch + t*interval_seconds, epoch + (t+1)*interval_seconds)``."""

    epoch_seconds: int
    interval_seconds: int

    def start(self, interval: int) -> int:
        """Unix time (seconds) at which delivery interval ``interval`` starts."""
        return self.epoch_seconds + interval * self.interval_seconds

    def current(self, now_seconds: int) -> int:
        """The interval that contains ``now_seconds`` (may be negative before the epoch)."""
        return (now_seconds - self.epoch_seconds) // self.interval_seconds


@dataclass(frozen=True, slots=True)
class CommitReceipt:
    """Where an interval's commit landed (None: not known, e.g. a commit found on-chain
    after a restart), and whether it is final (:mod:`chain.finality`): the market publishes
    an interval as committed only once its commit is."""

    tx_hash: str | None
    block_number: int | None
    final: bool = True


class LedgerCallFailed(WattledgerError):
    """Raised when a ledger call of the market service fails (a revert, or the node is down).

    ``revert`` names the contract's custom error when the call reverted with one
    (``InsufficientCollateral``), else None; ``details`` its decoded arguments by field name
    (:mod:`ledger.contract_errors`: ``BadOrderSignature`` has ``order_index`` and
    ``participant``)."""

    code = "ledger_call_failed"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        revert: str | None = None,
        details: Mapping[str, Any] | None = None,
    ):
        super().__init__(message, hint=hint)
        self.revert = revert
        self.details: dict[str, Any] = dict(details or {})


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    """Static facts about the deployment, published by ``GET /market``."""

    chain_id: int
    market_address: str
    token_address: str
    token_symbol: str
    token_decimals: int
    operator: str
    eip712_name: str = "wattledger EnergyMarket"
    eip712_version: str = "1"


@dataclass(frozen=True, slots=True)
class LedgerFacts:
    """What the market states that the chain can change while it runs: the terms the next
    commit snapshots, whether the market is paused, whether the service's operator key holds
    the OPERATOR role, and how many registry events (registrations, meter rotations,
    deregistrations) the ledger has seen, so that caches of registrations can be dropped when
    it grows. ``block_number``: the block they were checked at."""

    terms: Terms
    paused: bool
    operator_active: bool
    registry_changes: int
    block_number: int


class Ledger(Protocol):
    """The on-chain ledger as the market service uses it."""

    def info(self) -> LedgerInfo:
        """Chain id, contract addresses, token and operator."""
        ...

    def timing(self) -> IntervalTiming:
        """The contract's interval timing."""
        ...

    def terms(self) -> Terms:
        """The contract's current terms."""
        ...

    def terms_for(self, interval: int) -> Terms:
        """The terms a commit of ``interval`` snapshots (a terms change applies only to
        intervals that start after its notice)."""
        ...

    def facts(self) -> LedgerFacts:
        """The facts of :class:`LedgerFacts` as the chain holds them now; an implementation
        may keep them until the contract emits an event that changes them."""
        ...

    def is_registered(self, participant: str) -> bool:
        """True when ``participant`` (0x address) is a registered market participant."""
        ...

    def participant(self, participant: str) -> ParticipantInfo:
        """``participantInfo(participant)``: its meter key (the zero address when it was
        never registered), index and whether it is registered now."""
        ...

    def participants(self) -> list[str]:
        """Every address ever registered (``ParticipantRegistered`` events), lower-case; an
        implementation keeps them and reads only the blocks added since the last call."""
        ...

    def register_participant(self, participant: str, meter: str) -> str:
        """``registerParticipant(participant, meter)`` from the account holding
        ``REGISTRAR_ROLE``; return the transaction hash (``0x`` hex) once mined, raise
        LedgerCallFailed when it fails or reverts."""
        ...

    def balances(self, participant: str) -> Balance:
        """Free and locked balances of ``participant``, in token base units."""
        ...

    def balances_of(self, participants: Sequence[str]) -> dict[str, Balance]:
        """Free and locked balances of each of ``participants`` (keyed as given), all read at
        one moment: gate closure reads every party of an interval, and one request for all
        costs what one call each costs for a few."""
        ...

    def balances_at_head(self, participants: Sequence[str]) -> tuple[int, dict[str, Balance]]:
        """:meth:`balances_of`, and the number of the block whose state they were read in:
        a defaulter at commit is named with it (:mod:`market.defaulters`)."""
        ...

    def has_code(self, account: str, block: int) -> bool:
        """Whether ``account`` is a contract account at the end of ``block``: the contract
        checks its orders with ERC-1271 ``isValidSignature`` when their ECDSA signature is
        not its own."""
        ...

    def accepts_signature(self, account: str, digest: bytes, signature: str, block: int) -> bool:
        """Whether ``signature`` over ``digest`` is ``account``'s at the end of ``block``, as
        ``commitInterval`` decides: its ECDSA signature, or, for a contract account, one its
        ``isValidSignature`` accepts within the market's gas cap (``acceptsSignature``).
        A contract account can stop accepting its own orders: a defaulter at commit is then
        named with this block (:mod:`market.defaulters`)."""
        ...

    def committed_root(self, interval: int) -> bytes | None:
        """The book root committed for ``interval`` at the chain's head, or None when not
        committed (a commit a reorganisation dropped is not)."""
        ...

    def final_commit(self, interval: int) -> CommitReceipt | None:
        """``interval``'s commit once it is final (its transaction and block when known),
        None while the final block holds no complete commit of it."""
        ...

    def commit_interval(
        self,
        interval: int,
        book_root: bytes,
        trades: Sequence[Trade],
        orders: Mapping[bytes, SignedOrder],
        *,
        grid_root: bytes = bytes(32),
    ) -> CommitReceipt:
        """Commit ``interval``'s trades, backed by their signed ``orders`` (by order id), and
        book root, and on a grid its ``grid_root`` and the trades' seller prices; raise
        LedgerCallFailed on failure."""
        ...

    def record_grid(self, grid_operator: str, nodes: Mapping[str, str]) -> None:
        """Put the grid operator and the participants' nodes (address -> node id) where the
        audit reads them: on-chain for the contract, nowhere for a memory ledger."""
        ...


@dataclass
class MemoryLedger:
    """An in-memory :class:`Ledger` with the contract's collateral rule, for tests.

    ``commit_interval`` checks each trade against its signed orders (the contract's rule,
    signatures aside), locks ``quantity * price`` of each buyer's free balance and
    ``quantity * penalty`` of each seller's, and refuses the whole commit (changing nothing)
    when any party lacks collateral, like the contract's custom-error revert.
    """

    chain_id: int = 31337
    market_address: str = "0x" + "11" * 20
    token_address: str = "0x" + "22" * 20
    operator: str = "0x" + "33" * 20
    epoch_seconds: int = 1_700_000_000
    interval_seconds: int = 900
    penalty_price_per_wh: int = 500_000_000_000_000
    tolerance_bps: int = 500
    reading_window_seconds: int = 3600
    paused: bool = False
    operator_active: bool = True
    registry_changes: int = 0
    registered: set[str] = field(default_factory=set)
    meters: dict[str, str] = field(default_factory=dict)
    registrations: list[tuple[str, str]] = field(default_factory=list)
    """Every ``register_participant(participant, meter)`` call, in order."""
    fail_registrations: bool = False
    """When set, ``register_participant`` fails as a node that does not answer would."""
    free: dict[str, int] = field(default_factory=dict)
    locked: dict[str, int] = field(default_factory=dict)
    commits: dict[int, tuple[bytes, tuple[Trade, ...]]] = field(default_factory=dict)
    balance_reads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def register(
        self, participant: str, deposit_base_units: int = 0, meter: str | None = None
    ) -> None:
        """Register ``participant`` (its own meter unless ``meter``) and credit
        ``deposit_base_units`` to its free balance."""
        key = participant.lower()
        self.registered.add(key)
        self.meters[key] = (meter or participant).lower()
        self.free[key] = self.free.get(key, 0) + deposit_base_units
        self.registry_changes += 1

    def deregister(self, participant: str) -> None:
        """Deregister ``participant`` (``deregisterParticipant``)."""
        self.registered.discard(participant.lower())
        self.registry_changes += 1

    def set_terms(self, terms: Terms) -> None:
        """Change the terms (``setTerms``)."""
        self.penalty_price_per_wh = terms.penalty_price_per_wh
        self.tolerance_bps = terms.tolerance_bps
        self.reading_window_seconds = terms.reading_window_seconds

    def info(self) -> LedgerInfo:
        return LedgerInfo(
            chain_id=self.chain_id,
            market_address=self.market_address,
            token_address=self.token_address,
            token_symbol="WATT",
            token_decimals=18,
            operator=self.operator,
        )

    def timing(self) -> IntervalTiming:
        return IntervalTiming(self.epoch_seconds, self.interval_seconds)

    def terms(self) -> Terms:
        return Terms(self.penalty_price_per_wh, self.tolerance_bps, self.reading_window_seconds)

    def terms_for(self, interval: int) -> Terms:
        return self.terms()

    def facts(self) -> LedgerFacts:
        facts = (self.paused, self.operator_active, self.registry_changes, len(self.commits))
        return LedgerFacts(self.terms(), *facts)

    def is_registered(self, participant: str) -> bool:
        return participant.lower() in self.registered

    def participant(self, participant: str) -> ParticipantInfo:
        key = participant.lower()
        meter = self.meters.get(key, "0x" + "00" * 20)
        index = sorted(self.meters).index(key) if key in self.meters else 0
        return ParticipantInfo(meter, index, key in self.registered)  # type: ignore[arg-type]

    def participants(self) -> list[str]:
        return list(self.meters)

    def register_participant(self, participant: str, meter: str) -> str:
        with self._lock:
            key = participant.lower()
            if self.fail_registrations:
                raise LedgerCallFailed("registerParticipant: the node did not answer")
            if key in self.registered:
                raise LedgerCallFailed(f"ParticipantAlreadyRegistered({participant})")
            if int(key, 16) == 0 or int(meter, 16) == 0:
                raise LedgerCallFailed("ZeroAddress()")
            self.registrations.append((key, meter.lower()))
            self.register(key, meter=meter)
            return "0x" + len(self.registrations).to_bytes(32, "big").hex()

    def balances(self, participant: str) -> Balance:
        key = participant.lower()
        self.balance_reads += 1
        return Balance(self.free.get(key, 0), self.locked.get(key, 0))

    def balances_of(self, participants: Sequence[str]) -> dict[str, Balance]:
        return {p: self.balances(p) for p in participants}

    def balances_at_head(self, participants: Sequence[str]) -> tuple[int, dict[str, Balance]]:
        """The balances, at the "block" of the last commit (one per commit)."""
        return len(self.commits), self.balances_of(participants)

    def has_code(self, account: str, block: int) -> bool:
        """The memory ledger has no contract accounts."""
        return False

    def accepts_signature(self, account: str, digest: bytes, signature: str, block: int) -> bool:
        """An ECDSA signature of ``account``'s (there are no contract accounts here)."""
        try:
            return signing.recover(digest, signature) == account.lower()
        except BadSignature:
            return False

    def committed_root(self, interval: int) -> bytes | None:
        entry = self.commits.get(interval)
        return entry[0] if entry else None

    def final_commit(self, interval: int) -> CommitReceipt | None:
        """A commit in memory is final at once."""
        if interval not in self.commits:
            return None
        return CommitReceipt(tx_hash="0x" + interval.to_bytes(32, "big").hex(), block_number=None)

    def record_grid(self, grid_operator: str, nodes: Mapping[str, str]) -> None:
        """Nothing to record: a memory ledger has no registry events."""

    def commit_interval(
        self,
        interval: int,
        book_root: bytes,
        trades: Sequence[Trade],
        orders: Mapping[bytes, SignedOrder],
        *,
        grid_root: bytes = bytes(32),
    ) -> CommitReceipt:
        with self._lock:
            if interval in self.commits:
                raise LedgerCallFailed(f"interval {interval} is already committed")
            _check_backing(interval, trades, orders)
            need: dict[str, int] = {}
            for trade in trades:
                buyer, seller = trade.buyer.lower(), trade.seller.lower()
                need[buyer] = need.get(buyer, 0) + trade.quantity_wh * trade.price_per_wh
                bond = trade.quantity_wh * self.penalty_price_per_wh
                need[seller] = need.get(seller, 0) + bond
            for who, amount in need.items():
                if self.free.get(who, 0) < amount:
                    raise LedgerCallFailed(
                        f"InsufficientCollateral({who}, needed {amount}, "
                        f"free {self.free.get(who, 0)})",
                        revert="InsufficientCollateral",
                    )
            for who, amount in need.items():
                self.free[who] -= amount
                self.locked[who] = self.locked.get(who, 0) + amount
            self.commits[interval] = (book_root, tuple(trades))
            return CommitReceipt(
                tx_hash="0x" + interval.to_bytes(32, "big").hex(), block_number=len(self.commits)
            )


def _check_backing(
    interval: int, trades: Sequence[Trade], orders: Mapping[bytes, SignedOrder]
) -> None:
    """The contract's order rule (signatures aside): each trade's buy and sell orders are
    given, of its parties, sides and interval, its price within both limits, and no order
    filled beyond its quantity. LedgerCallFailed naming the revert otherwise."""
    filled: dict[bytes, int] = {}
    for k, trade in enumerate(trades):
        for order_id, party, side in (
            (bytes(trade.buy_order_id), trade.buyer, 0),
            (bytes(trade.sell_order_id), trade.seller, 1),
        ):
            order = orders.get(order_id)
            if (
                order is None
                or order.participant.lower() != party.lower()
                or order.side != side
                or order.interval != interval
            ):
                raise LedgerCallFailed(f"TradeOrderMismatch({k})", revert="TradeOrderMismatch")
            if (side == 0 and trade.price_per_wh > order.price_per_wh) or (
                side == 1 and trade.price_per_wh < order.price_per_wh
            ):
                raise LedgerCallFailed(f"PriceOutsideLimit({k})", revert="PriceOutsideLimit")
            filled[order_id] = filled.get(order_id, 0) + trade.quantity_wh
            if filled[order_id] > order.quantity_wh:
                raise LedgerCallFailed(
                    f"OrderOverfilled(0x{order_id.hex()})", revert="OrderOverfilled"
                )


__all__ = [
    "CommitReceipt",
    "IntervalTiming",
    "Ledger",
    "LedgerCallFailed",
    "LedgerFacts",
    "LedgerInfo",
    "MemoryLedger",
]
