"""The market service: one façade over order intake, gate closure and the market's views.

:class:`MarketService` is the one place the HTTP API (``market.http.app``) and a simulation
call; a simulation can drive it in-process with a :class:`~market.clock.SimulatedClock`. It
wires the parts, each in its own module, around one lock and one book:

- :mod:`market.signed_messages`: the ``Order``, ``Cancel`` and ``CloseGate`` messages, their
  field checks and canonical JSON;
- :mod:`market.intake`: signatures, nonces, the interval window, self-cross and collateral
  checks, reservation, durable storing of orders and cancels;
- :mod:`market.collateral`: the worst-case lock rule (DESIGN §5) and the cached
  registrations, free balances and terms it is checked against;
- :mod:`market.book`: the open book in memory, with reservations and the intervals closing;
- :mod:`market.gate_closure`: freezing, clearing, publishing and committing an interval,
  retries and recovery;
- :mod:`market.views`: orders, participants, intervals, books and proofs as served;
- :mod:`market.registrar`: registration requests, decided by a
  :mod:`market.registrar_policy` and carried out on-chain;
- :mod:`market.receipts`: the operator's signed receipt of every accepted order and cancel;
- :mod:`market.grid_operator`: in a market that clears on a grid, the grid operator's signed
  documents per interval and the node registry (``grid``: a :class:`GridSetup`).

The service needs the operator's signing key (``operator_key``, the key of the account the
ledger port commits from): it refuses to start without it, or with another account's key
(:class:`~market.receipts.OperatorKeyMismatch`), rather than take orders it cannot give a
receipt for.

The on-chain ledger is reached only through the :class:`~market.ledger_port.Ledger` port, and
the durable state lives in the :class:`~market.store.OrderStore`; at start the service
rebuilds the book, nonces and sequence from the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ledger import eip712 as signing
from ledger.records import Terms
from market.book import OpenBook
from market.clock import Clock
from market.collateral import Collateral
from market.gate_closure import GateClosure, GateSchedule
from market.grid_operator import GridOperator, GridSetup, SignedGrid
from market.http.errors import IntervalClosed, NoGrid, ServiceUnavailable
from market.intake import Authenticated, Intake, Prepared
from market.ledger_port import Ledger, LedgerCallFailed, LedgerFacts, LedgerInfo
from market.lookup_budget import DEFAULT_LOOKUP_BURST, DEFAULT_LOOKUPS_PER_SECOND, LookupBudget
from market.orders import MAX_QUANTITY_WH
from market.receipts import OperatorKeyMismatch, ReceiptSigner
from market.registrar import Registrar
from market.registrar_policy import Decision, RegistrarPolicy, policy_named
from market.signed_messages import SignedMessage, parse_address
from market.store import (
    COMMITTED,
    EMPTY,
    FROZEN,
    IntervalRecord,
    OrderStore,
    StoredOrder,
    StoredRegistration,
    StoreError,
)
from market.views import IntervalView, MarketViews, ParticipantView, Proof

log = logging.getLogger(__name__)

DEFAULT_MIN_ORDER_WH = 10
"""Default smallest order: 10 Wh, 40 W for 15 minutes (a fridge). The neighbourhood
simulation's agents drop orders below the market's minimum rather than be refused."""
DEFAULT_MAX_ORDERS_PER_INTERVAL = 16
"""Default most open orders of one participant in one interval: a stepped curve of a data
center (5 steps) or a VPP (4 tranches) fits with room to spare."""


@dataclass(frozen=True)
class MarketConfig:
    """Market rules that are the service's to choose (the chain fixes the rest).

    ``gate_closure_seconds``: how long before an interval starts its gate closes.
    ``max_ahead_intervals``: how many intervals past the current one accept orders.
    ``mechanism`` and ``k``: passed to :func:`market.clearing.clear`.
    ``max_batch_orders``: most orders in one ``POST /orders:batch``.
    ``registrar_policy``: how ``POST /registrations`` is decided, by name
    (:func:`market.registrar_policy.policy_named`: ``auto``, ``approve`` or ``hold``).
    ``chain_facts_seconds``: how often, at most, the facts the chain can change (terms, pause,
    the operator's role, registrations) are checked for events that change them
    (:meth:`MarketService.refresh_facts`); ``GET /market`` and intake are at most that much
    (plus a request in flight) behind the chain.
    ``min_order_wh``: the smallest order intake takes (the clearing still divides orders
    down to 1 Wh). ``max_orders_per_interval``: most open orders one participant may have in
    one interval. Both bound how many trades one key can make of an interval (order
    splitting); ``GET /market`` publishes them in ``bounds``.
    ``lookups_per_second`` and ``lookup_burst``: the budget of chain reads for participants
    the service has not seen (:mod:`market.lookup_budget`).
    """

    gate_closure_seconds: int = 300
    max_ahead_intervals: int = 96
    mechanism: str = "uniform"
    k: tuple[int, int] = (1, 2)
    max_batch_orders: int = 1000
    registrar_policy: str = "auto"
    chain_facts_seconds: float = 1.0
    min_order_wh: int = DEFAULT_MIN_ORDER_WH
    max_orders_per_interval: int = DEFAULT_MAX_ORDERS_PER_INTERVAL
    lookups_per_second: float = DEFAULT_LOOKUPS_PER_SECOND
    lookup_burst: int = DEFAULT_LOOKUP_BURST

    def __post_init__(self) -> None:
        if not 1 <= self.min_order_wh <= MAX_QUANTITY_WH:
            raise ValueError(f"min_order_wh must be in [1, {MAX_QUANTITY_WH}]")
        if self.max_orders_per_interval < 1:
            raise ValueError("max_orders_per_interval must be at least 1")


class MarketService:
    """Order intake, collateral, gate closure and commit for one market deployment.

    Thread-safe: intake, cancels and gate closure may run concurrently (the API takes
    orders on its event loop while a background thread closes gates).
    """

    def __init__(
        self,
        store: OrderStore,
        ledger: Ledger,
        clock: Clock,
        config: MarketConfig | None = None,
        *,
        operator_key: bytes | str | None,
        registrar_policy: RegistrarPolicy | None = None,
        grid: GridSetup | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.config = config or MarketConfig()
        self.info: LedgerInfo = ledger.info()
        self.timing = ledger.timing()
        lock = self._lock = threading.RLock()
        self.collateral = Collateral(
            ledger,
            lock,
            LookupBudget(self.config.lookups_per_second, self.config.lookup_burst),
        )
        self._facts: LedgerFacts = ledger.facts()
        self.collateral.apply(self._facts)
        self.collateral.follow_registry()
        self._facts_checked = time.monotonic()
        self._facts_refreshing = threading.Lock()
        self.domain = signing.Domain(
            self.info.chain_id,
            self.info.market_address,
            name=self.info.eip712_name,
            version=self.info.eip712_version,
        )
        if operator_key is None:
            raise OperatorKeyMismatch(
                f"no signing key for the operator {self.info.operator}: the market signs a "
                "receipt for every order and cancel it accepts, and does not start without it",
                hint="Pass the private key of the account holding the OPERATOR role.",
            )
        self.receipts = ReceiptSigner(operator_key, self.domain, self.info.operator)
        store.bind_deployment(self.info.chain_id, self.info.market_address)
        self.schedule = GateSchedule(self.timing, self.config.gate_closure_seconds)
        self.book = OpenBook(lock)
        self.grid = (
            None
            if grid is None
            else GridOperator(
                store,
                self.domain,
                grid.address,
                template=grid.template,
                key=grid.key,
                nodes=grid.nodes,
            )
        )
        if self.grid is not None:
            # On-chain for the audit (GRID.md §8): the grid operator credited at settlement
            # and the registrar's node records.
            ledger.record_grid(self.grid.address, dict(grid.nodes) if grid else {})
        self.intake = Intake(
            store,
            clock,
            self.schedule,
            self.book,
            self.collateral,
            self.domain,
            self.info.operator,
            lock,
            receipts=self.receipts,
            max_ahead_intervals=self.config.max_ahead_intervals,
            max_batch_orders=self.config.max_batch_orders,
            min_order_wh=self.config.min_order_wh,
            max_orders_per_interval=self.config.max_orders_per_interval,
            grid=self.grid,
        )
        self.gates = GateClosure(
            store,
            ledger,
            clock,
            self.schedule,
            self.book,
            self.collateral,
            lock,
            mechanism=self.config.mechanism,
            k=self.config.k,
            grid=self.grid,
        )
        self.views = MarketViews(
            store,
            self.book,
            self.collateral,
            self.schedule,
            clock,
            mechanism=self.config.mechanism,
            k=self.config.k,
        )
        self.registrar = Registrar(
            store,
            ledger,
            clock,
            self.domain,
            self.info,
            registrar_policy or policy_named(self.config.registrar_policy, self.info.chain_id),
            self.collateral,
            self.intake.nonces,
            lock,
        )
        self._load()

    def _load(self) -> None:
        """Rebuild the open book and the closed intervals from the store."""
        for state in (FROZEN, COMMITTED, EMPTY):
            self.book.closed.update(self.store.intervals_in_state(state))
        for order in self.store.open_orders():
            lock = self.collateral.lock_base_units(
                order.side, order.quantity_wh, order.price_per_wh
            )
            self.book.add_open(order, lock)
            self.collateral.vouch([order.participant])

    def recover(self) -> list[int]:
        """Finish the commit of every interval left ``frozen``; return those committed."""
        return self.gates.recover()

    # -- time and terms ---------------------------------------------------------------------

    def gate_closure_at(self, interval: int) -> int:
        """Unix time at which ``interval``'s gate closes."""
        return self.schedule.gate_closure_at(interval)

    def current_interval(self) -> int:
        """The interval being delivered now."""
        return self.schedule.current_interval(self.clock.now())

    def terms(self) -> Terms:
        """The terms the next commit snapshots (:meth:`facts`)."""
        return self.facts().terms

    # -- facts the chain can change ---------------------------------------------------------

    def facts_due(self) -> bool:
        """Whether ``chain_facts_seconds`` have passed since the facts were last checked (a
        clock read: the intake path asks on every request)."""
        return time.monotonic() - self._facts_checked >= self.config.chain_facts_seconds

    def refresh_facts(self) -> LedgerFacts:
        """Check the chain's facts now (:meth:`Ledger.facts
        <market.ledger_port.Ledger.facts>`: on the real chain a read of the head and of the
        market's events since the last check, the facts themselves only after an event that
        changes them) and hand them to collateral. One check at a time: a caller that finds
        one running gets the facts as they are. A chain that fails keeps the last facts."""
        if not self._facts_refreshing.acquire(blocking=False):
            return self._facts
        try:
            self._facts_checked = time.monotonic()
            try:
                facts = self.ledger.facts()
            except LedgerCallFailed as err:
                log.warning("reading the chain's terms, pause and roles failed: %s", err)
                return self._facts
            self.collateral.apply(facts)
            self.collateral.follow_registry()  # a scan only after a registry event
            self._facts = facts
            return facts
        finally:
            self._facts_refreshing.release()

    def facts(self) -> LedgerFacts:
        """The chain's terms, pause, operator role and registry changes, checked again when
        ``chain_facts_seconds`` have passed (a chain call only then)."""
        if self.facts_due():
            return self.refresh_facts()
        return self._facts

    # -- intake -----------------------------------------------------------------------------

    def authenticate_orders(self, signed: Sequence[SignedMessage]) -> Authenticated:
        """The checks of ``signed`` that need neither the chain nor the market's state
        (:meth:`Intake.authenticate <market.intake.Intake.authenticate>`)."""
        return self.intake.authenticate(signed)

    def verify_contract_signatures(self, checked: Authenticated) -> None:
        """Ask the chain about the orders of ``checked`` signed for a contract account
        (:meth:`Intake.verify_contract_signatures
        <market.intake.Intake.verify_contract_signatures>`; blocking, for a worker thread)."""
        self.intake.verify_contract_signatures(checked)

    def unknown_participants(self, checked: Authenticated) -> set[str]:
        """Signers of ``checked`` whose registration or free balance has not been read from
        the chain yet (intake would read them, a blocking call, on first sight); none when
        the request is refused anyway."""
        return self.intake.unknown_participants(checked)

    def look_up(self, participants: set[str]) -> None:
        """Read the registration and free balance of ``participants`` from the chain (for a
        worker thread; see :meth:`market.collateral.Collateral.look_up`)."""
        self.collateral.look_up(participants)

    def prepare_orders(
        self, signed: Sequence[SignedMessage], checked: Authenticated | None = None
    ) -> Prepared:
        """Check orders and reserve them, all or nothing (:meth:`Intake.prepare_orders
        <market.intake.Intake.prepare_orders>`)."""
        return self.intake.prepare_orders(signed, checked)

    def commit_prepared(self, batches: Sequence[Prepared]) -> None:
        """Store the orders of ``batches`` in one durable transaction and open them."""
        self.intake.commit_prepared(batches)

    def abort_prepared(self, batches: Sequence[Prepared]) -> None:
        """Release the reservations of prepared batches that will not be stored."""
        self.intake.abort_prepared(batches)

    def submit_orders(self, signed: Sequence[SignedMessage]) -> list[StoredOrder]:
        """Check, store durably and open ``signed`` orders (all or nothing)."""
        if self.facts_due():
            self.refresh_facts()
        prepared = self.intake.prepare_orders(signed)
        self.intake.commit_prepared([prepared])
        return prepared.orders

    def submit_order(self, signed: SignedMessage) -> StoredOrder:
        """Check, store durably and open one signed order."""
        return self.submit_orders([signed])[0]

    def cancel_order(self, order_id: str, signed: SignedMessage) -> StoredOrder:
        """Cancel an open order with its participant's signed ``Cancel`` message."""
        return self.intake.cancel_order(order_id, signed)

    # -- registrations ----------------------------------------------------------------------

    def register(self, signed: SignedMessage) -> StoredRegistration:
        """Check and carry out a signed ``Registration`` request (:meth:`Registrar.submit
        <market.registrar.Registrar.submit>`): ``registered`` or ``pending``, else raised."""
        return self.registrar.submit(signed)

    def registration(self, participant: str) -> StoredRegistration:
        """``participant``'s latest registration request; RegistrationNotFound if none."""
        return self.registrar.status(parse_address(participant, "participant"))

    def decide_registration(self, participant: str, decision: Decision) -> StoredRegistration:
        """The registrar's decision on a held request (:meth:`Registrar.decide
        <market.registrar.Registrar.decide>`)."""
        return self.registrar.decide(participant, decision)

    # -- the grid ---------------------------------------------------------------------------

    def publish_grid(self, interval: int, document: bytes, signature: str) -> SignedGrid:
        """Take the grid operator's signed document for ``interval`` (``PUT
        /intervals/{t}/grid``): its signature first (BadSignature, ``not_grid_operator``),
        then the bytes (InvalidGridDocument), then the gate, which must still be open
        (IntervalClosed: the document is frozen at gate closure). NoGrid in a market that
        clears on no grid."""
        grid = self._grid()
        checked = grid.check_document(interval, document, signature)
        with self._lock:
            # Under the market's lock: gate closure marks the interval closing under it
            # before it freezes the document, so none is stored after that.
            now = self.clock.now()
            closes = self.schedule.gate_closure_at(interval)
            if interval in self.book.closed or interval in self.book.closing or now >= closes:
                raise IntervalClosed(
                    f"interval {interval}: its gate closed at {closes}; the grid document in "
                    "force then is frozen"
                )
            if self.store.get_interval(interval) is not None:
                raise IntervalClosed(f"interval {interval}: its gate has closed")
            try:
                grid.store(checked, now)
            except StoreError as err:
                raise ServiceUnavailable(f"the order store failed: {err.message}") from None
        log.info("interval %d: grid document %s published", interval, checked.grid_root_hex)
        return checked

    def grid_document(self, interval: int) -> SignedGrid:
        """The grid document in force for ``interval`` (published, frozen or the default);
        NoGrid when the market clears on no grid or the interval has none."""
        document = self._grid().document(interval)
        if document is None:
            raise NoGrid(f"interval {interval}: the grid operator has published no document")
        return document

    def record_node(self, participant: str, node: str) -> None:
        """The registrar records ``participant``'s grid node (NoGrid without a grid)."""
        grid = self._grid()
        who = parse_address(participant, "participant")
        grid.record_node(who, node)
        self.ledger.record_grid(grid.address, {who: node})

    def _grid(self) -> GridOperator:
        if self.grid is None:
            raise NoGrid("this market clears on no grid (one node, 'root')")
        return self.grid

    # -- reading ----------------------------------------------------------------------------

    def get_order(self, order_id: str) -> StoredOrder:
        """The order with id ``order_id`` (its EIP-712 hash); OrderNotFound if none."""
        return self.views.get_order(order_id)

    def participant(self, address: str) -> ParticipantView:
        """Balances read from the chain now, and what open orders reserve."""
        return self.views.participant(address)

    def participant_orders(
        self, address: str, status: str | None = None, interval: int | None = None
    ) -> list[StoredOrder]:
        """Every order of ``address`` (any status unless filtered) in arrival order."""
        return self.views.participant_orders(address, status, interval)

    def interval(self, interval: int) -> IntervalView:
        """Gate closure state of ``interval``: ``open``, ``closing``, ``frozen``, ``empty``
        or ``committed``."""
        return self.views.interval(interval)

    def book_orders(self, interval: int) -> list[StoredOrder]:
        """The orders behind ``interval``'s depth: open ones, or the frozen book once closed."""
        return self.views.book_orders(interval)

    def published_orders(self, interval: int) -> tuple[IntervalRecord, list[StoredOrder]]:
        """The frozen signed order set of a closed interval; IntervalNotClosed before."""
        return self.views.published_orders(interval)

    def published_cancels(self, interval: int) -> list[StoredOrder]:
        """The orders of a closed interval cancelled before its gate closed."""
        return self.views.published_cancels(interval)

    def published_refusals(self, interval: int) -> list[tuple[StoredOrder, str]]:
        """The orders of a closed interval left out at gate closure, with the reason."""
        return self.views.published_refusals(interval)

    def clearing(self, interval: int) -> IntervalRecord:
        """The stored clearing of a closed interval; IntervalNotClosed before."""
        return self.views.clearing(interval)

    def proof(self, order_id: str) -> Proof:
        """The Merkle inclusion proof of an order in its interval's committed book."""
        return self.views.proof(order_id)

    def open_order_count(self) -> int:
        """Number of open orders."""
        return self.views.open_order_count()

    # -- gate closure -----------------------------------------------------------------------

    def due_intervals(self) -> list[int]:
        """Intervals with open orders whose gate closure time has come."""
        return self.gates.due_intervals()

    def tick(self) -> list[int]:
        """Check the chain's facts when due, close every due interval and retry unfinished
        commits; return intervals closed."""
        if self.facts_due():
            self.refresh_facts()
        return self.gates.tick()

    def close_gate(self, interval: int, *, early: bool = False) -> IntervalRecord:
        """Freeze, publish, clear and commit ``interval``; return its stored record
        (:meth:`GateClosure.close_gate <market.gate_closure.GateClosure.close_gate>`)."""
        return self.gates.close_gate(interval, early=early)

    def operator_close_gate(self, interval: int, signed: SignedMessage) -> IntervalRecord:
        """Close ``interval`` now, on a ``CloseGate`` message signed by the operator key."""
        self.intake.accept_close_gate(interval, signed)
        return self.gates.close_gate(interval, early=True)


__all__ = [
    "DEFAULT_MAX_ORDERS_PER_INTERVAL",
    "DEFAULT_MIN_ORDER_WH",
    "MarketConfig",
    "MarketService",
]
