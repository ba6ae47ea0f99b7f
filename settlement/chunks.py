"""Settle chunks: once the reading deadline has passed, ``settle`` is called chunk by chunk from
the interval's cursor until the interval is ``Settled``.

The contract keeps only a hash of the committed trades (DESIGN §5a): each chunk passes its
trades, replayed from the commit transaction's calldata, with the chain head after them
(:func:`ledger.trade_chain.settlement_chain`), and the contract checks they hash to the head
it stores at the cursor. Before each chunk the cursor is read again, and the trade count and
the head at the cursor are compared with the replay, so trades that cannot match fail the
interval (``trades_mismatch``) before any gas is spent. A chunk holds as many trades as fit
the transaction budget (:mod:`settlement.gas`).

Done only when final: an interval is taken as settled once the final block
(:mod:`chain.finality`) holds it ``Settled``; a chunk a reorganisation dropped leaves the
head's cursor behind it, and the chunk is sent again from there.

Exactly once: the contract refuses a chunk that is not at the cursor (``ChunkNotAtCursor``)
or an interval already settled; either means someone else moved the cursor, and the cursor
is read again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from eth_utils.address import to_checksum_address

from chain.reader import MeterInfo
from ledger import contract_errors as chain_errors
from ledger.calldata import settle_chunk_args
from ledger.contract_errors import LedgerError
from ledger.records import IntervalInfo, Trade
from ledger.trade_chain import settlement_chain
from settlement.chain_port import SettlementChain
from settlement.config import SettlementConfig
from settlement.errors import OutOfGas, SettlementFailed
from settlement.gas import TRADE_GAS_CEILING, ItemGas
from settlement.store import ReadingStore
from settlement.tick import Tick, revert_reason
from settlement.tx import NonceConsumed

log = logging.getLogger("wattledger.settle")

MAX_ATTEMPTS = 10_000
"""Most chunks (or retries of one) a tick sends for one interval before it gives up."""


class ChunkSettler:
    """Settles an interval chunk by chunk from the cursor (see the module).

    ``known_meter`` answers a participant's registration from memory when intake has read it
    (None otherwise: it is read from the chain), for the sellers' participant indices.
    """

    def __init__(
        self,
        chain: SettlementChain,
        store: ReadingStore,
        config: SettlementConfig,
        known_meter: Callable[[str], MeterInfo | None],
    ) -> None:
        self.chain = chain
        self.store = store
        self.config = config
        self._known_meter = known_meter
        self.gas = ItemGas(config.settle_trade_gas, TRADE_GAS_CEILING)
        """Gas per settled trade: assumed, then measured."""
        self._trades: dict[int, tuple[Trade, ...]] = {}
        self._heads: dict[int, tuple[bytes, ...]] = {}

    def forget(self, t: int) -> None:
        """Drop the replayed trades and chain heads of ``t`` (a retry replays them again)."""
        self._trades.pop(t, None)
        self._heads.pop(t, None)

    def _chunk_inputs(self, t: int) -> tuple[tuple[Trade, ...], dict[str, int], tuple[bytes, ...]]:
        """``t``'s trades, its sellers' participant indices and the chain heads ``h_0..h_n``."""
        trades = self._trades.get(t)
        if trades is None:
            trades = self.chain.committed_trades(t)
            self._trades[t] = trades
        indices: dict[str, int] = {}
        for seller in {tr.seller for tr in trades}:
            key = to_checksum_address(seller)
            info = self._known_meter(key)
            if info is None or not info.ever_registered:
                info = self.chain.participant(key)
            indices[key] = info.participant_index
        heads = self._heads.get(t)
        if heads is None:
            heads = settlement_chain(trades, indices)
            self._heads[t] = heads
        return trades, indices, heads

    def settle(self, t: int, tick: Tick, read: IntervalInfo | None = None) -> bool:
        """Settle ``t`` chunk by chunk from the cursor; True once it is ``Settled``, False
        when it has to wait (a note says why) or the runner stops. ``read``: its
        ``intervalInfo`` just read by the caller (the first chunk starts from it).

        Raises :class:`SettlementFailed` for what retrying cannot mend.
        """
        trades, indices, heads = self._chunk_inputs(t)
        for _ in range(MAX_ATTEMPTS):
            if tick.stopping.is_set():
                return False
            info, read = read or self.chain.interval(t), None
            if info.status == "settled":
                return self.settled_final(t)
            if info.trade_count != len(trades):
                raise SettlementFailed(
                    t,
                    "trades_mismatch",
                    f"the commit calldata has {len(trades)} trades, the contract counts "
                    f"{info.trade_count}",
                )
            if heads[info.cursor] != info.remaining_hash:
                raise SettlementFailed(
                    t,
                    "trades_mismatch",
                    f"the replayed trades do not hash to the stored head at cursor {info.cursor}",
                )
            budget = tick.tx_budget()
            size = self.gas.items_within(budget, self.config.max_settle_trades)
            start = info.cursor
            stop = min(len(trades), start + size)
            args = settle_chunk_args(trades, indices, start, stop, heads)
            try:
                mined = self.chain.settle(
                    t, args, gas_limit=self.gas.gas_limit(stop - start, budget)
                )
            except (
                chain_errors.ChunkNotAtCursor,
                chain_errors.IntervalAlreadySettled,
                NonceConsumed,
            ):
                continue  # someone else moved the cursor: read it again
            except chain_errors.ReadingWindowOpen as err:
                tick.note(t, "reading_window_open", str(err))
                return False
            except chain_errors.EnforcedPause as err:
                tick.note(t, "paused", f"the market is paused; settlement waits ({err})")
                return False
            except OutOfGas:
                if stop - start <= 1:
                    raise SettlementFailed(
                        t, "gas_budget_too_small", "one trade does not fit the gas budget"
                    ) from None
                self.gas.out_of_gas()
                continue
            except LedgerError as err:
                raise SettlementFailed(t, revert_reason(err), str(err)) from None
            self.gas.observe(mined.gas_used, stop - start)
            self.store.count_tx(t, "settle")
            tick.emit(
                f"interval {t}: settled trades {start}..{stop - 1} of {len(trades)} in "
                f"{mined.tx_hash} ({mined.gas_used:,} gas)"
            )
            if stop == len(trades):
                return self.settled_final(t)  # the chunk that reached the last trade
        raise SettlementFailed(t, "no_progress", "settlement made no progress in 10,000 attempts")

    def settled_final(self, t: int) -> bool:
        """Whether ``t``, ``Settled`` at the head, is settled at the final block
        (:mod:`chain.finality`; at once on a chain whose mined blocks are final). Until it
        is, the interval stays in the loop: a chunk a reorganisation dropped moves the
        head's cursor back, and the next pass sends it again from there."""
        latest = self.chain.latest_block()
        final = self.chain.final_block(latest)
        if final >= latest or self.chain.interval(t, final).status == "settled":
            return True
        log.info("interval %d: settled at the head (block %d), waiting for finality", t, latest)
        return False


__all__ = ["ChunkSettler"]
