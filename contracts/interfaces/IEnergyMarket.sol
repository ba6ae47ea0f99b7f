// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IEnergyMarketErrors} from "./IEnergyMarketErrors.sol";
import {IEnergyMarketEvents} from "./IEnergyMarketEvents.sol";

/// @title EnergyMarket: escrow, dynamic energy contracts, meter readings, chunked settlement
/// @notice Units: energy in Wh (uint64), money in token base units, prices in base units per Wh
///         (uint128). Interval t delivers during [epoch + t*intervalSeconds, epoch + (t+1)*intervalSeconds).
///         Settlement rules are those of DESIGN.md section 5, mirrored by settlement/model.py.
interface IEnergyMarket is IEnergyMarketErrors, IEnergyMarketEvents {
    /// @notice Terms applied to intervals committed while they are in force.
    /// @param penaltyPricePerWh Penalty and bond rate, base units per Wh.
    /// @param toleranceBps Shortfall tolerated without penalty, basis points of a trade's quantity.
    /// @param readingWindowSeconds Readings are accepted for this long after an interval ends.
    struct Terms {
        uint128 penaltyPricePerWh;
        uint16 toleranceBps;
        uint64 readingWindowSeconds;
    }

    /// @notice A party of a settlement chunk: its address and its participant index.
    struct SettleParty {
        address account;
        uint32 participantIndex;
    }

    /// @notice A committed trade as replayed to settlement, with its seller's running totals.
    /// @dev sellerSoldWh is the seller's total sold in the interval; sellerSoldBeforeWh the sum of
    ///      the seller's earlier trades in commit order. Both were fixed (and hashed) at commit.
    ///      priceWord is the chain link's price word: pricePerWh (bits 0-127, what the buyer
    ///      pays) | (pricePerWh - sellPrice) << 128 (zero off a grid; see commitInterval).
    struct SettleTrade {
        uint32 buyer;
        uint32 seller;
        uint64 quantityWh;
        uint256 priceWord;
        uint64 sellerSoldWh;
        uint64 sellerSoldBeforeWh;
    }

    /// @notice A meter reading with its EIP-712 signature in compact (EIP-2098) form.
    struct MeterReading {
        address participant;
        uint64 interval;
        uint64 importedWh;
        uint64 exportedWh;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice Lifecycle of an interval.
    enum IntervalStatus {
        None,
        Committed,
        Settled,
        Committing
    }

    /// @notice Stored state of an interval, as returned by `intervalInfo`.
    struct IntervalInfo {
        IntervalStatus status;
        uint64 tradeCount;
        uint64 cursor;
        uint64 deadline;
        uint16 toleranceBps;
        uint128 penaltyPricePerWh;
        bytes32 bookRoot;
        bytes32 remainingHash;
    }

    // ---------------------------------------------------------------- participants

    /// @notice Registers `participant` with the meter key that signs its readings.
    /// @dev Caller needs REGISTRAR_ROLE. A re-registered participant keeps its first index.
    ///      Reverts:
    ///      - ZeroAddress if `participant` or `meter` is zero;
    ///      - ParticipantAlreadyRegistered if it is registered;
    ///      - RegistrationChangePending when re-registering within the change window of its
    ///        previous change (see rotateMeter).
    /// @param participant Trading address of the participant.
    /// @param meter Address of the participant's meter signing key.
    function registerParticipant(address participant, address meter) external;

    /// @notice Replaces the meter key of a registered participant.
    /// @dev Caller needs REGISTRAR_ROLE. The new key signs the readings of intervals committed
    ///      from now on; an interval committed before keeps the key it was committed under
    ///      (meterFor), so a rotation cannot force a penalty or let a new key forge a reading.
    ///      Reverts:
    ///      - ZeroAddress if `newMeter` is zero;
    ///      - ParticipantNotRegistered if `participant` is not registered;
    ///      - RegistrationChangePending within MAX_COMMIT_LEAD_SECONDS + the interval length +
    ///        MAX_READING_WINDOW_SECONDS of the participant's previous change.
    /// @param participant Participant address.
    /// @param newMeter Address of the new meter signing key.
    function rotateMeter(address participant, address newMeter) external;

    /// @notice Deregisters a participant: no new trades or readings; balances stay withdrawable.
    /// @dev Caller needs REGISTRAR_ROLE. Committed trades still settle, and readings of intervals
    ///      committed while it was registered still count (with the meter key of that commit).
    ///      Reverts: ParticipantNotRegistered if `participant` is not registered;
    ///      RegistrationChangePending within the change window of its previous change.
    /// @param participant Participant address.
    function deregisterParticipant(address participant) external;

    // ---------------------------------------------------------------- escrow

    /// @notice Moves `amount` tokens from the caller into its free balance (needs an allowance).
    /// @dev Credits the amount actually received, so fee-on-transfer tokens keep the invariant.
    ///      Reverts:
    ///      - EnforcedPause when paused;
    ///      - ZeroAmount if `amount` is zero;
    ///      - ParticipantNotRegistered if the caller is not registered;
    ///      - BalanceOverflow if the free balance would exceed 2^128 - 1;
    ///      - SafeERC20FailedOperation or the token's error if the transfer fails.
    /// @param amount Amount in token base units.
    function deposit(uint256 amount) external;

    /// @notice Sends `amount` of the caller's free balance to the caller. Works while paused.
    /// @dev Reverts:
    ///      - ZeroAmount if `amount` is zero;
    ///      - InsufficientFreeBalance if `amount` exceeds the caller's free balance.
    /// @param amount Amount in token base units.
    function withdraw(uint256 amount) external;

    // ---------------------------------------------------------------- intervals

    /// @notice Commits the cleared trades of interval `t` as dynamic energy contracts, each one
    ///         backed by its buyer's and its seller's EIP-712 signed orders, in one or more
    ///         chunks (transactions) that extend one hash chain.
    /// @dev Caller needs OPERATOR_ROLE. Every trade names a buy order and a sell order of the
    ///      chunk; the contract recovers each order's signer from its EIP-712 digest (interval
    ///      `t`, the order's party) and checks: the signer is the registered party (or its
    ///      ERC-1271 contract accepts the signature), sides, price <= the bid's limit and >= the
    ///      ask's, and every order's total fill over the chunks <= its quantity. Locks quantity *
    ///      price of each buyer and quantity * penaltyPrice (the bond) of each seller, netted per
    ///      party; the first chunk snapshots the terms. Stores only a hash chain over the trades
    ///      and emits each chunk's trades in TradesCommitted, from which settlement replays them.
    ///
    ///      Chunks: a chunk whose `tailHash` is not zero leaves the commit open; the next chunk
    ///      must carry the same bookRoot and produce `tailHash` as its chain head; the chunk
    ///      with `tailHash` zero completes it (IntervalCommitted). A commit left open when the
    ///      interval ends settles as far as its chunks went. Across chunks an order comes fresh
    ///      once (a per-party bitmap of digest mod 15 refuses a second fresh order on a set
    ///      bit), the orders a chunk leaves open for the next chunk (flag 2) are exactly the ones
    ///      the next chunk continues (flag 1; the chunk stores a digest of their ids and fills),
    ///      an order left open for a later chunk is parked (flag 8: its fill is stored) and
    ///      unparked there (flag 4), and a seller sells in one chunk.
    ///
    ///      Encoding (positions are 16-bit): `orders` holds four words per order, strictly
    ///      ascending by digest: word 0 = party position (bits 0-15) | side (16-23, 0 buy,
    ///      1 sell) | flags (24-31) | node position in `nodes` (32-63) | quantityWh (64-127) |
    ///      nonce (128-191) | expiry (192-255); `nodes` holds the keccak256 of each grid node id
    ///      the chunk's orders name (the Order's signed `node`, "root" off a grid);
    ///      word 1 = pricePerWh limit; words 2, 3 = the signature's r and vs (EIP-2098), or,
    ///      for a continued order (not checked again), its fill so far and zero, and for an
    ///      unparked one, two zero words.
    ///      `trades` holds one word per trade: buyer position (0-15) | seller position (16-31) |
    ///      buy order (32-47) | sell order (48-63) | quantityWh (64-127) | pricePerWh (128-255);
    ///      pricePerWh is what the buyer pays.
    ///      Grid markets (GRID.md section 8): `sellPrices` is empty when every trade's seller
    ///      receives its price (every non-grid market), else it holds two uint128 seller prices
    ///      per word, trade 2k in bits 0-127 and trade 2k+1 in bits 128-255 (ceil(n/2) words;
    ///      the unused high half of an odd chunk's last word is zero). A seller price must be in
    ///      [1, pricePerWh]; the difference times the delivered Wh is the grid operator's at
    ///      settlement. The chain link's price word is pricePerWh | (pricePerWh - sellPrice) << 128,
    ///      so a non-grid link is unchanged. A nonzero `gridRoot` (keccak256 of the interval's
    ///      canonical grid document) is stored with the grid operator in force at the first
    ///      chunk (gridOf, GridCommitted); every chunk carries the first chunk's gridRoot.
    ///      Reverts:
    ///      - EnforcedPause when paused;
    ///      - IntervalAlreadyCommitted if `t` was committed; IntervalAlreadyEnded if delivery of
    ///        `t` has ended; IntervalTooFarAhead if `t` starts more than MAX_COMMIT_LEAD_SECONDS
    ///        from now; IntervalOutOfRange if the deadline of `t` does not fit uint64;
    ///      - BookRootMismatch, ChunkHeadMismatch or TooManyCommitChunks for a chunk that does
    ///        not continue the open commit;
    ///      - PartiesNotAscending, ParticipantNotRegistered, RegistrationChangedDuringCommit,
    ///        ChunkTooLarge for the party table;
    ///      - MalformedOrders, MalformedOrder, OrdersNotAscending, BadOrderSignature,
    ///        OpenOrdersMismatch, OrderNotOpen, OrderOverfilled, OrderLeftOpen, OrderAlreadyFresh for the orders;
    ///      - TradeOrderMismatch, PriceOutsideLimit, ZeroQuantity, ZeroPrice, SelfTrade,
    ///        SellerSpansChunks or SoldQuantityOverflow for a trade;
    ///      - InsufficientCollateral if a party's free balance cannot cover its lock;
    ///      - GridRootMismatch if a later chunk's gridRoot differs from the first's;
    ///        GridOperatorUnset for a nonzero gridRoot with no grid operator set;
    ///        SellPricesWithoutGrid for sell prices with a zero gridRoot; SellPricesLength if
    ///        `sellPrices` is neither empty nor ceil(n/2) words; InvalidSellPrice for a seller
    ///        price of 0 or above its trade's price.
    /// @param t Interval number.
    /// @param bookRoot Merkle root of the interval's signed order set.
    /// @param gridRoot keccak256 of the interval's canonical grid document, zero without a grid.
    /// @param parties Every party of the chunk's orders, strictly ascending by address.
    /// @param orders The chunk's signed orders, four words each (see above).
    /// @param nodes keccak256 of the grid node ids the orders name (see above).
    /// @param trades The chunk's trades in commit order, one word each (see above).
    /// @param sellPrices The trades' seller prices, two per word, or empty (see above).
    /// @param tailHash Chain head after the chunk's last trade (zero on the last chunk).
    function commitInterval(
        uint64 t,
        bytes32 bookRoot,
        bytes32 gridRoot,
        address[] calldata parties,
        uint256[] calldata orders,
        bytes32[] calldata nodes,
        uint256[] calldata trades,
        uint256[] calldata sellPrices,
        bytes32 tailHash
    ) external;

    /// @notice Accepts meter-signed readings for interval `t`; anyone may relay them.
    /// @dev Each reading is EIP-712 typed data MeterReading(address participant,uint64 interval,
    ///      uint64 importedWh,uint64 exportedWh) signed by the meter key the participant had
    ///      registered when `t` was committed (meterFor). Accepted from the end of the interval
    ///      until (not including) its deadline, paused or not: a pause cannot turn a delivery
    ///      into a penalty.
    ///      Reverts:
    ///      - IntervalNotCommitted if `t` was not committed;
    ///      - IntervalNotEnded before the interval's end; ReadingWindowClosed at or after the deadline;
    ///      - ReadingIntervalMismatch if a reading names another interval;
    ///      - ParticipantNotRegistered if its participant was not registered when `t` was committed;
    ///      - InvalidMeterSignature if the signature does not recover to that meter key;
    ///      - ReadingAlreadySubmitted if the participant's reading was already accepted.
    /// @param t Interval number.
    /// @param readings Signed readings; sorting them by participant index saves gas.
    function submitReadings(uint64 t, MeterReading[] calldata readings) external;

    /// @notice Settles the next chunk of interval `t`'s trades; anyone may call after the deadline.
    /// @dev The chunk is trades [firstIndex, firstIndex + trades.length) replayed from the commit;
    ///      they must hash, with `tailHash` (the chain head after the chunk, zero for the last
    ///      chunk), to the stored head at the cursor. Seller delivery, pro-rata allocation,
    ///      payment, refund and penalty follow DESIGN section 5 (see SettlementMath). Works paused
    ///      or not, so a pause cannot hold committed funds.
    ///      Reverts:
    ///      - IntervalNotCommitted, IntervalAlreadySettled;
    ///      - ReadingWindowOpen before the deadline;
    ///      - ChunkNotAtCursor if `firstIndex` is not the cursor;
    ///      - ChunkOutOfRange if the chunk is empty (with trades left) or runs past the end;
    ///      - PartiesNotAscending, PartyIndexOutOfRange for a malformed party table;
    ///      - TradesMismatch if the trades are not the committed ones.
    /// @param t Interval number.
    /// @param firstIndex Commit-order index of the chunk's first trade (the cursor).
    /// @param parties Parties of the chunk's trades, strictly ascending by address.
    /// @param trades The chunk's trades in commit order.
    /// @param tailHash Hash chain head after the chunk's last trade (zero if it is the last).
    function settle(
        uint64 t,
        uint256 firstIndex,
        SettleParty[] calldata parties,
        SettleTrade[] calldata trades,
        bytes32 tailHash
    ) external;

    // ---------------------------------------------------------------- admin

    /// @notice Schedules terms for the intervals that start TERMS_NOTICE_SECONDS from now or
    ///         later; earlier intervals keep the terms in force (an interval's terms are fixed
    ///         before any of its orders can be committed, so they are the terms its orders were
    ///         signed under).
    /// @dev Caller needs DEFAULT_ADMIN_ROLE. Committed intervals keep their snapshot. One change
    ///      is scheduled at a time: a new one first makes the scheduled terms current.
    ///      Reverts: InvalidTerms if toleranceBps > 10,000 or readingWindowSeconds is zero or above
    ///      MAX_READING_WINDOW_SECONDS; TermsChangePending until every interval that started
    ///      before the scheduled terms' first start has ended.
    /// @param newTerms The new terms.
    function setTerms(Terms calldata newTerms) external;

    /// @notice Sets the grid operator, whose free balance receives grid intervals' revenue.
    /// @dev Caller needs DEFAULT_ADMIN_ROLE. Takes effect for grid intervals whose first chunk
    ///      is committed from now on (each grid interval snapshots it, gridOf): what
    ///      participants pay and receive is fixed by the committed prices, only the recipient of
    ///      the difference changes. Zero disables grid commits. Emits GridOperatorChanged.
    /// @param operator The grid operator's account.
    function setGridOperator(address operator) external;

    /// @notice Records the grid node a participant's orders are placed at (GRID.md section 8).
    /// @dev Caller needs REGISTRAR_ROLE; the participant must be registered. Only emits
    ///      NodeRecorded: intake and the audit read the registry from the events, the last one
    ///      per participant counting. `node` is keccak256 of the node id's UTF-8 bytes (ids of
    ///      any length; the audit compares hashes).
    /// @param participant Registered participant.
    /// @param node keccak256 of the node id.
    function recordNode(address participant, bytes32 node) external;

    /// @notice The grid operator in force now (zero: none).
    /// @return The grid operator's account.
    function gridOperator() external view returns (address);

    /// @notice A grid interval's gridRoot and the grid operator it snapshotted (zeros otherwise).
    /// @param t Interval number.
    /// @return root The interval's gridRoot.
    /// @return operator The grid operator credited at its settlement.
    function gridOf(uint64 t) external view returns (bytes32 root, address operator);

    /// @notice Whether contract account `account` accepts the compact signature (r, vs) over
    ///         order digest `id`, asked exactly as commitInterval asks it (from this contract,
    ///         ERC1271_GAS gas, one word of answer), so that an account cannot answer the market
    ///         otherwise than it answers this check.
    /// @param account The participant (false when it holds no code).
    /// @param id The order's EIP-712 digest.
    /// @param r The signature's r.
    /// @param vs The signature's vs (EIP-2098).
    /// @return Whether the account accepts.
    function acceptsSignature(address account, bytes32 id, bytes32 r, bytes32 vs) external view returns (bool);

    /// @notice Pauses commits and deposits. Withdrawals, readings and settlement keep working,
    ///         so a pause cannot change a committed interval's outcome or freeze its locks.
    /// @dev Caller needs GUARDIAN_ROLE. Reverts EnforcedPause if already paused.
    function pause() external;

    /// @notice Lifts a pause.
    /// @dev Caller needs DEFAULT_ADMIN_ROLE (a guardian can stop, only the admin restarts).
    ///      Reverts ExpectedPause if not paused.
    function unpause() external;

    // ---------------------------------------------------------------- views

    /// @notice The settlement token.
    /// @return The ERC-20 held in escrow.
    function token() external view returns (IERC20);

    /// @notice Terms in force now: those of an interval that starts at this block's time.
    /// @return The current terms.
    function terms() external view returns (Terms memory);

    /// @notice The terms a commit of interval `t` snapshots.
    /// @param t Interval number.
    /// @return The interval's terms.
    function termsFor(uint64 t) external view returns (Terms memory);

    /// @notice The scheduled terms and the first interval start (Unix s) they apply to.
    /// @return next The scheduled terms (zero when none).
    /// @return from Their first interval start (zero when none are scheduled).
    function scheduledTerms() external view returns (Terms memory next, uint64 from);

    /// @notice Start of interval 0, Unix time in seconds.
    /// @return The epoch.
    function epoch() external view returns (uint64);

    /// @notice Length of every interval in seconds.
    /// @return The interval length.
    function intervalSeconds() external view returns (uint64);

    /// @notice Delivery window of interval `t`.
    /// @param t Interval number.
    /// @return start Unix time (s) delivery starts.
    /// @return end Unix time (s) delivery ends (exclusive).
    function intervalWindow(uint64 t) external view returns (uint256 start, uint256 end);

    /// @notice Stored state of interval `t`.
    /// @param t Interval number.
    /// @return The interval's status, counts, cursor, snapshotted terms and hashes.
    function intervalInfo(uint64 t) external view returns (IntervalInfo memory);

    /// @notice Free and locked balance of `participant`.
    /// @param participant Any address.
    /// @return free Withdrawable balance, base units.
    /// @return locked Balance locked by committed, unsettled trades, base units.
    function balanceOf(address participant) external view returns (uint256 free, uint256 locked);

    /// @notice Free and locked balances of many addresses in one call, in the order given.
    /// @dev One call where a gate closure would otherwise make one per party. An address that was
    ///      never registered or never deposited gives (0, 0); duplicates are answered each time.
    ///      Never reverts on valid calldata; gas grows with the number of addresses (one cold
    ///      storage read each), so callers split long lists.
    /// @param participants Any addresses.
    /// @return free Withdrawable balance of each address, base units.
    /// @return locked Balance of each address locked by committed, unsettled trades, base units.
    function balancesOf(address[] calldata participants)
        external
        view
        returns (uint256[] memory free, uint256[] memory locked);

    /// @notice Sum of all balances; equals token.balanceOf(market) unless tokens were sent directly.
    /// @return Total escrowed, base units.
    function totalEscrowed() external view returns (uint256);

    /// @notice The meter key that counts for `participant`'s reading of interval `t`: the one in
    ///         force when `t` was committed (the current one for an uncommitted interval).
    /// @param t Interval number.
    /// @param participant Any address.
    /// @return meter Meter key whose signature a reading of `t` needs.
    /// @return registered Whether the participant was registered when `t` was committed.
    function meterFor(uint64 t, address participant) external view returns (address meter, bool registered);

    /// @notice Registration record of `participant`.
    /// @param participant Any address.
    /// @return meter Meter key (zero if never registered).
    /// @return participantIndex Dense index given at first registration.
    /// @return registered Whether it is registered now.
    function participantInfo(address participant)
        external
        view
        returns (address meter, uint32 participantIndex, bool registered);

    /// @notice Number of distinct participants ever registered.
    /// @return The count (also the next participant index).
    function participantCount() external view returns (uint32);

    /// @notice Whether `participant`'s reading for `t` was accepted, and its exported energy.
    /// @param t Interval number.
    /// @param participant Participant address.
    /// @return submitted Whether a reading was accepted.
    /// @return exportedWh Exported energy of the reading, Wh (0 if none).
    function readingOf(uint64 t, address participant) external view returns (bool submitted, uint64 exportedWh);

    /// @notice EIP-712 digest that a meter key signs for a reading.
    /// @param participant Participant address.
    /// @param interval Interval number.
    /// @param importedWh Imported energy, Wh.
    /// @param exportedWh Exported energy, Wh.
    /// @return The digest to sign.
    function readingDigest(address participant, uint64 interval, uint64 importedWh, uint64 exportedWh)
        external
        view
        returns (bytes32);
}
