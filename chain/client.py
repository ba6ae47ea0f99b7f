"""Typed client for the EnergyMarket contract.

:class:`LedgerClient` wraps every external function of ``contracts/EnergyMarket.sol`` with
typed arguments; a revert raises the :mod:`ledger.contract_errors` exception of the same name
with its decoded arguments (:func:`chain.reverts.decode_revert`).

The calldata of the hot calls is built by :mod:`ledger.calldata` and :mod:`ledger.trade_chain`
(why, and how they are checked, is said there): :meth:`LedgerClient.commit_interval` sends
the commit's calldata as it is built (:meth:`LedgerClient.transact_data`), and
:meth:`LedgerClient.settle` replays a chunk of trades from the commit transaction's own
calldata, so a caller only says ``settle(t, max_trades)``. Checksum addresses come from a
cache (:mod:`ledger.addresses`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import BlockIdentifier, TxReceipt

from chain.artifacts import load_artifact
from chain.connection import Chain, ViewCall
from chain.deployment import Deployment
from chain.events import market_codec
from chain.logs import EventReader
from chain.reverts import mapped_reverts
from ledger.addresses import checksum_address
from ledger.calldata import (
    SettleArgs,
    balances_of_calldata,
    decode_balances,
    settle_chunk_args,
)
from ledger.commit_plan import (
    DEFAULT_CHUNK_GAS,
    MAX_COMMIT_BYTES,
    commit_calldata,
    plan_commit,
    trades_of_chunks,
)
from ledger.contract_errors import IntervalNotCommitted, LedgerRevert
from ledger.eip712 import Domain, SignedReading, compact_signature
from ledger.events import TradesCommitted
from ledger.grid_nodes import node_hash
from ledger.records import (
    Balance,
    IntervalInfo,
    ParticipantInfo,
    Reading,
    SignedOrder,
    Terms,
    Trade,
)
from ledger.trade_chain import settlement_chain

DEFAULT_READING_BATCH = 100
BALANCES_CHUNK = 1_000
"""Addresses per ``balancesOf`` call: about 2.5M gas (a cold storage read each), far below
the 30M gas a node gives a view call, and a 64 KB answer."""


class LedgerClient:
    """Typed access to one deployed EnergyMarket.

    Transactions go from ``sender`` (default: the chain's first account, the deployer) unless
    a call names another. Every method that sends a transaction waits for its receipt and
    returns it; a revert raises the mapped :class:`LedgerError`. ``gas_limit``, when set, is
    the gas of every transaction instead of the node's estimate (on eth-tester an estimate
    runs the transaction a dozen times).
    """

    def __init__(
        self,
        chain: Chain,
        address: str,
        sender: str | None = None,
        gas_limit: int | None = None,
    ) -> None:
        self.chain = chain
        self.gas_limit = gas_limit
        self.w3: Web3 = chain.w3
        self.contract: Contract = self.w3.eth.contract(
            address=checksum_address(address), abi=load_artifact("EnergyMarket").abi
        )
        self.sender = checksum_address(sender or chain.accounts[0])
        self._token: Contract | None = None
        self._trades: dict[int, tuple[Trade, ...]] = {}
        self._indices: dict[str, int] = {}
        self._events: EventReader | None = None

    @classmethod
    def from_deployment(cls, chain: Chain, deployment: Deployment) -> LedgerClient:
        """A client for the ``EnergyMarket`` of a deployment record; it sends as the
        record's operator (the deployer when the record names no roles)."""
        return cls(chain, deployment.address("EnergyMarket"), sender=deployment.role("operator"))

    @property
    def address(self) -> ChecksumAddress:
        """Address of the market."""
        return self.contract.address

    @property
    def token(self) -> Contract:
        """The settlement token (ERC-20 ABI of WattToken)."""
        if self._token is None:
            self._token = self.w3.eth.contract(
                address=self._call(self.contract.functions.token()),
                abi=load_artifact("WattToken").abi,
            )
        return self._token

    # -- plumbing

    def _call(self, fn: ContractFunction) -> Any:
        with mapped_reverts():
            return fn.call()

    def transact(self, fn: ContractFunction, sender: str | None = None) -> TxReceipt:
        """Send ``fn`` from ``sender``; return the receipt or raise the mapped error."""
        data = bytes.fromhex(fn._encode_transaction_data()[2:])
        return self.transact_data(data, sender, fn.fn_name, to=fn.address)

    def transact_data(
        self,
        data: bytes,
        sender: str | None = None,
        what: str = "transaction",
        *,
        to: str | None = None,
    ) -> TxReceipt:
        """Send calldata ``data`` to ``to`` (default: the market) from ``sender``, with
        :attr:`gas_limit` when set, and fees within the chain's fee cap
        (:meth:`Chain.capped_fees <chain.connection.Chain.capped_fees>`, which waits while
        the base fee is above it); return the receipt or raise the mapped error.

        A transaction mined as failed is replayed as a call at the state it ran on (the
        block before its own), so the contract's custom error surfaces. ``what`` names the
        call in the error when the replay does not revert (the state moved on)."""
        tx: dict[str, Any] = {
            "from": checksum_address(sender or self.sender),
            "to": checksum_address(to) if to is not None else self.address,
            "data": "0x" + data.hex(),
        }
        if self.gas_limit is not None:
            tx["gas"] = self.gas_limit
        fees = self.chain.capped_fees()  # within the chain's fee cap, waiting while above it
        if fees is not None:
            tx.update(fees)
        with mapped_reverts():
            tx_hash = self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
        receipt = self.chain.wait_for_receipt(tx_hash)
        if receipt["status"] != 1:
            with mapped_reverts():
                self.w3.eth.call(tx, block_identifier=receipt["blockNumber"] - 1)  # type: ignore[arg-type]
            raise LedgerRevert(f"{what}: transaction {tx_hash.hex()} reverted")
        return receipt

    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        """The market's ``name`` events in ``receipt``, as ``args`` dicts by argument name
        (:mod:`chain.events`; other events and other contracts' logs skipped)."""
        codec = market_codec()
        codec.event(name)  # an event the market does not have is a mistake, not "none"
        market = self.address.lower()
        out = []
        for log in receipt["logs"]:
            if str(log["address"]).lower() != market:
                continue
            decoded = codec.decode(log)
            if decoded is not None and decoded[0] == name:
                out.append(decoded[1])
        return out

    @property
    def event_reader(self) -> EventReader:
        """The market's events (:class:`chain.logs.EventReader`), read through :attr:`chain`."""
        if self._events is None:
            self._events = EventReader(self.w3, self.address, chain=self.chain)
        return self._events

    # -- roles and admin

    def grant_role(self, role: bytes, account: str, sender: str | None = None) -> TxReceipt:
        """Grant ``role`` (e.g. :data:`OPERATOR_ROLE`) to ``account``; needs its admin role."""
        fn = self.contract.functions.grantRole(role, checksum_address(account))
        return self.transact(fn, sender)

    def has_role(self, role: bytes, account: str) -> bool:
        """Whether ``account`` holds ``role``."""
        return bool(self._call(self.contract.functions.hasRole(role, checksum_address(account))))

    def set_terms(self, terms: Terms, sender: str | None = None) -> TxReceipt:
        """Set the terms later commits snapshot (admin)."""
        args = (terms.penalty_price_per_wh, terms.tolerance_bps, terms.reading_window_seconds)
        return self.transact(self.contract.functions.setTerms(args), sender)

    def set_grid_operator(self, operator: str, sender: str | None = None) -> TxReceipt:
        """Set the grid operator later grid commits snapshot (admin)."""
        fn = self.contract.functions.setGridOperator(checksum_address(operator))
        return self.transact(fn, sender)

    def grid_operator(self) -> ChecksumAddress:
        """The grid operator in force now (the zero address: none)."""
        return checksum_address(self._call(self.contract.functions.gridOperator()))

    def grid_of(self, t: int) -> tuple[bytes, ChecksumAddress]:
        """Interval ``t``'s gridRoot and the grid operator it snapshotted (zeros off a grid)."""
        root, operator = self._call(self.contract.functions.gridOf(t))
        return bytes(root), checksum_address(operator)

    def record_node(self, participant: str, node_id: str, sender: str | None = None) -> TxReceipt:
        """Record the grid node of ``participant`` (registrar): ``keccak256`` of the id's
        UTF-8 bytes (:func:`ledger.grid_nodes.node_hash`)."""
        fn = self.contract.functions.recordNode(checksum_address(participant), node_hash(node_id))
        return self.transact(fn, sender)

    def pause(self, sender: str | None = None) -> TxReceipt:
        """Pause commit, readings, settlement and deposits (guardian)."""
        return self.transact(self.contract.functions.pause(), sender)

    def unpause(self, sender: str | None = None) -> TxReceipt:
        """Lift a pause (admin)."""
        return self.transact(self.contract.functions.unpause(), sender)

    def paused(self) -> bool:
        """Whether the market is paused."""
        return bool(self._call(self.contract.functions.paused()))

    # -- participants

    def register_participant(
        self, participant: str, meter: str, sender: str | None = None
    ) -> TxReceipt:
        """Register ``participant`` with its meter key (registrar)."""
        fn = self.contract.functions.registerParticipant(
            checksum_address(participant), checksum_address(meter)
        )
        return self.transact(fn, sender)

    def rotate_meter(
        self, participant: str, new_meter: str, sender: str | None = None
    ) -> TxReceipt:
        """Replace the meter key of ``participant`` (registrar)."""
        fn = self.contract.functions.rotateMeter(
            checksum_address(participant), checksum_address(new_meter)
        )
        return self.transact(fn, sender)

    def deregister_participant(self, participant: str, sender: str | None = None) -> TxReceipt:
        """Deregister ``participant`` (registrar); its balances stay withdrawable."""
        fn = self.contract.functions.deregisterParticipant(checksum_address(participant))
        return self.transact(fn, sender)

    def participant_info(self, participant: str) -> ParticipantInfo:
        """Registration record of ``participant``."""
        meter, index, registered = self._call(
            self.contract.functions.participantInfo(checksum_address(participant))
        )
        return ParticipantInfo(checksum_address(meter), int(index), bool(registered))

    def participant_index(self, participant: str) -> int:
        """Participant index of ``participant`` (cached; indices never change)."""
        key = checksum_address(participant)
        if key not in self._indices:
            info = self.participant_info(key)
            if info.meter == checksum_address("0x" + "00" * 20):
                raise LedgerRevert(f"{key} was never registered")
            self._indices[key] = info.participant_index
        return self._indices[key]

    def participant_count(self) -> int:
        """Number of participants ever registered."""
        return int(self._call(self.contract.functions.participantCount()))

    # -- escrow

    def approve(self, participant: str, amount: int) -> TxReceipt:
        """Let the market pull ``amount`` of ``participant``'s tokens."""
        fn = self.token.functions.approve(self.address, amount)
        return self.transact(fn, participant)

    def deposit(self, participant: str, amount: int, *, approve: bool = True) -> TxReceipt:
        """Deposit ``amount`` base units for ``participant`` (approving first by default)."""
        if approve:
            self.approve(participant, amount)
        return self.transact(self.contract.functions.deposit(amount), participant)

    def withdraw(self, participant: str, amount: int) -> TxReceipt:
        """Withdraw ``amount`` base units of ``participant``'s free balance."""
        return self.transact(self.contract.functions.withdraw(amount), participant)

    def balance_of(self, participant: str) -> Balance:
        """Free and locked balance of ``participant``."""
        free, locked = self._call(self.contract.functions.balanceOf(checksum_address(participant)))
        return Balance(int(free), int(locked))

    def balances_of(self, participants: Sequence[str]) -> tuple[int, dict[str, Balance]]:
        """Free and locked balances of ``participants``, all read at one block: its number,
        and each balance by checksum address.

        One ``balancesOf`` view per :data:`BALANCES_CHUNK` addresses, every chunk run
        against the same block (:meth:`Chain.view_calls <chain.connection.Chain.view_calls>`):
        a gate closure reads 200 parties in one call where it took one call each."""
        keys = list(dict.fromkeys(checksum_address(p) for p in participants))
        chunks = [keys[i : i + BALANCES_CHUNK] for i in range(0, len(keys), BALANCES_CHUNK)]
        calls = [ViewCall(self.address, balances_of_calldata(chunk)) for chunk in chunks]
        with mapped_reverts():
            block, outputs = self.chain.view_calls(calls, sender=self.sender)
        balances: dict[str, Balance] = {}
        for chunk, raw in zip(chunks, outputs, strict=True):
            frees, lockeds = decode_balances(raw, len(chunk))
            for key, free, locked in zip(chunk, frees, lockeds, strict=True):
                balances[key] = Balance(free, locked)
        return block, balances

    def total_escrowed(self) -> int:
        """Sum of every balance the market keeps."""
        return int(self._call(self.contract.functions.totalEscrowed()))

    # -- intervals

    def terms(self) -> Terms:
        """Terms in force (of every interval that starts before any scheduled terms)."""
        pp, tol, window = self._call(self.contract.functions.terms())
        return Terms(int(pp), int(tol), int(window))

    def terms_for(self, t: int) -> Terms:
        """The terms a commit of interval ``t`` snapshots (scheduled terms apply to intervals
        that start ``TERMS_NOTICE_SECONDS`` or more after they were set)."""
        pp, tol, window = self._call(self.contract.functions.termsFor(t))
        return Terms(int(pp), int(tol), int(window))

    def epoch(self) -> int:
        """Unix time (s) at which interval 0 starts."""
        return int(self._call(self.contract.functions.epoch()))

    def interval_seconds(self) -> int:
        """Length of an interval in seconds."""
        return int(self._call(self.contract.functions.intervalSeconds()))

    def interval_window(self, t: int) -> tuple[int, int]:
        """(start, end) of interval ``t``'s delivery, Unix seconds."""
        start, end = self._call(self.contract.functions.intervalWindow(t))
        return int(start), int(end)

    def interval_at(self, timestamp: int) -> int:
        """Interval whose delivery contains ``timestamp`` (0 before the epoch)."""
        return max(0, (timestamp - self.epoch()) // self.interval_seconds())

    def current_interval(self) -> int:
        """Interval whose delivery contains the latest block's time."""
        return self.interval_at(self.chain.timestamp())

    def interval_info(self, t: int, block: BlockIdentifier = "latest") -> IntervalInfo:
        """Stored state of interval ``t`` (at ``block``: a number or a tag)."""
        fn = self.contract.functions.intervalInfo(t)
        with mapped_reverts():
            return IntervalInfo.from_values(fn.call(block_identifier=block))

    def has_code(self, account: str, block: int) -> bool:
        """Whether ``account`` holds code at the end of ``block``: a contract account, whose
        orders the market checks with ERC-1271 ``isValidSignature``."""
        return bool(self.w3.eth.get_code(checksum_address(account), block_identifier=block))

    def accepts_signature(self, account: str, digest: bytes, signature: str, block: int) -> bool:
        """Whether contract account ``account`` accepts ``signature`` (65 bytes, canonical)
        over ``digest`` at the end of ``block``, as ``commitInterval`` asks it: the market's
        capped static ``isValidSignature`` call, made by the market itself in the view
        ``acceptsSignature`` (so the account sees the same caller as at commit)."""
        r, vs = compact_signature(signature)
        fn = self.contract.functions.acceptsSignature(checksum_address(account), digest, r, vs)
        with mapped_reverts():
            return bool(fn.call({"from": self.sender}, block_identifier=block))

    def commit_interval(
        self,
        t: int,
        book_root: bytes,
        trades: Sequence[Trade],
        orders: Mapping[bytes, SignedOrder],
        sender: str | None = None,
        *,
        max_bytes: int = MAX_COMMIT_BYTES,
        max_gas: int = DEFAULT_CHUNK_GAS,
        grid_root: bytes = bytes(32),
    ) -> TxReceipt:
        """Commit interval ``t``'s trades, backed by their signed ``orders`` (by order id), in
        as many ``commitInterval`` chunks as bytes and gas require
        (:func:`ledger.commit_plan.plan_commit`); return the last chunk's receipt (operator).

        A commit of several chunks that an earlier call left open (a crash between chunks)
        resumes after the chunks already on-chain: the plan is a function of its inputs."""
        receipts = self.commit_chunks(
            t,
            book_root,
            trades,
            orders,
            sender,
            max_bytes=max_bytes,
            max_gas=max_gas,
            grid_root=grid_root,
        )
        return receipts[-1]

    def commit_chunks(
        self,
        t: int,
        book_root: bytes,
        trades: Sequence[Trade],
        orders: Mapping[bytes, SignedOrder],
        sender: str | None = None,
        *,
        max_bytes: int = MAX_COMMIT_BYTES,
        max_gas: int = DEFAULT_CHUNK_GAS,
        grid_root: bytes = bytes(32),
    ) -> list[TxReceipt]:
        """:meth:`commit_interval` (``grid_root`` zero off a grid), returning the receipt of
        every chunk this call sent."""
        indices: dict[str, int] = {
            p: self.participant_index(p) for p in {checksum_address(x.seller) for x in trades}
        }
        plan = plan_commit(t, trades, orders, indices, max_bytes=max_bytes, max_gas=max_gas)
        start = 0
        if len(plan.chunks) > 1:
            info = self.interval_info(t)
            if info.status == "committing":
                counts = [0]
                for chunk in plan.chunks:
                    counts.append(counts[-1] + chunk.trade_count)
                if info.trade_count not in counts:
                    raise ValueError(
                        f"interval {t}'s open commit holds {info.trade_count} trades, which no "
                        "prefix of this plan's chunks does"
                    )
                start = counts.index(info.trade_count)
        receipts = []
        for number, chunk in enumerate(plan.chunks[start:], start=start + 1):
            data = commit_calldata(t, book_root, chunk, grid_root)
            what = f"commitInterval({t}) chunk {number} of {len(plan.chunks)}"
            receipts.append(self.transact_data(data, sender, what))
        self._trades[t] = plan.trades
        return receipts

    def committed_trades(self, t: int) -> tuple[Trade, ...]:
        """Interval ``t``'s trades in commit order, from its ``TradesCommitted`` events
        (:meth:`EventReader.trades_of <chain.logs.EventReader.trades_of>`), however the
        commit was sent; for a commit left unfinished, the trades of its chunks on-chain."""
        if t in self._trades:
            return self._trades[t]
        commit = self.event_reader.commit_of(t)
        if commit is None:
            trades, _ = self.unfinished_commit(t)
        else:
            trades = self.event_reader.trades_of(commit)
        self._trades[t] = trades
        return trades

    def unfinished_commit(self, t: int) -> tuple[tuple[Trade, ...], bytes]:
        """The trades of interval ``t``'s commit that is still open (no last chunk), and
        where its hash chain stops (the last chunk's ``tailHash``); IntervalNotCommitted
        when no chunk of it is on-chain."""
        chunks = self.event_reader.of(TradesCommitted, {"interval": t})
        if not chunks:
            raise IntervalNotCommitted(t)
        count = sum(len(c.trades) for c in chunks)
        trades = trades_of_chunks(
            t,
            [
                (c.chunk, c.first_index, c.parties, c.order_ids, c.trades, c.sell_prices)
                for c in chunks
            ],
            count,
        )
        return trades, chunks[-1].tail_hash

    # -- readings

    def domain(self) -> Domain:
        """EIP-712 domain meter keys sign readings under."""
        return Domain(self.chain.chain_id, self.address)

    def reading_digest(self, reading: Reading) -> bytes:
        """The digest the contract expects a meter to sign for ``reading``."""
        return bytes(
            self._call(
                self.contract.functions.readingDigest(
                    checksum_address(reading.participant),
                    reading.interval,
                    reading.imported_wh,
                    reading.exported_wh,
                )
            )
        )

    def submit_readings(
        self,
        t: int,
        readings: Sequence[SignedReading],
        *,
        batch_size: int = DEFAULT_READING_BATCH,
        sender: str | None = None,
    ) -> list[TxReceipt]:
        """Submit signed readings for ``t`` in batches, sorted by participant index (cheaper)."""
        ordered = sorted(readings, key=lambda r: self.participant_index(r.reading.participant))
        receipts = []
        for i in range(0, len(ordered), batch_size):
            batch = [r.as_tuple() for r in ordered[i : i + batch_size]]
            fn = self.contract.functions.submitReadings(t, batch)
            receipts.append(self.transact(fn, sender))
        return receipts

    def reading_of(self, t: int, participant: str) -> tuple[bool, int]:
        """(submitted, exported Wh) of ``participant``'s reading for ``t``."""
        submitted, exported = self._call(
            self.contract.functions.readingOf(t, checksum_address(participant))
        )
        return bool(submitted), int(exported)

    # -- settlement

    def settle_chunk(self, t: int, args: SettleArgs, sender: str | None = None) -> TxReceipt:
        """Send one raw ``settle`` chunk (see :func:`settle_chunk_args`)."""
        fn = self.contract.functions.settle(
            t, args.first_index, list(args.parties), list(args.trades), args.tail_hash
        )
        return self.transact(fn, sender)

    def settle(
        self, t: int, max_trades: int | None = None, sender: str | None = None
    ) -> list[TxReceipt]:
        """Settle what is left of interval ``t`` in chunks of at most ``max_trades`` trades.

        This is DESIGN's ``settle(t, maxTrades)``: the trades come from the commit's
        ``TradesCommitted`` events. A commit left unfinished (``committing`` once its interval
        ended) settles as far as its chunks went.
        """
        trades = self.committed_trades(t)
        info = self.interval_info(t)
        tail = self.unfinished_commit(t)[1] if info.status == "committing" else bytes(32)
        indices = {p: self.participant_index(p) for p in {tr.seller for tr in trades}}
        heads = settlement_chain(trades, indices, tail)
        step = max_trades or max(1, len(trades))
        receipts = []
        cursor = info.cursor
        if info.status == "committed" and cursor == len(trades):  # an empty interval
            args = settle_chunk_args(trades, indices, 0, 0, heads)
            receipts.append(self.settle_chunk(t, args, sender))
        while cursor < len(trades):
            stop = min(len(trades), cursor + step)
            args = settle_chunk_args(trades, indices, cursor, stop, heads)
            receipts.append(self.settle_chunk(t, args, sender))
            cursor = stop
        return receipts

    def settle_next(self, t: int, max_trades: int, sender: str | None = None) -> TxReceipt:
        """Settle one chunk of at most ``max_trades`` trades from the cursor."""
        trades = self.committed_trades(t)
        cursor = self.interval_info(t).cursor
        indices = {p: self.participant_index(p) for p in {tr.seller for tr in trades}}
        stop = min(len(trades), cursor + max_trades)
        return self.settle_chunk(t, settle_chunk_args(trades, indices, cursor, stop), sender)


__all__ = [
    "BALANCES_CHUNK",
    "LedgerClient",
]
