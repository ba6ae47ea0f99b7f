"""Sending the settlement service's transactions: preflight, journal, nonce, replacement.

:class:`TxSender` sends one transaction at a time from the service's own account and waits
for it; that keeps the nonce discipline trivial and is plenty for a few transactions per
interval. For each transaction it:

1. **reconciles** the journal: a transaction journalled by an earlier process (killed between
   "send" and "mark") is waited for until it is mined, or until ``receipt_timeout`` passes
   (then the nonce is reused below, which replaces it);
2. **preflights** it with ``eth_call`` as the next block would run it
   (:mod:`settlement.preflight`), so a transaction that would revert (a reading already
   on-chain, a chunk no longer at the cursor, the window not yet open) raises the mapped
   :class:`~ledger.contract_errors.LedgerError` before any gas is spent (unless
   :attr:`TxPolicy.preflight` is off);
3. picks the nonce explicitly: the account's mined transaction count, so a journalled but
   unmined transaction at that nonce is *replaced*, never queued behind;
4. prices it (:mod:`settlement.fees`): EIP-1559 ``maxFeePerGas = 2 * baseFee + tip`` with the
   node's suggested tip (legacy ``gasPrice`` on a chain without a base fee); a replacement
   pays at least 9/8 of the fees it replaces (rounded up: nodes ask for +10 %); a
   :attr:`TxPolicy.fee_cap` clamps both (:func:`settlement.fees.priced`): while the base fee
   plus the tip is above it nothing is signed (:class:`FeeAboveCap`: the service says so and
   tries again on its next pass), and a replacement the cap leaves no room to bump is not
   sent (the transaction already in the pool is waited for again);
5. signs it locally and **journals** it (nonce, hash, fees) in SQLite before broadcasting
   (:mod:`settlement.journal`);
6. waits for the receipt up to ``receipt_timeout``; if none, preflights again (the state may
   have moved on) and sends a replacement with the same nonce and bumped fees, up to
   ``max_replacements`` times;
7. on a receipt, marks it mined in the journal with the gas it used and the price per gas it
   paid (``effectiveGasPrice``); a failed receipt raises :class:`OutOfGas`
   when it used all its gas, or the replayed revert otherwise.

A node that stops answering raises :class:`~chain.errors.ChainUnavailable` (after the
reader's quick retries); the journal keeps the transaction as ``sent`` and the next
:meth:`TxSender.send` or :meth:`TxSender.reconcile` finds out what became of it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3.types import TxReceipt

from chain.fee_cap import NO_CAP, FeeCap
from chain.reverts import mapped_reverts
from chain.rpc import is_transient, request_lock, to_int
from ledger.contract_errors import LedgerError, LedgerRevert
from settlement.chain_reader import ChainReader
from settlement.errors import FeeAboveCap, OutOfGas, SettlementError, TransactionNotMined
from settlement.fees import FeeReader, Fees, batch_answer, cap_message, priced
from settlement.journal import TxJournal, TxRecord
from settlement.preflight import Preflight

log = logging.getLogger(__name__)

FIRST_POLL_SECONDS = 0.005
"""First wait for a receipt; the waits double up to :attr:`TxPolicy.poll_seconds`. A local
node (anvil) mines a transaction a few milliseconds after taking it, so a first look after
the full poll period would wait 0.1 s per transaction for nothing."""


class NonceConsumed(SettlementError):
    """Raised when the nonce a transaction was built for was used by another transaction.

    The chain state the transaction was built from may have changed: re-read and rebuild.
    """

    code = "nonce_consumed"


@dataclass(frozen=True)
class TxPolicy:
    """How patiently and how expensively transactions are sent.

    ``receipt_timeout_seconds``: wait this long for a receipt before replacing.
    ``poll_seconds``: receipt polling period. ``max_replacements``: fee bumps per transaction.
    ``bump``: fee multiplier of a replacement as (numerator, denominator), rounded up.
    ``preflight``: dry-run each transaction with ``eth_call`` before its first broadcast, so
    that a transaction that would revert costs no gas. Without it a revert is found from the
    receipt and raises the same error (after the gas is spent): worth it where gas is free
    and a dry run costs as much as the transaction, as on the embedded chain of a simulation,
    whose service made the reads the transaction relies on itself a moment before.
    Replacements are always preflighted (the chain may have moved on while waiting).
    ``fee_cap``: the most a transaction pays per gas (:class:`~chain.fee_cap.FeeCap`;
    default none).
    """

    receipt_timeout_seconds: float = 60.0
    poll_seconds: float = 0.1
    max_replacements: int = 6
    bump: tuple[int, int] = (9, 8)
    preflight: bool = True
    fee_cap: FeeCap = NO_CAP


class TxSender:
    """Sends contract calls from ``account``, one at a time, journalled in ``journal``."""

    def __init__(
        self,
        reader: ChainReader,
        account: LocalAccount,
        journal: TxJournal,
        policy: TxPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.w3 = reader.w3
        self.account = account
        self.address = to_checksum_address(account.address)
        self.journal = journal
        self.policy = policy or TxPolicy()
        self._sleep = sleep
        self._monotonic = monotonic
        self._chain_id: int | None = None
        self.fees = FeeReader(reader)
        """Fees of a new transaction, read at most once per block."""
        self.preflight = Preflight(reader, self.address)
        """Dry runs before the first broadcast and before each replacement."""
        self._nonce: int | None = None
        """The next nonce, known here after a transaction of ours was mined (None: read it)."""
        self._replaced_at: int | None = None
        """The nonce of the last transaction this sender replaced (its mined successor may
        have raced another sender, so the nonce is read again after it)."""
        self.replacements = 0
        """Replacement transactions sent by this sender (for tests and reports)."""

    # -- chain facts ---------------------------------------------------------------------

    def _chain(self) -> int:
        if self._chain_id is None:
            chain = self.reader.client.chain
            self._chain_id = self.reader.retry("reading the chain id", lambda: chain.chain_id)
        return self._chain_id

    def _count(self, block: str) -> int:
        return to_int(self.reader.rpc("eth_getTransactionCount", [self.address, block]))

    def balance_wei(self) -> int:
        """The sender's balance of the chain's native coin (it pays the gas)."""
        return to_int(self.reader.rpc("eth_getBalance", [self.address, "latest"]))

    def _facts(self, preflight: bool) -> tuple[int | None, int | None, Fees]:
        """What a new transaction is built from: (chain time for its preflight, the next
        nonce, fees), None where not needed (no preflight; the nonce known here).

        On a node the reads go in one batch request (pending block, latest block, tip, and
        the transaction counts when the nonce is not known); they used to be five or six
        round trips per transaction.
        """
        # A nonce known here holds only while mined blocks are final: a reorganisation that
        # dropped our last transaction takes the account's count back.
        need_nonce = self._nonce is None or not self.reader.client.chain.finality.immediate
        if self.reader.client.chain.is_embedded:
            return None, self._next_nonce() if need_nonce else self._nonce, self.fees.current()
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", ["latest", False]),
            ("eth_maxPriorityFeePerGas", []),
        ]
        if preflight:
            calls.append(("eth_getBlockByNumber", ["pending", False]))
        if need_nonce:
            calls += [
                ("eth_getTransactionCount", [self.address, "latest"]),
                ("eth_getTransactionCount", [self.address, "pending"]),
            ]
        answers = self.reader.rpc_batch(calls)
        latest = batch_answer(answers[0], "the latest block")
        fees = self.fees.after(latest, lambda: answers[1])
        when: int | None = None
        if preflight:
            pending = answers[2]
            if isinstance(pending, Mapping) and "timestamp" in pending:
                when = to_int(pending["timestamp"])
            else:  # no pending block: the latest is the best guess (as ChainReader.now)
                when = to_int(latest["timestamp"])
        nonce = self._nonce
        if need_nonce:
            mined = to_int(batch_answer(answers[-2], "the transaction count"))
            pending_count = to_int(batch_answer(answers[-1], "the pending transaction count"))
            nonce = self._choose_nonce(mined, pending_count)
        return when, nonce, fees

    def _receipt(self, tx_hash: str) -> TxReceipt | None:
        """The receipt of ``tx_hash`` or None, as :meth:`chain.connection.Chain.receipt` reads it:
        web3's shape without web3's formatters (which walk each of a batch's 200 logs), from
        py-evm directly on the embedded chain."""
        chain = self.reader.client.chain

        def read() -> TxReceipt | None:
            with request_lock(self.w3):
                return chain.receipt(tx_hash)

        return self.reader.retry(f"reading the receipt of {tx_hash}", read)

    # -- journal reconciliation ---------------------------------------------------------

    def reconcile(self, timeout_seconds: float | None = None) -> None:
        """Find out what became of journalled transactions still marked ``sent``.

        Waits (up to ``timeout_seconds``, default the receipt timeout) for each to be mined;
        a nonce taken by another transaction marks it dropped. Whatever is still unmined
        after the wait stays ``sent``: the next :meth:`send` replaces it.
        """
        pending = self.journal.unconfirmed_txs(self.address)
        if not pending:
            return
        timeout = (
            self.policy.receipt_timeout_seconds if timeout_seconds is None else timeout_seconds
        )
        deadline = self._monotonic() + timeout
        nonces = sorted({tx.nonce for tx in pending})
        log.info("reconciling %d journalled transactions at nonces %s", len(pending), nonces)
        for nonce in nonces:
            hashes = [tx.hash for tx in pending if tx.nonce == nonce]
            while True:
                receipt = self._first_receipt(hashes)
                if receipt is not None:
                    self._record_mined(receipt, nonce)
                    break
                if self._count("latest") > nonce:
                    receipt = self._first_receipt(hashes)
                    if receipt is not None:
                        self._record_mined(receipt, nonce)
                    else:
                        self.journal.mark_txs_dropped(self.address, nonce)
                    break
                if self._monotonic() >= deadline:
                    log.warning("transaction at nonce %d is still not mined; will replace", nonce)
                    return
                self._sleep(self.policy.poll_seconds)

    def _first_receipt(self, hashes: list[str]) -> TxReceipt | None:
        for tx_hash in reversed(hashes):
            receipt = self._receipt(tx_hash)
            if receipt is not None:
                return receipt
        return None

    def _record_mined(self, receipt: Mapping[str, Any], nonce: int) -> None:
        tx_hash = hex_hash(receipt["transactionHash"])
        price = receipt.get("effectiveGasPrice")
        self.journal.mark_tx_mined(
            tx_hash,
            int(receipt["blockNumber"]),
            int(receipt["status"]),
            int(receipt["gasUsed"]),
            None if price is None else to_int(price),
        )
        self.journal.mark_txs_dropped(self.address, nonce, keep=tx_hash)

    # -- sending -------------------------------------------------------------------------

    def _next_nonce(self) -> int:
        return self._choose_nonce(self._count("latest"), self._count("pending"))

    def _choose_nonce(self, mined: int, pending: int) -> int:
        """The nonce of a new transaction, from the account's mined and pending counts: the
        mined count (replacing a journalled transaction of ours still unmined there),
        unless someone else's transactions from this account are queued."""
        ours = {tx.nonce for tx in self.journal.unconfirmed_txs(self.address)}
        if pending > mined and mined not in ours:
            # Someone else's transactions from this account are queued: go after them.
            return pending
        return mined

    def send(
        self,
        to: str,
        data: bytes,
        *,
        gas_limit: int,
        kind: str,
        interval: int | None = None,
    ) -> TxReceipt:
        """Send ``data`` to ``to`` and return the mined receipt (see the module docstring).

        Raises the mapped LedgerError of a revert (before sending when the preflight sees
        it), :class:`OutOfGas`, :class:`NonceConsumed`, :class:`TransactionNotMined` or
        :class:`ChainUnavailable`.
        """
        try:
            return self._send(to, data, gas_limit=gas_limit, kind=kind, interval=interval)
        except BaseException:
            self._nonce = None  # whatever happened, read the account's nonce again
            raise

    def _send(
        self, to: str, data: bytes, *, gas_limit: int, kind: str, interval: int | None
    ) -> TxReceipt:
        self.reconcile()
        if self.journal.unconfirmed_txs(self.address):
            self._nonce = None  # one of ours is still unmined: the counts decide
        when, nonce, fees = self._facts(self.policy.preflight)
        assert nonce is not None
        if self.policy.preflight:
            self.preflight.check(to, data, gas_limit, when)
        cap = self.policy.fee_cap
        stale = [tx for tx in self.journal.unconfirmed_txs(self.address) if tx.nonce == nonce]
        floor: Fees | None = None
        for tx in stale:
            least = Fees.of(tx).bumped(self.policy.bump)
            floor = least if floor is None else floor.at_least(least)
        price = priced(fees, floor, cap)
        if price is None:  # nothing signed: the service tries again on its next pass
            raise FeeAboveCap(cap_message(fees, cap, replacing=nonce if stale else None))
        hashes: list[str] = []
        for attempt in range(self.policy.max_replacements + 1):
            if attempt:
                try:
                    self.preflight.check(to, data, gas_limit)
                except LedgerError:  # our own transaction may have been mined just now
                    receipt = self._first_receipt(hashes)
                    if receipt is not None:
                        return self._finish(receipt, nonce, gas_limit, to, data)
                    raise
                current = self.fees.current()
                price = priced(current, floor, cap)
                if price is None and not hashes:
                    raise FeeAboveCap(cap_message(current, cap, replacing=nonce))
                if price is not None:
                    log.info("replacing transaction at nonce %d with higher fees %s", nonce, price)
            if price is None:
                log.info(
                    "transaction at nonce %d: the fee cap (%s) leaves no room for a fee bump; "
                    "waiting for it again",
                    nonce,
                    cap.describe(),
                )
            else:
                try:
                    tx_hash = self._sign_and_send(to, data, gas_limit, nonce, price, kind, interval)
                except NonceConsumed:  # mined while we were replacing it?
                    receipt = self._first_receipt(hashes)
                    if receipt is not None:
                        return self._finish(receipt, nonce, gas_limit, to, data)
                    raise
                floor = price.bumped(self.policy.bump)
                if tx_hash is None:  # the node refused the fees as too low for a replacement
                    continue
                if attempt:
                    self.replacements += 1
                    self._replaced_at = nonce
                hashes.append(tx_hash)
            receipt = self._wait(hashes, nonce)
            if receipt is not None:
                return self._finish(receipt, nonce, gas_limit, to, data)
        raise TransactionNotMined(
            f"a {kind} transaction at nonce {nonce} was not mined after "
            f"{self.policy.max_replacements} fee bumps"
        )

    def _sign_and_send(
        self,
        to: str,
        data: bytes,
        gas_limit: int,
        nonce: int,
        fees: Fees,
        kind: str,
        interval: int | None,
    ) -> str | None:
        tx: dict[str, Any] = {
            "chainId": self._chain(),
            "nonce": nonce,
            "to": to_checksum_address(to),
            "data": data,
            "gas": gas_limit,
            "value": 0,
        }
        if fees.gas_price is not None:
            tx["gasPrice"] = fees.gas_price
        else:
            tx["maxFeePerGas"] = fees.max_fee
            tx["maxPriorityFeePerGas"] = fees.priority_fee
            tx["type"] = 2
        signed = self.account.sign_transaction(tx)
        tx_hash = hex_hash(signed.hash)
        self.journal.record_tx(
            TxRecord(
                hash=tx_hash,
                sender=self.address,
                nonce=nonce,
                kind=kind,
                interval=interval,
                gas_limit=gas_limit,
                max_fee=fees.max_fee,
                priority_fee=fees.priority_fee,
                gas_price=fees.gas_price,
                sent_at=time.time(),
            )
        )
        raw = "0x" + bytes(signed.raw_transaction).hex()
        try:
            self._broadcast(raw)
        except _Refused as refused:
            self.journal.mark_txs_dropped(self.address, nonce, keep=None)
            if refused.kind == "underpriced":
                return None
            self.reconcile(timeout_seconds=0)
            raise NonceConsumed(f"nonce {nonce} was already used: {refused}") from None
        return tx_hash

    def _broadcast(self, raw: str) -> None:
        def once() -> None:
            try:
                with request_lock(self.w3):
                    response = self.w3.provider.make_request(
                        "eth_sendRawTransaction",  # type: ignore[arg-type]
                        [raw],
                    )
            except Exception as err:
                if is_transient(err):
                    raise
                _raise_refusal(str(err))
                raise
            error = response.get("error")
            if error:
                message = str(error.get("message", error) if isinstance(error, Mapping) else error)
                _raise_refusal(message)
                raise RuntimeError(f"the node refused the transaction: {message}")

        with contextlib.suppress(_Known):  # the node has it already: a rebroadcast
            self.reader.retry("broadcasting a transaction", once)

    def _wait(self, hashes: list[str], nonce: int) -> TxReceipt | None:
        deadline = self._monotonic() + self.policy.receipt_timeout_seconds
        delay = min(FIRST_POLL_SECONDS, self.policy.poll_seconds)
        while True:
            receipt = self._first_receipt(hashes)
            if receipt is not None:
                return receipt
            if self._monotonic() >= deadline:
                if self._count("latest") > nonce:
                    receipt = self._first_receipt(hashes)
                    if receipt is not None:
                        return receipt
                    self.journal.mark_txs_dropped(self.address, nonce)
                    raise NonceConsumed(f"nonce {nonce} was used by another transaction")
                return None
            self._sleep(delay)
            delay = min(2 * delay, self.policy.poll_seconds)

    def _finish(
        self, receipt: TxReceipt, nonce: int, gas_limit: int, to: str, data: bytes
    ) -> TxReceipt:
        self._record_mined(receipt, nonce)
        # Mined (reverted or not), so the account's next nonce is the one after; a
        # replacement may have raced another sender, so after one the counts decide.
        self._nonce = nonce + 1 if self._replaced_at != nonce else None
        if int(receipt["status"]) == 1:
            return receipt
        if int(receipt["gasUsed"]) * 100 >= gas_limit * 97:
            raise OutOfGas(f"transaction {hex_hash(receipt['transactionHash'])} ran out of gas")
        block = int(receipt["blockNumber"]) - 1
        call: dict[str, Any] = {"from": self.address, "to": to, "data": "0x" + data.hex()}
        try:
            with mapped_reverts():
                self.w3.eth.call(call, block)  # type: ignore[arg-type]
        except LedgerError:
            raise
        except Exception:  # the replay did not reproduce the revert; report it plainly
            pass
        raise LedgerRevert(f"transaction {hex_hash(receipt['transactionHash'])} reverted on-chain")


class _Refused(Exception):
    """The node refused a raw transaction for its nonce or fees."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _raise_refusal(message: str) -> None:
    """Raise :class:`_Refused` for a nonce or fee refusal; return when the node already has
    the transaction (a rebroadcast); return too for anything else (the caller raises)."""
    text = message.lower()
    if "already known" in text or "already imported" in text or "known transaction" in text:
        raise _Known(message)
    if "underpriced" in text or "fee too low" in text or "replacement" in text:
        raise _Refused("underpriced", message)
    if "nonce too low" in text or ("nonce" in text and ("low" in text or "used" in text)):
        raise _Refused("nonce", message)


class _Known(Exception):
    """The node already has this exact transaction."""


def hex_hash(value: Any) -> str:
    """A transaction hash as ``0x`` hex, from the bytes or the string a node or web3 gave."""
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


__all__ = [
    "NonceConsumed",
    "TxPolicy",
    "TxSender",
    "hex_hash",
]
