"""The market service's :class:`~market.ledger_port.Ledger` over the real EnergyMarket.

:class:`ChainLedger` adapts :class:`chain.client.LedgerClient` to the small interface the
market service uses, so the rest of ``market/`` stays free of web3 (DESIGN §2). The client
already speaks in the contract's records (:mod:`ledger.records`), and so does the port: terms,
balances and trades pass through unchanged. Every failure of a call, a revert decoded by the
client or a node that does not answer, becomes :class:`~market.ledger_port.LedgerCallFailed`,
which the service treats as "retry later".

Calls are serialised with a lock: the service calls from its event loop (a participant seen
for the first time) and from the gate-closure thread, and the embedded eth-tester chain is
not safe to use from two threads at once.

Gate closure reads the balances of every party of an interval at once
(:meth:`ChainLedger.balances_of`): one ``balancesOf(address[])`` view call per thousand
addresses, all at one block (:meth:`~chain.client.LedgerClient.balances_of`). A call per
party was most of a gate closure (on eth-tester about 5 ms a call, a second per interval for
200 parties); a batch of ``balanceOf`` calls still ran one EVM message, or one JSON-RPC
request of a batch, per party, and balancesOf runs one for them all.

The facts ``GET /market`` states and intake checks against (terms, pause, the operator's
role, registrations) are kept (:meth:`ChainLedger.facts`) and read again only when the
contract emitted an event that changes them (:data:`FACT_EVENTS`): each call reads the head's
number, and the market's logs of the blocks added since the last call (none when no block
was added); the caller decides how often to call (:class:`market.service.MarketService`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from chain.canonical import TxFate, final_block, tx_fate
from chain.client import LedgerClient
from ledger import eip712 as signing
from ledger.addresses import checksum_address
from ledger.contract_errors import LedgerError, ParticipantNotRegistered
from ledger.eip712 import DOMAIN_NAME, DOMAIN_VERSION
from ledger.errors import BadSignature
from ledger.events import ParticipantRegistered
from ledger.grid_nodes import node_hash
from ledger.records import Balance, ParticipantInfo, SignedOrder, Terms, Trade
from ledger.roles import OPERATOR_ROLE
from market.ledger_port import (
    CommitReceipt,
    IntervalTiming,
    LedgerCallFailed,
    LedgerFacts,
    LedgerInfo,
)

T = TypeVar("T")

FACT_EVENTS = ("TermsChanged", "RoleGranted", "RoleRevoked", "Paused", "Unpaused")
"""Events after which :meth:`ChainLedger.facts` reads the terms, pause and role again."""
REGISTRY_EVENTS = ("ParticipantRegistered", "MeterRotated", "ParticipantDeregistered")
"""Events that change a registration (counted in ``LedgerFacts.registry_changes``)."""


log = logging.getLogger(__name__)


class ChainLedger:
    """The EnergyMarket contract as the market service sees it; commits as ``client.sender``."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client
        self._lock = threading.RLock()
        self._info: LedgerInfo | None = None
        self._facts: LedgerFacts | None = None
        self._ever_registered: tuple[int, list[str]] = (0, [])
        self._sent: dict[int, CommitReceipt] = {}
        """The receipt of each interval's commit sent by this process, until it is final."""
        codec = client.event_reader.codec
        self._fact_topics = {self._topic(codec, name) for name in FACT_EVENTS}
        self._registry_topics = {self._topic(codec, name) for name in REGISTRY_EVENTS}

    @staticmethod
    def _topic(codec: Any, name: str) -> bytes:
        return bytes.fromhex(str(codec.topics(name)[0])[2:])

    def _guard(self, what: str, call: Callable[[], T]) -> T:
        with self._lock:
            try:
                return call()
            except LedgerError as err:  # a revert, named by the contract's custom error
                name = type(err).__name__
                details = dict(zip(err.fields, err.values, strict=True))
                raise LedgerCallFailed(
                    f"{what}: {name}: {err}", revert=name, details=details
                ) from None
            except Exception as err:  # RPC and connection errors alike
                raise LedgerCallFailed(f"{what}: {type(err).__name__}: {err}") from None

    def info(self) -> LedgerInfo:
        """Chain id, addresses, token, operator and the contract's EIP-712 name/version."""
        if self._info is None:
            self._info = self._guard("reading the deployment", self._read_info)
        return self._info

    def _read_info(self) -> LedgerInfo:
        token = self.client.token
        name, version = DOMAIN_NAME, DOMAIN_VERSION
        try:
            domain: Any = self.client.contract.functions.eip712Domain().call()
            name, version = str(domain[1]), str(domain[2])
        except Exception:  # a contract without EIP-5267 keeps the documented defaults
            pass
        return LedgerInfo(
            chain_id=self.client.chain.chain_id,
            market_address=checksum_address(self.client.address),
            token_address=checksum_address(token.address),
            token_symbol=str(token.functions.symbol().call()),
            token_decimals=int(token.functions.decimals().call()),
            operator=checksum_address(self.client.sender),
            eip712_name=name,
            eip712_version=version,
        )

    def timing(self) -> IntervalTiming:
        """``epoch()`` and ``intervalSeconds()`` of the contract."""
        return self._guard(
            "reading interval timing",
            lambda: IntervalTiming(self.client.epoch(), self.client.interval_seconds()),
        )

    def terms(self) -> Terms:
        """The terms the next commit snapshots."""
        return self._guard("reading terms", self.client.terms)

    def terms_for(self, interval: int) -> Terms:
        """The terms a commit of ``interval`` snapshots."""
        return self._guard(
            f"reading interval {interval}'s terms", lambda: self.client.terms_for(interval)
        )

    def facts(self) -> LedgerFacts:
        """Terms, pause, the operator's role and the registry event count: kept since the last
        call unless a block added since holds an event of :data:`FACT_EVENTS` (then read
        again) or :data:`REGISTRY_EVENTS` (then counted)."""
        return self._guard("reading the market's terms, pause and roles", self._read_facts)

    def _read_facts(self) -> LedgerFacts:
        head = self.client.chain.block_number()
        known = self._facts
        if known is not None and known.block_number == head:
            return known
        changes = 0 if known is None else known.registry_changes
        stale = known is None or head < known.block_number  # first read, or the chain went back
        if known is not None and not stale:
            for entry in self.client.event_reader.raw([], known.block_number + 1, head):
                topics = entry["topics"]
                topic = bytes(topics[0]) if topics else b""
                stale = stale or topic in self._fact_topics
                changes += topic in self._registry_topics
        if stale:
            facts = LedgerFacts(
                terms=self.client.terms(),
                paused=self.client.paused(),
                operator_active=self.client.has_role(OPERATOR_ROLE, self.client.sender),
                registry_changes=changes + (known is not None),
                block_number=head,
            )
        else:
            assert known is not None
            facts = LedgerFacts(known.terms, known.paused, known.operator_active, changes, head)
        self._facts = facts
        return facts

    def is_registered(self, participant: str) -> bool:
        """``participantInfo(participant).registered``."""
        return self._guard(
            f"reading registration of {participant}",
            lambda: self.client.participant_info(participant).registered,
        )

    def participant(self, participant: str) -> ParticipantInfo:
        """``participantInfo(participant)``: meter key, index, registered."""
        return self._guard(
            f"reading registration of {participant}",
            lambda: self.client.participant_info(participant),
        )

    def participants(self) -> list[str]:
        """Every address ever registered (``ParticipantRegistered`` events, lower-case): the
        blocks added since the last call are scanned, the rest kept."""

        def read() -> list[str]:
            latest = self.client.chain.block_number()
            start, known = self._ever_registered
            if start <= latest:
                seen = dict.fromkeys(known)
                for e in self.client.event_reader.of(ParticipantRegistered, None, start, latest):
                    seen.setdefault(e.participant.lower())
                self._ever_registered = (latest + 1, list(seen))
            return list(self._ever_registered[1])

        return self._guard("reading the registered participants", read)

    def register_participant(self, participant: str, meter: str) -> str:
        """``registerParticipant(participant, meter)`` from ``client.sender`` (the deployer,
        which holds ``REGISTRAR_ROLE`` on a deployment made by ``wattledger deploy``/``serve``;
        a sender without it reverts with ``AccessControlUnauthorizedAccount``)."""

        def send() -> str:
            receipt = self.client.register_participant(participant, meter)
            return "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")

        return self._guard(f"registering {participant}", send)

    def balances(self, participant: str) -> Balance:
        """``balanceOf(participant)``: free and locked base units."""
        return self._guard(
            f"reading the balance of {participant}", lambda: self.client.balance_of(participant)
        )

    def balances_of(self, participants: Sequence[str]) -> dict[str, Balance]:
        """``balanceOf`` of each of ``participants`` (keyed as given), in one batch read at
        one block."""
        return self.balances_at_head(participants)[1]

    def balances_at_head(self, participants: Sequence[str]) -> tuple[int, dict[str, Balance]]:
        """:meth:`balances_of`, and the number of the block they were read at."""

        def read() -> tuple[int, dict[str, Balance]]:
            block, found = self.client.balances_of(participants)
            return block, {p: found[checksum_address(p)] for p in participants}

        return self._guard(f"reading the balances of {len(participants)} participants", read)

    def has_code(self, account: str, block: int) -> bool:
        """Whether ``account`` holds code at the end of ``block``."""
        return self._guard(
            f"reading the code of {account} at block {block}",
            lambda: self.client.has_code(account, block),
        )

    def accepts_signature(self, account: str, digest: bytes, signature: str, block: int) -> bool:
        """``account``'s ECDSA signature, or, for a contract account, the market's own
        ERC-1271 check replayed at the end of ``block``
        (:meth:`chain.client.LedgerClient.accepts_signature`)."""
        try:
            if signing.recover(digest, signature) == account.lower():
                return True
        except BadSignature:
            return False
        return self._guard(
            f"asking {account} for its signature at block {block}",
            lambda: (
                self.client.has_code(account, block)
                and self.client.accepts_signature(account, digest, signature, block)
            ),
        )

    def committed_root(self, interval: int) -> bytes | None:
        """The committed ``bookRoot`` of ``interval``, or None while uncommitted (or while
        its commit's chunks are not all on-chain)."""

        def read() -> bytes | None:
            info = self.client.interval_info(interval)
            # A commit of several chunks still open is not committed: committing resumes it.
            return None if info.status in ("none", "committing") else info.book_root

        return self._guard(f"reading interval {interval}", read)

    def final_commit(self, interval: int) -> CommitReceipt | None:
        """``interval``'s commit once ``intervalInfo`` at the final block
        (:func:`chain.finality.final_block`) holds it complete; with the transaction this
        process sent when that one is final (a commit that a reorganisation dropped and
        someone else's transaction put back is final without it)."""

        def read() -> CommitReceipt | None:
            chain = self.client.chain
            if chain.finality.immediate:
                info = self.client.interval_info(interval)
            else:
                block = final_block(chain)
                if block < 0:
                    return None
                info = self.client.interval_info(interval, block=block)
            if info.status in ("none", "committing"):
                return None
            sent = self._sent.pop(interval, None)
            if sent is not None and tx_fate(chain, sent.tx_hash) is TxFate.FINAL:
                return CommitReceipt(sent.tx_hash, sent.block_number)
            return CommitReceipt(None, None)

        return self._guard(f"reading interval {interval} at the final block", read)

    def record_grid(self, grid_operator: str, nodes: Mapping[str, str]) -> None:
        """Set the contract's grid operator (admin) unless it is already ``grid_operator``, and
        record each participant's node (registrar) whose last ``NodeRecorded`` differs: what
        the audit reads. Needs the market's account to hold those roles (a dev chain's single
        key); otherwise LedgerCallFailed names the refusal."""

        def send() -> None:
            if self.client.grid_operator() != checksum_address(grid_operator):
                self.client.set_grid_operator(grid_operator)
            recorded: dict[str, bytes] = {}
            for log in self.client.contract.events.NodeRecorded().get_logs(from_block=0):
                recorded[checksum_address(log["args"]["participant"])] = bytes(log["args"]["node"])
            for who, node in sorted(nodes.items()):
                if recorded.get(checksum_address(who)) == node_hash(node):
                    continue
                try:
                    self.client.record_node(who, node)
                except ParticipantNotRegistered:
                    # Recorded when it is registered: the registrar records the node again.
                    log.warning("grid node %s of %s: not registered on-chain yet", node, who)

        self._guard("recording the grid operator and nodes", send)

    def commit_interval(
        self,
        interval: int,
        book_root: bytes,
        trades: Sequence[Trade],
        orders: Mapping[bytes, SignedOrder],
        *,
        grid_root: bytes = bytes(32),
    ) -> CommitReceipt:
        """``commitInterval`` from the operator account, in as many chunks as it takes (a
        commit left open by a crash between chunks resumes). The receipt is ``final`` when
        the chain takes a mined transaction as final; else :meth:`final_commit` says when."""

        def send() -> CommitReceipt:
            receipt = self.client.commit_interval(
                interval, book_root, trades, orders, grid_root=grid_root
            )
            sent = CommitReceipt(
                tx_hash="0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x"),
                block_number=int(receipt["blockNumber"]),
                final=self.client.chain.finality.immediate,
            )
            if not sent.final:
                self._sent[interval] = sent
            return sent

        return self._guard(f"committing interval {interval}", send)


__all__ = ["ChainLedger"]
