// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Custom errors of the EnergyMarket
/// @notice Every revert of the market is one of these (or an OpenZeppelin error), each with the
///         arguments a caller needs to see what went wrong. The Python client maps each to an
///         exception class of the same name (deploy/ledger_errors.py).
interface IEnergyMarketErrors {
    /// @notice Thrown when an address argument that must be set is the zero address.
    error ZeroAddress();

    /// @notice Thrown when a deposit or withdrawal amount is zero.
    error ZeroAmount();

    /// @notice Thrown when the constructor gets an interval length of zero.
    /// @param intervalSeconds The rejected interval length in seconds.
    error InvalidIntervalLength(uint64 intervalSeconds);

    /// @notice Thrown when terms are out of range: toleranceBps above 10,000 or a zero reading window.
    /// @param penaltyPricePerWh Proposed penalty price in token base units per Wh.
    /// @param toleranceBps Proposed tolerance in basis points of a trade's quantity.
    /// @param readingWindowSeconds Proposed reading window in seconds after an interval's end.
    error InvalidTerms(uint128 penaltyPricePerWh, uint16 toleranceBps, uint64 readingWindowSeconds);

    /// @notice Thrown when registering an address that is already a registered participant.
    /// @param participant The participant address.
    error ParticipantAlreadyRegistered(address participant);

    /// @notice Thrown when an action needs a registered participant and the address is not one.
    /// @param participant The address that is not (or no longer) registered.
    error ParticipantNotRegistered(address participant);

    /// @notice Thrown when a withdrawal asks for more than the caller's free balance.
    /// @param participant The caller.
    /// @param requested Requested amount in token base units.
    /// @param free Free balance in token base units.
    error InsufficientFreeBalance(address participant, uint256 requested, uint256 free);

    /// @notice Thrown when a balance would exceed 2^128 - 1 base units (balances are packed).
    /// @param participant Owner of the balance.
    /// @param amount The amount that did not fit, in token base units.
    error BalanceOverflow(address participant, uint256 amount);

    /// @notice Thrown when committing an interval that is already committed.
    /// @param interval Interval number.
    error IntervalAlreadyCommitted(uint64 interval);

    /// @notice Thrown when readings or settlement refer to an interval that was never committed.
    /// @param interval Interval number.
    error IntervalNotCommitted(uint64 interval);

    /// @notice Thrown when settling an interval that is already settled.
    /// @param interval Interval number.
    error IntervalAlreadySettled(uint64 interval);

    /// @notice Thrown when committing an interval whose delivery has already ended.
    /// @param interval Interval number.
    /// @param endTime Unix time (s) at which the interval's delivery ended.
    /// @param timestamp Current block time (s).
    error IntervalAlreadyEnded(uint64 interval, uint256 endTime, uint256 timestamp);

    /// @notice Thrown when a reading arrives before the interval's delivery has ended.
    /// @param interval Interval number.
    /// @param endTime Unix time (s) at which delivery ends.
    /// @param timestamp Current block time (s).
    error IntervalNotEnded(uint64 interval, uint256 endTime, uint256 timestamp);

    /// @notice Thrown when an interval's deadline or end does not fit the uint64 time range.
    /// @param interval Interval number.
    error IntervalOutOfRange(uint64 interval);

    /// @notice The interval starts later than MAX_COMMIT_LEAD_SECONDS after now: a commit may not
    ///         lock funds that far ahead.
    /// @param interval The interval number.
    /// @param startTime The interval's start (unix seconds).
    /// @param latestStart The latest start a commit may have now (unix seconds).
    error IntervalTooFarAhead(uint64 interval, uint256 startTime, uint256 latestStart);

    /// @notice The participant's registration changed less than the change window ago: an
    ///         interval committed before that change may still need the key in force then.
    /// @param participant The participant.
    /// @param until When the next change may be made (unix seconds).
    error RegistrationChangePending(address participant, uint256 until);

    /// @notice Thrown when a reading arrives at or after the interval's reading deadline.
    /// @param interval Interval number.
    /// @param deadline Reading deadline (Unix time, s), snapshotted at commit.
    /// @param timestamp Current block time (s).
    error ReadingWindowClosed(uint64 interval, uint256 deadline, uint256 timestamp);

    /// @notice Thrown when settlement is attempted before the reading deadline.
    /// @param interval Interval number.
    /// @param deadline Reading deadline (Unix time, s).
    /// @param timestamp Current block time (s).
    error ReadingWindowOpen(uint64 interval, uint256 deadline, uint256 timestamp);

    /// @notice Thrown when a reading's interval field differs from the interval being submitted.
    /// @param interval Interval the batch is for.
    /// @param readingInterval Interval named inside the reading.
    error ReadingIntervalMismatch(uint64 interval, uint64 readingInterval);

    /// @notice Thrown when a reading's signature does not recover to the participant's meter key.
    /// @param participant Participant named in the reading.
    /// @param signer Address recovered from the signature (zero when the signature is malformed).
    error InvalidMeterSignature(address participant, address signer);

    /// @notice Thrown when a participant's reading for the interval was already accepted.
    /// @param interval Interval number.
    /// @param participant Participant named in the reading.
    error ReadingAlreadySubmitted(uint64 interval, address participant);

    /// @notice Thrown when a party table is not strictly ascending by address (so has duplicates).
    /// @param position Position in the table of the first out-of-order entry.
    error PartiesNotAscending(uint256 position);

    /// @notice Thrown when a trade refers to a party position outside the party table.
    /// @param tradeIndex Position of the trade in the submitted list.
    /// @param partyIndex The out-of-range party position.
    /// @param partyCount Length of the party table.
    error PartyIndexOutOfRange(uint256 tradeIndex, uint256 partyIndex, uint256 partyCount);

    /// @notice Thrown when a trade has a quantity of zero Wh.
    /// @param tradeIndex Position of the trade in the submitted list.
    error ZeroQuantity(uint256 tradeIndex);

    /// @notice Thrown when a trade has a price of zero base units per Wh.
    /// @param tradeIndex Position of the trade in the submitted list.
    error ZeroPrice(uint256 tradeIndex);

    /// @notice Thrown when a trade's buyer and seller are the same participant.
    /// @param tradeIndex Position of the trade in the submitted list.
    /// @param participant The participant on both sides.
    error SelfTrade(uint256 tradeIndex, address participant);

    /// @notice Thrown when a seller's total sold energy in one interval exceeds 2^64 - 1 Wh.
    /// @param seller The seller.
    error SoldQuantityOverflow(address seller);

    /// @notice Thrown when a party's free balance cannot cover what the interval locks.
    /// @param participant The party.
    /// @param needed Payment plus bond to lock, in token base units.
    /// @param free Free balance in token base units.
    error InsufficientCollateral(address participant, uint256 needed, uint256 free);

    /// @notice Thrown when a settlement chunk does not start at the interval's cursor.
    /// @param interval Interval number.
    /// @param cursor Index of the next unsettled trade.
    /// @param firstIndex Index the chunk claimed to start at.
    error ChunkNotAtCursor(uint64 interval, uint256 cursor, uint256 firstIndex);

    /// @notice Thrown when a settlement chunk is empty or runs past the interval's last trade.
    /// @param interval Interval number.
    /// @param cursor Index of the next unsettled trade.
    /// @param length Number of trades in the chunk.
    /// @param tradeCount Number of trades committed for the interval.
    error ChunkOutOfRange(uint64 interval, uint256 cursor, uint256 length, uint256 tradeCount);

    /// @notice Thrown when a chunk's trades do not hash to the interval's commitment at the cursor.
    /// @param interval Interval number.
    /// @param cursor Index of the first trade of the rejected chunk.
    error TradesMismatch(uint64 interval, uint256 cursor);

    /// @notice Thrown when a later commit chunk carries another bookRoot than the first.
    /// @param interval Interval number.
    /// @param committed The first chunk's bookRoot.
    /// @param given The chunk's bookRoot.
    error BookRootMismatch(uint64 interval, bytes32 committed, bytes32 given);

    /// @notice Thrown when a commit chunk's chain head is not the tail its previous chunk named.
    /// @param interval Interval number.
    /// @param chunk Chunk number.
    error ChunkHeadMismatch(uint64 interval, uint16 chunk);

    /// @notice Thrown when an interval's commit would take more than MAX_COMMIT_CHUNKS chunks.
    /// @param interval Interval number.
    error TooManyCommitChunks(uint64 interval);

    /// @notice Thrown when a commit chunk has more than 65,536 parties or orders.
    /// @param count The count.
    error ChunkTooLarge(uint256 count);

    /// @notice Thrown when a party's registration changed between two chunks of one commit.
    /// @param participant The party.
    error RegistrationChangedDuringCommit(address participant);

    /// @notice Thrown when `orders` is not a whole number of four-word orders.
    /// @param words Number of words.
    error MalformedOrders(uint256 words);

    /// @notice Thrown when an order's fields are out of range (party position, side, flags,
    ///         node position, limit price above uint128).
    /// @param orderIndex Position of the order in the chunk.
    error MalformedOrder(uint256 orderIndex);

    /// @notice Thrown when the chunk's orders are not strictly ascending by digest.
    /// @param orderIndex Position of the first order out of order.
    error OrdersNotAscending(uint256 orderIndex);

    /// @notice Thrown when an order's signature is not its party's.
    /// @param orderIndex Position of the order in the chunk.
    /// @param participant The order's party.
    error BadOrderSignature(uint256 orderIndex, address participant);

    /// @notice Thrown when terms are set while scheduled terms may still meet an interval that
    ///         started before them.
    /// @param effectiveFrom The scheduled terms' first interval start.
    error TermsChangePending(uint64 effectiveFrom);

    /// @notice Thrown when an order is marked unparked but no earlier chunk parked it.
    /// @param orderIndex Position of the order in the chunk.
    /// @param orderId The order's digest.
    error OrderNotOpen(uint256 orderIndex, bytes32 orderId);

    /// @notice Thrown when a chunk's continued orders (digests and fills so far) are not
    ///         exactly the orders the chunk before left open.
    /// @param interval The interval.
    error OpenOrdersMismatch(uint64 interval);

    /// @notice Thrown when an order's trades add up to more than its quantity.
    /// @param orderId The order's digest.
    /// @param filledWh Its fill so far, Wh.
    /// @param quantityWh Its signed quantity, Wh.
    error OrderOverfilled(bytes32 orderId, uint256 filledWh, uint256 quantityWh);

    /// @notice Thrown when the last chunk of a commit leaves an order open.
    /// @param orderId The order's digest.
    error OrderLeftOpen(bytes32 orderId);

    /// @notice Thrown when a fresh order's lane bit (digest mod 15) is already set by an
    ///         earlier chunk's fresh order of the same party: it may be that same order.
    /// @param participant The party.
    /// @param bits The clashing bits.
    error OrderAlreadyFresh(address participant, uint32 bits);

    /// @notice Thrown when a seller sells in more than one chunk of a commit.
    /// @param participant The seller.
    /// @param soldInChunk 1: it sold in an earlier chunk.
    error SellerSpansChunks(address participant, uint16 soldInChunk);

    /// @notice Thrown when a trade does not match its orders' parties and sides.
    /// @param tradeIndex Position of the trade in the chunk.
    error TradeOrderMismatch(uint256 tradeIndex);

    /// @notice Thrown when a trade's price is above its bid's limit or below its ask's, or its
    ///         seller price (on a grid) below its ask's limit.
    /// @param tradeIndex Position of the trade in the chunk.
    /// @param price Trade price (or seller price), base units per Wh.
    /// @param bidLimit The bid's limit (for a seller price: the trade's price).
    /// @param askLimit The ask's limit.
    error PriceOutsideLimit(uint256 tradeIndex, uint256 price, uint256 bidLimit, uint256 askLimit);

    /// @notice Thrown when a trade's seller price is zero or above its (buyer) price.
    /// @param tradeIndex Position of the trade in the chunk.
    /// @param sellPrice The seller price.
    /// @param price The trade's price.
    error InvalidSellPrice(uint256 tradeIndex, uint256 sellPrice, uint256 price);

    /// @notice Thrown when `sellPrices` is neither empty nor ceil(trades / 2) words.
    /// @param expected ceil(trades / 2).
    /// @param actual The words given.
    error SellPricesLength(uint256 expected, uint256 actual);

    /// @notice Thrown when a chunk has seller prices but the interval has no gridRoot.
    error SellPricesWithoutGrid();

    /// @notice Thrown when a grid interval is committed with no grid operator set.
    error GridOperatorUnset();

    /// @notice Thrown when a later chunk's gridRoot differs from the first chunk's.
    /// @param interval Interval number.
    /// @param expected The first chunk's gridRoot.
    /// @param actual The chunk's gridRoot.
    error GridRootMismatch(uint64 interval, bytes32 expected, bytes32 actual);
}
