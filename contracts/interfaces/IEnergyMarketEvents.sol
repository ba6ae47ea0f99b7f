// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Events of the EnergyMarket
/// @notice Every state change emits one of these. An auditor rebuilds every balance from them:
///         free = deposits - withdrawals - locked collateral + settlement credits, and
///         locked = locked collateral - settlement releases. Trades themselves travel in the
///         calldata of `commitInterval`, bound to `IntervalCommitted` by two hashes.
interface IEnergyMarketEvents {
    /// @notice Emitted when the registrar registers a participant and its meter key.
    /// @param participant Participant (trading) address.
    /// @param meter Address of the meter key that signs the participant's readings.
    /// @param participantIndex Dense index given at first registration; kept for life.
    event ParticipantRegistered(address indexed participant, address indexed meter, uint32 participantIndex);

    /// @notice Emitted when a participant's meter key is replaced.
    /// @param participant Participant address.
    /// @param oldMeter Meter key that no longer signs for the participant.
    /// @param newMeter Meter key that signs from now on.
    event MeterRotated(address indexed participant, address indexed oldMeter, address indexed newMeter);

    /// @notice Emitted when a participant is deregistered; its balances stay withdrawable.
    /// @param participant Participant address.
    event ParticipantDeregistered(address indexed participant);

    /// @notice Emitted when terms are set: at deployment (from zero: every interval) and when the
    ///         admin schedules new ones.
    /// @param penaltyPricePerWh Penalty (and bond) rate in token base units per Wh.
    /// @param toleranceBps Shortfall tolerated without penalty, in basis points of quantity.
    /// @param readingWindowSeconds Seconds after an interval's end during which readings are accepted.
    /// @param effectiveFrom First interval start (Unix s) the terms apply to.
    event TermsChanged(uint128 penaltyPricePerWh, uint16 toleranceBps, uint64 readingWindowSeconds, uint64 effectiveFrom);

    /// @notice Emitted when a participant deposits tokens into its free balance.
    /// @param participant Depositor.
    /// @param amount Amount credited (the amount actually received), in token base units.
    event Deposited(address indexed participant, uint256 amount);

    /// @notice Emitted when a participant withdraws from its free balance.
    /// @param participant Withdrawer and receiver.
    /// @param amount Amount in token base units.
    event Withdrawn(address indexed participant, uint256 amount);

    /// @notice Emitted when an interval's cleared trades are committed (by its last chunk).
    /// @param interval Interval number.
    /// @param bookRoot Merkle root of the interval's signed order set (published by the market API).
    /// @param settlementHead Head of the trade hash chain (see TradeChain) that settlement checks.
    /// @param ordersDigest Fold of every trade's buy and sell order id, in commit order.
    /// @param tradeCount Number of trades.
    /// @param deadline Reading deadline (Unix time, s), snapshotted.
    /// @param penaltyPricePerWh Penalty rate snapshotted for this interval, base units per Wh.
    /// @param toleranceBps Tolerance snapshotted for this interval, basis points.
    /// @param firstBlock Block of the commit's first chunk (where its events start).
    event IntervalCommitted(
        uint64 indexed interval,
        bytes32 bookRoot,
        bytes32 settlementHead,
        bytes32 ordersDigest,
        uint64 tradeCount,
        uint64 deadline,
        uint128 penaltyPricePerWh,
        uint16 toleranceBps,
        uint64 firstBlock
    );

    /// @notice Emitted for every commit chunk: its trades, relay-proof (however the commit was
    ///         sent, settlement and the audit read the trades from here).
    /// @param interval Interval number.
    /// @param chunk Chunk number, from 1.
    /// @param firstIndex Interval trade index of the chunk's first trade.
    /// @param parties The chunk's party table.
    /// @param orderIds EIP-712 digests of the chunk's orders, as the trade words index them.
    /// @param trades Trade words (see IEnergyMarket.commitInterval).
    /// @param sellPrices Seller prices, two per word, or empty (see IEnergyMarket.commitInterval).
    /// @param tailHash Chain head after the chunk's last trade (zero on the last chunk): where
    ///        settlement of a commit left unfinished stops.
    event TradesCommitted(
        uint64 indexed interval,
        uint16 chunk,
        uint64 firstIndex,
        address[] parties,
        bytes32[] orderIds,
        uint256[] trades,
        uint256[] sellPrices,
        bytes32 tailHash
    );

    /// @notice Emitted at a grid interval's first chunk: its gridRoot and the grid operator it
    ///         snapshotted.
    /// @param interval Interval number.
    /// @param gridRoot keccak256 of the interval's canonical grid document.
    /// @param gridOperator Account credited with the interval's grid revenue.
    event GridCommitted(uint64 indexed interval, bytes32 gridRoot, address gridOperator);

    /// @notice Emitted per settled chunk of a grid interval whose trades delivered a price
    ///         difference: sum of delivered * (price - sellPrice), credited to the operator's
    ///         free balance.
    /// @param interval Interval number.
    /// @param gridOperator The interval's grid operator.
    /// @param amount Base units credited.
    event GridRevenueCredited(uint64 indexed interval, address indexed gridOperator, uint256 amount);

    /// @notice Emitted when the admin sets the grid operator.
    /// @param gridOperator The new grid operator (zero: none).
    event GridOperatorChanged(address gridOperator);

    /// @notice Emitted when the registrar records a participant's grid node.
    /// @param participant The participant.
    /// @param node keccak256 of the node id's UTF-8 bytes.
    event NodeRecorded(address indexed participant, bytes32 node);

    /// @notice Emitted once per commit chunk: each party's free balance moved to locked (one
    ///         log per chunk rather than per party: a party costs 64 bytes of log data).
    /// @param interval Interval number.
    /// @param participants The chunk's parties (ascending).
    /// @param amounts Per party, buyer payments plus seller bonds locked, in token base units
    ///        (zero for a party that locks nothing in this chunk).
    event CollateralLocked(uint64 indexed interval, address[] participants, uint256[] amounts);

    /// @notice Emitted when a meter-signed reading is accepted.
    /// @param interval Interval number.
    /// @param participant Participant the meter belongs to.
    /// @param importedWh Energy imported during the interval, Wh (reporting only).
    /// @param exportedWh Energy exported during the interval, Wh (caps a seller's delivery).
    event ReadingSubmitted(uint64 indexed interval, address indexed participant, uint64 importedWh, uint64 exportedWh);

    /// @notice Emitted once per trade when it settles (exactly once).
    /// @param interval Interval number.
    /// @param tradeIndex Position of the trade in commit order.
    /// @param deliveredWh Energy allocated to the trade, Wh.
    /// @param paymentBaseUnits deliveredWh * price, moved from the buyer's lock to the seller.
    /// @param refundBaseUnits (quantity - deliveredWh) * price, returned to the buyer.
    /// @param penaltyBaseUnits Penalty paid from the seller's bond to the buyer.
    event TradeSettled(
        uint64 indexed interval,
        uint256 tradeIndex,
        uint64 deliveredWh,
        uint256 paymentBaseUnits,
        uint256 refundBaseUnits,
        uint256 penaltyBaseUnits
    );

    /// @notice Emitted once per settlement chunk with each party's netted balance change (one
    ///         log per chunk rather than per party).
    /// @param interval Interval number.
    /// @param participants The chunk's parties (ascending).
    /// @param releasedBaseUnits Per party, the amount removed from its locked balance.
    /// @param creditedBaseUnits Per party, the amount added to its free balance (a party with
    ///        both zero was not touched).
    event ParticipantSettled(
        uint64 indexed interval, address[] participants, uint256[] releasedBaseUnits, uint256[] creditedBaseUnits
    );

    /// @notice Emitted when the last trade of an interval has settled.
    /// @param interval Interval number.
    event IntervalSettled(uint64 indexed interval);
}
