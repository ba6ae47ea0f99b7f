"""The ``commitment`` check: the trades read from the calldata are the ones the event commits.

``IntervalCommitted`` carries no trades; they travel in the ``commitInterval`` calldata, bound to
the event by two hashes (:mod:`ledger.trade_chain`): ``ordersDigest`` folds each trade's order
ids and ``settlementHead`` heads the hash chain settlement replays. Their count is
``tradeCount``, and ``intervalInfo(t)`` agrees with the event.
"""

from __future__ import annotations

from collections.abc import Mapping

from audit.checks.violations import COMMITMENT, CheckLog, hex_of
from audit.evidence import CommitRecord
from ledger.records import IntervalInfo
from ledger.trade_chain import orders_digest, settlement_chain


def check_commitment(
    commit: CommitRecord,
    state: IntervalInfo | None,
    seller_index: Mapping[str, int],
    checks: CheckLog,
) -> None:
    """The ``commitment`` check: calldata trades are bound to the event; state agrees.

    ``seller_index`` is each registered participant's index (checksum address): the trade
    hash chain names sellers by it.
    """
    event = commit.event
    if state is None or state.status == "none":
        checks.fail(COMMITMENT, "intervalInfo says the interval is not committed")
    else:
        for what, found, expected in (
            ("tradeCount", state.trade_count, event.trade_count),
            ("deadline", state.deadline, event.deadline),
            ("penaltyPricePerWh", state.penalty_price_per_wh, event.penalty_price_per_wh),
            ("toleranceBps", state.tolerance_bps, event.tolerance_bps),
        ):
            if found != expected:
                checks.fail(
                    COMMITMENT,
                    f"intervalInfo {what} expected {expected} (IntervalCommitted) found {found}",
                )
    trades = commit.trades
    if trades is None:
        checks.fail(
            COMMITMENT,
            f"the trades of commit transaction {event.tx_hash} cannot be read: "
            f"{commit.trades_error}",
        )
        return
    if len(trades) != event.trade_count:
        checks.fail(
            COMMITMENT,
            f"tradeCount expected {event.trade_count} found {len(trades)} trades in the calldata",
        )
    digest = orders_digest(trades)
    if digest != event.orders_digest:
        checks.fail(
            COMMITMENT,
            f"ordersDigest expected {hex_of(event.orders_digest)} found {hex_of(digest)} from "
            "the calldata trades",
        )
    missing = sorted({t.seller for t in trades} - set(seller_index))
    if missing:
        checks.fail(COMMITMENT, f"sellers never registered: {', '.join(missing)}")
        return
    head = settlement_chain(trades, seller_index)[0]
    if head != event.settlement_head:
        checks.fail(
            COMMITMENT,
            f"settlementHead expected {hex_of(event.settlement_head)} found {hex_of(head)} from "
            "the calldata trades",
        )


__all__ = [
    "check_commitment",
]
