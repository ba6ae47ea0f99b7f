"""Python exceptions for every custom error the EnergyMarket contract can revert with.

Each Solidity custom error (the market's own and the OpenZeppelin ones in its ABI) has one
class here with the same name, carrying the decoded arguments as attributes in snake case
(``InsufficientCollateral.needed``). :data:`ERRORS_BY_NAME` is the one table from Solidity
error name to Python class; ``tests/test_ledger_errors.py`` fails when the compiled ABI has
an error the table lacks. :func:`chain.reverts.decode_revert` builds them from revert data,
and :mod:`settlement.model` raises the same classes, so the model and the chain can be
compared exception for exception.

This module imports nothing but the error root, so the pure model may use it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ledger.errors import WattledgerError


class LedgerError(WattledgerError):
    """Raised when an EnergyMarket call reverts (or the model predicts it would).

    Subclasses match Solidity custom errors one to one. ``solidity_name`` and ``fields`` give
    the error's name and argument names; ``values`` the decoded argument values in order.
    """

    code = "ledger_reverted"
    solidity_name: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *values: Any, hint: str | None = None) -> None:
        if len(values) != len(self.fields):
            raise TypeError(
                f"{type(self).__name__} takes {len(self.fields)} values, got {len(values)}"
            )
        self.values: tuple[Any, ...] = tuple(values)
        for name, value in zip(self.fields, values, strict=True):
            setattr(self, name, value)
        shown = ", ".join(f"{n}={_show(v)}" for n, v in zip(self.fields, values, strict=True))
        super().__init__(f"{self.solidity_name or type(self).__name__}({shown})", hint=hint)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.values == getattr(other, "values", None)

    def __hash__(self) -> int:
        return hash((type(self), self.values))

    def __getattr__(self, name: str) -> Any:  # typed access for decoded fields
        raise AttributeError(name)


class LedgerRevert(LedgerError):
    """Raised when a market call reverts without a known custom error (a panic or no data).

    ``reason`` holds what the node reported.
    """

    code = "ledger_reverted_unknown"
    solidity_name = ""
    fields = ("reason",)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


class AccessControlBadConfirmation(LedgerError):
    """Raised when an account renounces a role for another account (OpenZeppelin AccessControl)."""

    code = "access_control_bad_confirmation"
    solidity_name = "AccessControlBadConfirmation"
    fields = ()


class AccessControlUnauthorizedAccount(LedgerError):
    """Raised when the caller lacks the role a function needs, e.g. a commit by a non-operator."""

    code = "access_control_unauthorized_account"
    solidity_name = "AccessControlUnauthorizedAccount"
    fields = ("account", "needed_role")


class BalanceOverflow(LedgerError):
    """Raised when a balance would exceed 2**128 - 1 base units (balances share one slot)."""

    code = "balance_overflow"
    solidity_name = "BalanceOverflow"
    fields = ("participant", "amount")


class ChunkNotAtCursor(LedgerError):
    """Raised when a settlement chunk does not start at the cursor (another settler was first)."""

    code = "chunk_not_at_cursor"
    solidity_name = "ChunkNotAtCursor"
    fields = ("interval", "cursor", "first_index")


class ChunkOutOfRange(LedgerError):
    """Raised when a settlement chunk is empty while trades remain, or runs past the last trade."""

    code = "chunk_out_of_range"
    solidity_name = "ChunkOutOfRange"
    fields = ("interval", "cursor", "length", "trade_count")


class EnforcedPause(LedgerError):
    """Raised when commit, readings, settlement or deposit is attempted while paused."""

    code = "enforced_pause"
    solidity_name = "EnforcedPause"
    fields = ()


class ExpectedPause(LedgerError):
    """Raised when unpause is called while the market is not paused."""

    code = "expected_pause"
    solidity_name = "ExpectedPause"
    fields = ()


class InsufficientCollateral(LedgerError):
    """Raised when a commit would lock more than a party's free balance."""

    code = "insufficient_collateral"
    solidity_name = "InsufficientCollateral"
    fields = ("participant", "needed", "free")


class InsufficientFreeBalance(LedgerError):
    """Raised when a withdrawal asks for more than the caller's free balance."""

    code = "insufficient_free_balance"
    solidity_name = "InsufficientFreeBalance"
    fields = ("participant", "requested", "free")


class IntervalAlreadyCommitted(LedgerError):
    """Raised when an interval is committed a second time."""

    code = "interval_already_committed"
    solidity_name = "IntervalAlreadyCommitted"
    fields = ("interval",)


class IntervalAlreadyEnded(LedgerError):
    """Raised when an interval is committed after its delivery ended."""

    code = "interval_already_ended"
    solidity_name = "IntervalAlreadyEnded"
    fields = ("interval", "end_time", "timestamp")


class IntervalAlreadySettled(LedgerError):
    """Raised when settle is called on an interval that is already settled."""

    code = "interval_already_settled"
    solidity_name = "IntervalAlreadySettled"
    fields = ("interval",)


class IntervalNotCommitted(LedgerError):
    """Raised when readings or settlement name an interval that was never committed."""

    code = "interval_not_committed"
    solidity_name = "IntervalNotCommitted"
    fields = ("interval",)


class IntervalNotEnded(LedgerError):
    """Raised when a reading is submitted before its interval's delivery ended."""

    code = "interval_not_ended"
    solidity_name = "IntervalNotEnded"
    fields = ("interval", "end_time", "timestamp")


class IntervalOutOfRange(LedgerError):
    """Raised when an interval's deadline does not fit the contract's uint64 time range."""

    code = "interval_out_of_range"
    solidity_name = "IntervalOutOfRange"
    fields = ("interval",)


class IntervalTooFarAhead(LedgerError):
    """Raised when a commit names an interval that starts more than MAX_COMMIT_LEAD_SECONDS
    after the block's time: no commit may lock funds that far ahead."""

    code = "interval_too_far_ahead"
    solidity_name = "IntervalTooFarAhead"
    fields = ("interval", "start_time", "latest_start")


class RegistrationChangePending(LedgerError):
    """Raised when a participant's meter or registration changes again within the change window
    of its previous change (an interval committed before that change may still need the key
    in force then)."""

    code = "registration_change_pending"
    solidity_name = "RegistrationChangePending"
    fields = ("participant", "until")


class InvalidIntervalLength(LedgerError):
    """Raised when the market is deployed with an interval length of zero."""

    code = "invalid_interval_length"
    solidity_name = "InvalidIntervalLength"
    fields = ("interval_seconds",)


class InvalidMeterSignature(LedgerError):
    """Raised when a reading's signature does not recover to the participant's meter key."""

    code = "invalid_meter_signature"
    solidity_name = "InvalidMeterSignature"
    fields = ("participant", "signer")


class InvalidShortString(LedgerError):
    """Raised when an EIP-712 name or version string is malformed (OpenZeppelin ShortStrings)."""

    code = "invalid_short_string"
    solidity_name = "InvalidShortString"
    fields = ()


class InvalidTerms(LedgerError):
    """Raised when terms are out of range (tolerance above 10,000 bps or a zero reading window)."""

    code = "invalid_terms"
    solidity_name = "InvalidTerms"
    fields = ("penalty_price_per_wh", "tolerance_bps", "reading_window_seconds")


class ParticipantAlreadyRegistered(LedgerError):
    """Raised when a registered participant is registered again."""

    code = "participant_already_registered"
    solidity_name = "ParticipantAlreadyRegistered"
    fields = ("participant",)


class ParticipantNotRegistered(LedgerError):
    """Raised when an action needs a registered participant, e.g. a trade party or a reading."""

    code = "participant_not_registered"
    solidity_name = "ParticipantNotRegistered"
    fields = ("participant",)


class PartiesNotAscending(LedgerError):
    """Raised when a party table is not strictly ascending by address."""

    code = "parties_not_ascending"
    solidity_name = "PartiesNotAscending"
    fields = ("position",)


class PartyIndexOutOfRange(LedgerError):
    """Raised when a trade names a party position outside the party table."""

    code = "party_index_out_of_range"
    solidity_name = "PartyIndexOutOfRange"
    fields = ("trade_index", "party_index", "party_count")


class ReadingAlreadySubmitted(LedgerError):
    """Raised when a participant's reading for an interval was already accepted (a replay)."""

    code = "reading_already_submitted"
    solidity_name = "ReadingAlreadySubmitted"
    fields = ("interval", "participant")


class ReadingIntervalMismatch(LedgerError):
    """Raised when a reading names another interval than the batch it is submitted in."""

    code = "reading_interval_mismatch"
    solidity_name = "ReadingIntervalMismatch"
    fields = ("interval", "reading_interval")


class ReadingWindowClosed(LedgerError):
    """Raised when a reading arrives at or after the interval's reading deadline."""

    code = "reading_window_closed"
    solidity_name = "ReadingWindowClosed"
    fields = ("interval", "deadline", "timestamp")


class ReadingWindowOpen(LedgerError):
    """Raised when settlement is attempted before the reading deadline."""

    code = "reading_window_open"
    solidity_name = "ReadingWindowOpen"
    fields = ("interval", "deadline", "timestamp")


class ReentrancyGuardReentrantCall(LedgerError):
    """Raised when a token calls back into deposit or withdraw during a transfer."""

    code = "reentrancy_guard_reentrant_call"
    solidity_name = "ReentrancyGuardReentrantCall"
    fields = ()


class SafeERC20FailedOperation(LedgerError):
    """Raised when the settlement token's transfer or transferFrom fails without reverting."""

    code = "safe_e_r_c20_failed_operation"
    solidity_name = "SafeERC20FailedOperation"
    fields = ("token",)


class SelfTrade(LedgerError):
    """Raised when a trade's buyer and seller are the same participant."""

    code = "self_trade"
    solidity_name = "SelfTrade"
    fields = ("trade_index", "participant")


class SoldQuantityOverflow(LedgerError):
    """Raised when a seller's sold total in one interval exceeds 2**64 - 1 Wh."""

    code = "sold_quantity_overflow"
    solidity_name = "SoldQuantityOverflow"
    fields = ("seller",)


class StringTooLong(LedgerError):
    """Raised when an EIP-712 name or version string is too long (OpenZeppelin ShortStrings)."""

    code = "string_too_long"
    solidity_name = "StringTooLong"
    fields = ("value",)


class TradesMismatch(LedgerError):
    """Raised when a settlement chunk's trades are not the committed ones."""

    code = "trades_mismatch"
    solidity_name = "TradesMismatch"
    fields = ("interval", "cursor")


class ZeroAddress(LedgerError):
    """Raised when a participant, meter, token or admin address is zero."""

    code = "zero_address"
    solidity_name = "ZeroAddress"
    fields = ()


class ZeroAmount(LedgerError):
    """Raised when a deposit or withdrawal of zero is requested."""

    code = "zero_amount"
    solidity_name = "ZeroAmount"
    fields = ()


class ZeroPrice(LedgerError):
    """Raised when a trade has a price of zero base units per Wh."""

    code = "zero_price"
    solidity_name = "ZeroPrice"
    fields = ("trade_index",)


class ZeroQuantity(LedgerError):
    """Raised when a trade has a quantity of zero Wh."""

    code = "zero_quantity"
    solidity_name = "ZeroQuantity"
    fields = ("trade_index",)


class BookRootMismatch(LedgerError):
    """Raised when a later commit chunk carries another bookRoot than the first."""

    code = "book_root_mismatch"
    solidity_name = "BookRootMismatch"
    fields = ("interval", "committed", "given")


class ChunkHeadMismatch(LedgerError):
    """Raised when a commit chunk's chain head is not the tail its previous chunk named."""

    code = "chunk_head_mismatch"
    solidity_name = "ChunkHeadMismatch"
    fields = ("interval", "chunk")


class TooManyCommitChunks(LedgerError):
    """Raised when an interval's commit would take more than MAX_COMMIT_CHUNKS chunks."""

    code = "too_many_commit_chunks"
    solidity_name = "TooManyCommitChunks"
    fields = ("interval",)


class ChunkTooLarge(LedgerError):
    """Raised when a commit chunk has more than 65,536 parties or orders."""

    code = "chunk_too_large"
    solidity_name = "ChunkTooLarge"
    fields = ("count",)


class RegistrationChangedDuringCommit(LedgerError):
    """Raised when a party's registration changed between two chunks of one commit."""

    code = "registration_changed_during_commit"
    solidity_name = "RegistrationChangedDuringCommit"
    fields = ("participant",)


class MalformedOrders(LedgerError):
    """Raised when a commit's orders are not a whole number of four-word orders."""

    code = "malformed_orders"
    solidity_name = "MalformedOrders"
    fields = ("words",)


class MalformedOrder(LedgerError):
    """Raised when an order's fields are out of range."""

    code = "malformed_order"
    solidity_name = "MalformedOrder"
    fields = ("order_index",)


class OrdersNotAscending(LedgerError):
    """Raised when a commit chunk's orders are not strictly ascending by digest."""

    code = "orders_not_ascending"
    solidity_name = "OrdersNotAscending"
    fields = ("order_index",)


class BadOrderSignature(LedgerError):
    """Raised when an order's signature is not its party's."""

    code = "bad_order_signature"
    solidity_name = "BadOrderSignature"
    fields = ("order_index", "participant")


class TermsChangePending(LedgerError):
    """Raised when terms are set while scheduled terms may still meet an interval that
    started before them."""

    code = "terms_change_pending"
    solidity_name = "TermsChangePending"
    fields = ("effective_from",)


class OrderNotOpen(LedgerError):
    """Raised when an order is marked unparked but no earlier chunk parked it."""

    code = "order_not_open"
    solidity_name = "OrderNotOpen"
    fields = ("order_index", "order_id")


class OpenOrdersMismatch(LedgerError):
    """Raised when a commit chunk's continued orders (digests and fills) are not exactly the
    orders the chunk before left open."""

    code = "open_orders_mismatch"
    solidity_name = "OpenOrdersMismatch"
    fields = ("interval",)


class OrderOverfilled(LedgerError):
    """Raised when an order's trades add up to more than its signed quantity."""

    code = "order_overfilled"
    solidity_name = "OrderOverfilled"
    fields = ("order_id", "filled_wh", "quantity_wh")


class OrderLeftOpen(LedgerError):
    """Raised when the last chunk of a commit leaves an order open."""

    code = "order_left_open"
    solidity_name = "OrderLeftOpen"
    fields = ("order_id",)


class OrderAlreadyFresh(LedgerError):
    """Raised when a fresh order's bit in its party's commit lane was set by an earlier
    chunk (it may be the same order, presented fresh twice)."""

    code = "order_already_fresh"
    solidity_name = "OrderAlreadyFresh"
    fields = ("participant", "bits")


class SellerSpansChunks(LedgerError):
    """Raised when a seller sells in more than one chunk of a commit."""

    code = "seller_spans_chunks"
    solidity_name = "SellerSpansChunks"
    fields = ("participant", "sold_in_chunk")


class TradeOrderMismatch(LedgerError):
    """Raised when a trade does not match its orders' parties and sides."""

    code = "trade_order_mismatch"
    solidity_name = "TradeOrderMismatch"
    fields = ("trade_index",)


class PriceOutsideLimit(LedgerError):
    """Raised when a trade's price is above its bid's limit or below its ask's."""

    code = "price_outside_limit"
    solidity_name = "PriceOutsideLimit"
    fields = ("trade_index", "price", "bid_limit", "ask_limit")


class InvalidSellPrice(LedgerError):
    """Raised when a trade's seller price is zero or above its (buyer) price."""

    code = "invalid_sell_price"
    solidity_name = "InvalidSellPrice"
    fields = ("trade_index", "sell_price", "price")


class SellPricesLength(LedgerError):
    """Raised when a chunk's ``sellPrices`` is neither empty nor ceil(trades / 2) words."""

    code = "sell_prices_length"
    solidity_name = "SellPricesLength"
    fields = ("expected", "actual")


class SellPricesWithoutGrid(LedgerError):
    """Raised when a chunk has seller prices but the interval no gridRoot."""

    code = "sell_prices_without_grid"
    solidity_name = "SellPricesWithoutGrid"
    fields = ()


class GridOperatorUnset(LedgerError):
    """Raised when a grid interval is committed with no grid operator set."""

    code = "grid_operator_unset"
    solidity_name = "GridOperatorUnset"
    fields = ()


class GridRootMismatch(LedgerError):
    """Raised when a later commit chunk's gridRoot differs from the first chunk's."""

    code = "grid_root_mismatch"
    solidity_name = "GridRootMismatch"
    fields = ("interval", "expected", "actual")


ERRORS_BY_NAME: dict[str, type[LedgerError]] = {
    "AccessControlBadConfirmation": AccessControlBadConfirmation,
    "AccessControlUnauthorizedAccount": AccessControlUnauthorizedAccount,
    "BadOrderSignature": BadOrderSignature,
    "BalanceOverflow": BalanceOverflow,
    "BookRootMismatch": BookRootMismatch,
    "ChunkHeadMismatch": ChunkHeadMismatch,
    "ChunkNotAtCursor": ChunkNotAtCursor,
    "ChunkOutOfRange": ChunkOutOfRange,
    "ChunkTooLarge": ChunkTooLarge,
    "EnforcedPause": EnforcedPause,
    "ExpectedPause": ExpectedPause,
    "GridOperatorUnset": GridOperatorUnset,
    "GridRootMismatch": GridRootMismatch,
    "InsufficientCollateral": InsufficientCollateral,
    "InsufficientFreeBalance": InsufficientFreeBalance,
    "IntervalAlreadyCommitted": IntervalAlreadyCommitted,
    "IntervalAlreadyEnded": IntervalAlreadyEnded,
    "IntervalAlreadySettled": IntervalAlreadySettled,
    "IntervalNotCommitted": IntervalNotCommitted,
    "IntervalNotEnded": IntervalNotEnded,
    "IntervalOutOfRange": IntervalOutOfRange,
    "IntervalTooFarAhead": IntervalTooFarAhead,
    "InvalidIntervalLength": InvalidIntervalLength,
    "InvalidMeterSignature": InvalidMeterSignature,
    "InvalidSellPrice": InvalidSellPrice,
    "InvalidShortString": InvalidShortString,
    "InvalidTerms": InvalidTerms,
    "MalformedOrder": MalformedOrder,
    "MalformedOrders": MalformedOrders,
    "OrderAlreadyFresh": OrderAlreadyFresh,
    "OrderLeftOpen": OrderLeftOpen,
    "OpenOrdersMismatch": OpenOrdersMismatch,
    "OrderNotOpen": OrderNotOpen,
    "TermsChangePending": TermsChangePending,
    "OrderOverfilled": OrderOverfilled,
    "OrdersNotAscending": OrdersNotAscending,
    "ParticipantAlreadyRegistered": ParticipantAlreadyRegistered,
    "ParticipantNotRegistered": ParticipantNotRegistered,
    "PartiesNotAscending": PartiesNotAscending,
    "PartyIndexOutOfRange": PartyIndexOutOfRange,
    "PriceOutsideLimit": PriceOutsideLimit,
    "ReadingAlreadySubmitted": ReadingAlreadySubmitted,
    "ReadingIntervalMismatch": ReadingIntervalMismatch,
    "ReadingWindowClosed": ReadingWindowClosed,
    "ReadingWindowOpen": ReadingWindowOpen,
    "ReentrancyGuardReentrantCall": ReentrancyGuardReentrantCall,
    "RegistrationChangePending": RegistrationChangePending,
    "RegistrationChangedDuringCommit": RegistrationChangedDuringCommit,
    "SafeERC20FailedOperation": SafeERC20FailedOperation,
    "SelfTrade": SelfTrade,
    "SellPricesLength": SellPricesLength,
    "SellPricesWithoutGrid": SellPricesWithoutGrid,
    "SellerSpansChunks": SellerSpansChunks,
    "SoldQuantityOverflow": SoldQuantityOverflow,
    "StringTooLong": StringTooLong,
    "TooManyCommitChunks": TooManyCommitChunks,
    "TradeOrderMismatch": TradeOrderMismatch,
    "TradesMismatch": TradesMismatch,
    "ZeroAddress": ZeroAddress,
    "ZeroAmount": ZeroAmount,
    "ZeroPrice": ZeroPrice,
    "ZeroQuantity": ZeroQuantity,
}
"""Solidity custom error name -> Python exception class (the one mapping table)."""

__all__ = ["ERRORS_BY_NAME", "LedgerError", "LedgerRevert", *ERRORS_BY_NAME]
