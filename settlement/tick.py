"""One pass of the settlement loop, as the parts that act in it see it.

:meth:`settlement.service.SettlementService.tick` reads chain time and the latest block once,
then hands a :class:`Tick` to batching (:mod:`settlement.batching`) and settle chunks
(:mod:`settlement.chunks`): the time the pass stamps the store with, the transaction gas
budget (the block gas limit is read at most once per pass: it moves by at most 1/1024 a
block), the progress lines said so far, and whether the runner asked to stop.
:func:`revert_reason` names the code a revert is recorded under on the interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ledger.contract_errors import LedgerError
from settlement.chain_port import SettlementChain
from settlement.store import ReadingStore

log = logging.getLogger("wattledger.settle")


@dataclass
class Tick:
    """One pass of the loop at chain time ``now``.

    ``block_gas_limit``: the block gas limit if the read of chain time gave it (else it is
    read on first use); ``gas_fraction``: the share of it one transaction may use.
    ``on_progress`` receives each progress line as it happens (a pass can take long);
    ``stopping`` is set to stop after the current transaction.
    """

    chain: SettlementChain
    store: ReadingStore
    now: int
    gas_fraction: tuple[int, int]
    stopping: threading.Event
    block_gas_limit: int | None = None
    on_progress: Callable[[str], None] | None = None
    progress: list[str] = field(default_factory=list)

    def emit(self, line: str) -> None:
        """Say ``line`` (a step taken) now and keep it for the pass's answer."""
        self.progress.append(line)
        if self.on_progress is not None:
            self.on_progress(line)

    def note(self, t: int, code: str, detail: str) -> None:
        """Record a temporary problem of interval ``t`` (retried on a later pass)."""
        self.store.note_interval_error(t, code, detail, self.now)
        log.warning("interval %d: %s", t, detail)

    def tx_budget(self) -> int:
        """Gas one transaction may use: the share ``gas_fraction`` of the block gas limit."""
        if self.block_gas_limit is None:
            self.block_gas_limit = self.chain.gas_limit()
        num, den = self.gas_fraction
        return self.block_gas_limit * num // den


def revert_reason(err: LedgerError) -> str:
    """The code an interval's problem is recorded under for a revert: the Solidity error's
    name (``TradesMismatch``), else the exception's code."""
    return err.solidity_name or err.code


__all__ = ["Tick", "revert_reason"]
