// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IEnergyMarket} from "./interfaces/IEnergyMarket.sol";
import {PartyTable} from "./libraries/PartyTable.sol";
import {ReadingSlots} from "./libraries/ReadingSlots.sol";
import {SettlementMath} from "./libraries/SettlementMath.sol";
import {TradeChain} from "./libraries/TradeChain.sol";

/// @title EnergyMarket
/// @notice Escrow, dynamic energy contracts, meter-signed readings and exactly-once chunked
///         settlement of a peer-to-peer energy market (DESIGN.md sections 5 and 5a).
/// @dev Gas layout: a participant's free and locked balances share one slot; an interval stores
///      four slots and a hash chain head instead of its trades (settlement replays them as
///      calldata, see TradeChain); readings are packed by participant index (ReadingSlots);
///      commit and settle net every party's change in memory and write each balance once.
///      The per-trade loops read the ABI-encoded calldata words and a per-party memory table
///      (PartyTable) in assembly: Solidity's checked decoding of the calldata structs and its
///      bounds-checked memory arrays cost 4.6k gas per trade at commit and 7.3k at settle
///      (1,000 trades among 491 parties), more than the storage and events they feed.
contract EnergyMarket is IEnergyMarket, AccessControl, EIP712, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Role that commits cleared intervals.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice Role that registers participants and their meter keys.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice Role that can pause the market.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice EIP-712 type hash of a meter reading.
    bytes32 public constant METER_READING_TYPEHASH =
        keccak256("MeterReading(address participant,uint64 interval,uint64 importedWh,uint64 exportedWh)");

    /// @notice EIP-712 type hash of an order (the market API's signed order).
    bytes32 public constant ORDER_TYPEHASH = keccak256(
        "Order(address participant,uint64 interval,uint8 side,uint64 quantityWh,uint128 pricePerWh,uint64 nonce,uint64 expiry,string node)"
    );
    /// @notice Most chunks one interval's commit may take.
    uint256 public constant MAX_COMMIT_CHUNKS = 255;

    /// @notice Latest start, after the commit's block time, of an interval that may be committed
    ///         (seconds): with MAX_READING_WINDOW_SECONDS it bounds how long a commit locks funds.
    uint256 public constant MAX_COMMIT_LEAD_SECONDS = 2 days;
    /// @notice Longest reading window the terms may set (seconds).
    uint64 public constant MAX_READING_WINDOW_SECONDS = 7 days;
    /// @notice Notice of a terms change: new terms apply to intervals that start at least this
    ///         long after setTerms (no earlier than MAX_COMMIT_LEAD_SECONDS, so the terms of an
    ///         interval are fixed before any of its orders can be committed).
    uint256 public constant TERMS_NOTICE_SECONDS = MAX_COMMIT_LEAD_SECONDS;
    /// @notice Gas an ERC-1271 participant's isValidSignature may use for one order: a hostile
    ///         contract account cannot make a commit run out of gas.
    uint256 public constant ERC1271_GAS = 50_000;

    uint256 private constant MAX_BALANCE = type(uint128).max;
    /// @dev "No word cached yet" in a ReadingBatch (word keys are participant index >> 2 or >> 8).
    uint256 private constant NO_WORD = type(uint256).max;
    /// @dev Words per order in commitInterval's `orders`.
    uint256 private constant ORDER_WORDS = 4;
    /// @dev Order flags (bits 24-31 of an order's first word).
    uint256 private constant ORDER_CONTINUED = 1;
    uint256 private constant ORDER_OPEN = 2;
    uint256 private constant ORDER_UNPARKED = 4;
    uint256 private constant ORDER_PARKED = 8;
    /// @dev Positions in a trade word and in an order's first word are 16 bits.
    uint256 private constant MAX_CHUNK_PARTIES = 1 << 16;
    uint256 private constant MAX_CHUNK_ORDERS = 1 << 16;
    /// @dev Bits of a party's 16-bit commit lane that mark its fresh orders (by digest mod 15);
    ///      the lane's top bit marks that it sold in an earlier chunk.
    uint256 private constant FRESH_BITS = 15;

    struct Balance {
        uint128 free;
        uint128 locked;
    }

    /// @dev `changeSeq` is the state sequence number (`_stateSeq`) of the participant's last
    ///      meter rotation, deregistration or re-registration; `_meterBefore` keeps the meter key
    ///      in force before it (zero when it was not registered), so a reading counts against
    ///      the registration its interval was committed under.
    struct Participant {
        address meter;
        uint32 index;
        bool registered;
        uint48 changeSeq;
    }

    struct IntervalRecord {
        bytes32 remainingHash;
        bytes32 bookRoot;
        uint64 tradeCount;
        uint64 cursor;
        uint64 deadline;
        IntervalStatus status;
        uint16 toleranceBps;
        uint128 penaltyPricePerWh;
        uint64 commitSeq;
        uint8 chunks;
        uint48 firstBlock;
        bytes32 expectedHead;
        bytes32 ordersDigest;
        bytes32 openOrders;
    }

    /// @dev One commitInterval chunk: where it continues and the interval's snapshot.
    struct CommitContext {
        uint64 interval;
        uint256 chunk;
        bool last;
        uint256 deadline;
        uint256 penaltyPrice;
        uint256 toleranceBps;
        uint256 commitSeq;
        uint256 firstIndex;
        bytes32 ordersDigest;
        bytes32 expectedHead;
        bytes32 tail;
        bytes32 openOrders;
    }

    /// @dev A submitReadings batch: the flag word and the lane word being filled, written back
    ///      when the batch moves to another word (readings sorted by participant index share
    ///      them, so each word is read and written once per batch).
    struct ReadingBatch {
        uint64 interval;
        uint256 commitSeq;
        uint256 flagWord;
        uint256 flagBits;
        uint256 laneWord;
        uint256 laneBits;
    }

    /// @dev What the per-trade settle loop needs besides the calldata; kept in memory so that
    ///      the loop's stack stays shallow.
    struct SettleContext {
        uint256 interval;
        uint256 firstIndex;
        uint256 penaltyPrice;
        uint256 toleranceBps;
        uint256 table;
        uint256 gridRevenue;
    }

    /// @dev A grid interval's gridRoot and the grid operator snapshotted at its first chunk.
    struct Grid {
        bytes32 root;
        address operator;
    }

    IERC20 private immutable _token;
    uint64 private immutable _epoch;
    uint64 private immutable _intervalSeconds;

    Terms private _terms;
    /// @dev Scheduled terms and the first interval start they apply to (zero: none scheduled).
    Terms private _nextTerms;
    uint64 private _nextFrom;
    uint32 private _participantCount;
    uint256 private _totalEscrowed;
    mapping(address participant => Balance) private _balances;
    mapping(address participant => Participant) private _participants;
    mapping(address participant => address meter) private _meterBefore;
    mapping(address participant => uint256 timestamp) private _changedAt;
    /// @dev Orders commits and registration changes: a reading of an interval counts against
    ///      the registration and meter key in force when the interval was committed.
    uint48 private _stateSeq;
    mapping(uint64 interval => IntervalRecord) private _intervals;
    mapping(uint64 interval => mapping(uint256 word => uint256)) private _readingFlags;
    mapping(uint64 interval => mapping(uint256 word => uint256)) private _exportedLanes;
    /// @dev Exports of 2^32 - 1 Wh or more, whole, by participant index (their lane is full).
    mapping(uint64 interval => mapping(uint256 index => uint256)) private _largeExports;
    /// @dev Per party (participant index), the chunks its fresh orders and its sales came in.
    mapping(uint64 interval => mapping(uint256 word => uint256)) private _commitLanes;
    /// @dev Fill plus one of each order a chunk parked (left open for a chunk after the next).
    mapping(uint64 interval => mapping(bytes32 orderId => uint256)) private _openFills;
    /// @dev Written only for intervals with a nonzero gridRoot: a non-grid commit stores nothing more.
    mapping(uint64 interval => Grid) private _grids;
    address private _gridOperator;

    /// @notice Deploys the market.
    /// @dev Reverts ZeroAddress, InvalidIntervalLength or InvalidTerms for bad arguments.
    /// @param settlementToken ERC-20 used for escrow and settlement.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants the other roles).
    /// @param epochSeconds Unix time (s) at which interval 0 starts.
    /// @param intervalLengthSeconds Length of one delivery interval in seconds.
    /// @param initialTerms Terms for the first commits.
    constructor(
        IERC20 settlementToken,
        address admin,
        uint64 epochSeconds,
        uint64 intervalLengthSeconds,
        Terms memory initialTerms
    ) EIP712("wattledger EnergyMarket", "1") {
        if (address(settlementToken) == address(0) || admin == address(0)) revert ZeroAddress();
        if (intervalLengthSeconds == 0) revert InvalidIntervalLength(intervalLengthSeconds);
        _token = settlementToken;
        _epoch = epochSeconds;
        _intervalSeconds = intervalLengthSeconds;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _checkTerms(initialTerms);
        _terms = initialTerms;
        emit TermsChanged(
            initialTerms.penaltyPricePerWh, initialTerms.toleranceBps, initialTerms.readingWindowSeconds, 0
        );
    }

    // ---------------------------------------------------------------- participants

    /// @inheritdoc IEnergyMarket
    function registerParticipant(address participant, address meter) external onlyRole(REGISTRAR_ROLE) {
        if (participant == address(0) || meter == address(0)) revert ZeroAddress();
        Participant storage p = _participants[participant];
        if (p.registered) revert ParticipantAlreadyRegistered(participant);
        bool first = p.meter == address(0);
        uint32 index = first ? _participantCount++ : p.index;
        // A first registration changes no committed interval's parties. A re-registration keeps
        // `_meterBefore` as its deregistration left it: every interval committed before now
        // with this participant was committed before that deregistration, under that key.
        uint48 changeSeq = first ? 0 : ++_stateSeq;
        _participants[participant] = Participant({meter: meter, index: index, registered: true, changeSeq: changeSeq});
        emit ParticipantRegistered(participant, meter, index);
    }

    /// @inheritdoc IEnergyMarket
    function rotateMeter(address participant, address newMeter) external onlyRole(REGISTRAR_ROLE) {
        if (newMeter == address(0)) revert ZeroAddress();
        Participant storage p = _participants[participant];
        if (!p.registered) revert ParticipantNotRegistered(participant);
        address oldMeter = p.meter;
        p.changeSeq = _recordChange(participant, p.changeSeq, oldMeter);
        p.meter = newMeter;
        emit MeterRotated(participant, oldMeter, newMeter);
    }

    /// @inheritdoc IEnergyMarket
    function deregisterParticipant(address participant) external onlyRole(REGISTRAR_ROLE) {
        Participant storage p = _participants[participant];
        if (!p.registered) revert ParticipantNotRegistered(participant);
        p.changeSeq = _recordChange(participant, p.changeSeq, p.meter);
        p.registered = false;
        emit ParticipantDeregistered(participant);
    }

    /// @dev Keeps `meterBefore` as the key in force before this change and returns the change's
    ///      sequence number. One change per participant per CHANGE_WINDOW: after it, every
    ///      interval committed before the previous change is past its reading deadline, so the
    ///      key kept for it is never needed again.
    function _recordChange(address participant, uint48 previousSeq, address meterBefore)
        private
        returns (uint48 seq)
    {
        if (previousSeq != 0) {
            uint256 until = _changedAt[participant] + _changeWindow();
            if (block.timestamp < until) revert RegistrationChangePending(participant, until);
        }
        _meterBefore[participant] = meterBefore;
        _changedAt[participant] = block.timestamp;
        seq = ++_stateSeq;
    }

    /// @dev How long a commit can keep funds locked at most: the longest lead, the interval and
    ///      the longest reading window.
    function _changeWindow() private view returns (uint256) {
        return MAX_COMMIT_LEAD_SECONDS + _intervalSeconds + MAX_READING_WINDOW_SECONDS;
    }

    // ---------------------------------------------------------------- escrow

    /// @inheritdoc IEnergyMarket
    function deposit(uint256 amount) external nonReentrant whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        if (!_participants[msg.sender].registered) revert ParticipantNotRegistered(msg.sender);
        // The transfer comes first so that the credit is what actually arrived; the
        // reentrancy guard covers the window.
        uint256 before = _token.balanceOf(address(this));
        _token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = _token.balanceOf(address(this)) - before;
        Balance storage b = _balances[msg.sender];
        uint256 free = uint256(b.free) + received;
        if (free > MAX_BALANCE) revert BalanceOverflow(msg.sender, free);
        b.free = uint128(free);
        _totalEscrowed += received;
        emit Deposited(msg.sender, received);
    }

    /// @inheritdoc IEnergyMarket
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Balance storage b = _balances[msg.sender];
        uint256 free = b.free;
        if (amount > free) revert InsufficientFreeBalance(msg.sender, amount, free);
        b.free = uint128(free - amount);
        _totalEscrowed -= amount;
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- commit

    /// @inheritdoc IEnergyMarket
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
    ) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        IntervalRecord storage rec = _intervals[t];
        CommitContext memory c = _openChunk(rec, t, bookRoot, tailHash);
        _openGrid(c, gridRoot, trades, sellPrices);
        uint256 table = _loadParties(parties, c.chunk == 1 ? 0 : c.commitSeq);
        uint256[] memory partyFlags = new uint256[](parties.length);
        (uint256 ot, bytes32[] memory orderIds) = _loadOrders(c, table, parties.length, orders, nodes, partyFlags);
        c.ordersDigest = _tallyTrades(c, table, ot, orderIds, trades);
        if (sellPrices.length != 0) _checkSellPrices(ot, trades, sellPrices);
        _closeOrders(c, ot, orderIds);
        _fixSoldTotals(table, parties.length);
        if (!(c.chunk == 1 && c.last)) _checkLanes(c, table, parties.length, partyFlags);
        bytes32 head = _chainCommitted(table, trades, sellPrices, tailHash);
        _lockCollateral(t, table, parties.length);
        _closeChunk(rec, c, head, bookRoot, trades.length);
        emit TradesCommitted(t, uint16(c.chunk), uint64(c.firstIndex), parties, orderIds, trades, sellPrices, tailHash);
        if (c.last) {
            emit IntervalCommitted(
                t,
                bookRoot,
                rec.remainingHash,
                c.ordersDigest,
                rec.tradeCount,
                rec.deadline,
                rec.penaltyPricePerWh,
                rec.toleranceBps,
                rec.firstBlock
            );
        }
    }

    /// @dev The chunk's context: a first chunk checks `t` and snapshots the terms; a later one
    ///      continues an interval whose commit is still open, under its snapshot, before the
    ///      interval ends, and must carry the first chunk's bookRoot.
    function _openChunk(IntervalRecord storage rec, uint64 t, bytes32 bookRoot, bytes32 tailHash)
        private
        view
        returns (CommitContext memory c)
    {
        IntervalStatus status = rec.status;
        c.interval = t;
        c.last = tailHash == 0;
        c.tail = tailHash;
        if (status == IntervalStatus.None) {
            c.chunk = 1;
            (uint256 start, uint256 end) = _window(t);
            Terms memory terms = _termsAt(start);
            c.deadline = _commitDeadline(t, start, end, terms.readingWindowSeconds);
            c.penaltyPrice = terms.penaltyPricePerWh;
            c.toleranceBps = terms.toleranceBps;
            c.commitSeq = _stateSeq + 1;
            return c;
        }
        if (status != IntervalStatus.Committing) revert IntervalAlreadyCommitted(t);
        (, uint256 end) = _window(t);
        if (block.timestamp >= end) revert IntervalAlreadyEnded(t, end, block.timestamp);
        if (bookRoot != rec.bookRoot) revert BookRootMismatch(t, rec.bookRoot, bookRoot);
        c.chunk = uint256(rec.chunks) + 1;
        if (c.chunk > MAX_COMMIT_CHUNKS) revert TooManyCommitChunks(t);
        c.deadline = rec.deadline;
        c.penaltyPrice = rec.penaltyPricePerWh;
        c.commitSeq = rec.commitSeq;
        c.firstIndex = rec.tradeCount;
        c.ordersDigest = rec.ordersDigest;
        c.expectedHead = rec.expectedHead;
        c.openOrders = rec.openOrders;
    }

    /// @dev Checks the chunk's gridRoot and seller prices (GRID.md section 8): a first chunk
    ///      with a nonzero gridRoot snapshots it with the grid operator, a later one must carry
    ///      the first's; seller prices need a gridRoot and lie in [1, price].
    function _openGrid(CommitContext memory c, bytes32 gridRoot, uint256[] calldata trades, uint256[] calldata sellPrices)
        private
    {
        uint64 t = c.interval;
        if (c.chunk == 1) {
            if (gridRoot != 0) {
                address operator = _gridOperator;
                if (operator == address(0)) revert GridOperatorUnset();
                _grids[t] = Grid({root: gridRoot, operator: operator});
                emit GridCommitted(t, gridRoot, operator);
            }
        } else {
            bytes32 first = _grids[t].root;
            if (gridRoot != first) revert GridRootMismatch(t, first, gridRoot);
        }
        uint256 words = sellPrices.length;
        if (words == 0) return;
        if (gridRoot == 0) revert SellPricesWithoutGrid();
        uint256 n = trades.length;
        if (words != (n + 1) >> 1) revert SellPricesLength((n + 1) >> 1, words);
        if (n & 1 != 0 && sellPrices[words - 1] >> 128 != 0) revert InvalidSellPrice(n, sellPrices[words - 1] >> 128, 0);
    }

    /// @dev Each trade's seller price lies in [1, price] and is at least its ask's signed limit
    ///      (so the seller receives no less than it signed for); `_tallyTrades` range-checked
    ///      the order positions.
    function _checkSellPrices(uint256 ot, uint256[] calldata trades, uint256[] calldata sellPrices) private pure {
        uint256 n = trades.length;
        for (uint256 k; k < n;) {
            uint256 word = trades[k];
            uint256 price = word >> 128;
            uint256 sellPrice = _sellPrice(sellPrices, k);
            if (sellPrice == 0 || sellPrice > price) revert InvalidSellPrice(k, sellPrice, price);
            uint256 askLimit;
            assembly ("memory-safe") {
                askLimit := mload(add(add(ot, mul(and(shr(48, word), 0xffff), 96)), 32))
            }
            if (sellPrice < askLimit) revert PriceOutsideLimit(k, sellPrice, price, askLimit);
            unchecked {
                ++k;
            }
        }
    }

    /// @dev Seller price of trade `k`: half `k & 1` of word `k >> 1`.
    function _sellPrice(uint256[] calldata sellPrices, uint256 k) private pure returns (uint256) {
        uint256 word = sellPrices[k >> 1];
        return (k & 1 == 0) ? word & type(uint128).max : word >> 128;
    }

    /// @dev Stores the chunk: a first chunk the interval's record (its head is the chain's
    ///      head), a later one only the count and where the chain goes on; `tailHash` (zero on
    ///      the last chunk) is the head the next chunk must produce.
    function _closeChunk(IntervalRecord storage rec, CommitContext memory c, bytes32 head, bytes32 bookRoot, uint256 n)
        private
    {
        bytes32 tailHash = c.tail;
        if (c.chunk == 1) {
            rec.remainingHash = head;
            rec.bookRoot = bookRoot;
            rec.deadline = uint64(c.deadline);
            rec.toleranceBps = uint16(c.toleranceBps);
            rec.penaltyPricePerWh = uint128(c.penaltyPrice);
            rec.commitSeq = uint64(++_stateSeq);
            rec.firstBlock = uint48(block.number);
        } else if (head != c.expectedHead) {
            revert ChunkHeadMismatch(c.interval, uint16(c.chunk));
        }
        rec.tradeCount = uint64(c.firstIndex + n);
        rec.chunks = uint8(c.chunk);
        rec.status = c.last ? IntervalStatus.Committed : IntervalStatus.Committing;
        if (!c.last) {
            rec.expectedHead = tailHash;
            rec.ordersDigest = c.ordersDigest;
            rec.openOrders = c.openOrders;
        } else if (c.chunk > 1) {
            rec.expectedHead = 0;
            rec.ordersDigest = 0;
            rec.openOrders = 0;
        }
    }

    function _commitDeadline(uint64 t, uint256 start, uint256 end, uint256 readingWindow)
        private
        view
        returns (uint64)
    {
        if (block.timestamp >= end) revert IntervalAlreadyEnded(t, end, block.timestamp);
        if (start > block.timestamp + MAX_COMMIT_LEAD_SECONDS) {
            revert IntervalTooFarAhead(t, start, block.timestamp + MAX_COMMIT_LEAD_SECONDS);
        }
        uint256 deadline = end + readingWindow;
        if (deadline > type(uint64).max) revert IntervalOutOfRange(t);
        return uint64(deadline);
    }

    /// @dev Checks that the party table is strictly ascending and registered (and, after a
    ///      first chunk, registered under the same registration as at that chunk:
    ///      `commitSeq` nonzero); copies each party's address and participant index into a
    ///      PartyTable.
    function _loadParties(address[] calldata parties, uint256 commitSeq) private view returns (uint256 table) {
        uint256 n = parties.length;
        if (n > MAX_CHUNK_PARTIES) revert ChunkTooLarge(n);
        table = PartyTable.create(n);
        address previous = address(0); // read only from position 1 on
        for (uint256 i; i < n;) {
            address account = parties[i];
            if (i > 0 && account <= previous) revert PartiesNotAscending(i);
            uint256 word = _participantWord(account);
            if (!_isRegistered(word)) revert ParticipantNotRegistered(account);
            if (commitSeq != 0 && (word >> 200) & 0xffffffffffff > commitSeq) {
                revert RegistrationChangedDuringCommit(account);
            }
            PartyTable.set(table, i, PartyTable.ACCOUNT, uint160(account));
            PartyTable.set(table, i, PartyTable.PARTICIPANT_INDEX, _indexOf(word));
            previous = account;
            unchecked {
                ++i;
            }
        }
    }

    /// @dev Reads the chunk's orders (four words each, see IEnergyMarket.commitInterval),
    ///      strictly ascending by EIP-712 digest so that none appears twice. A fresh order's
    ///      signature by its party is checked (ECDSA, or ERC-1271 for a contract account); a
    ///      continued order carries its fill so far instead, and the fold of the continued
    ///      orders' (digest, fill) must equal the open orders the chunk before left
    ///      (`c.openOrders`), so its fields and fill are the ones checked there; an unparked
    ///      order takes its fill from the record a chunk before parked it in. Returns the
    ///      order table (per order: filled so far, limit price, first word) and the digests.
    function _loadOrders(
        CommitContext memory c,
        uint256 table,
        uint256 partyCount,
        uint256[] calldata orders,
        bytes32[] calldata nodes,
        uint256[] memory partyFlags
    ) private returns (uint256 ot, bytes32[] memory ids) {
        if (orders.length % ORDER_WORDS != 0) revert MalformedOrders(orders.length);
        uint256 n = orders.length / ORDER_WORDS;
        if (n > MAX_CHUNK_ORDERS) revert ChunkTooLarge(n);
        ids = new bytes32[](n);
        assembly ("memory-safe") {
            ot := mload(0x40)
            mstore(0x40, add(ot, mul(n, 96)))
        }
        bytes32 separator = _domainSeparatorV4();
        bytes32 previous;
        bytes32 continued;
        uint256 w;
        assembly ("memory-safe") {
            w := orders.offset
        }
        for (uint256 i; i < n;) {
            uint256 meta;
            uint256 limit;
            assembly ("memory-safe") {
                meta := calldataload(w)
                limit := calldataload(add(w, 32))
            }
            uint256 party = meta & 0xffff;
            uint256 flags = (meta >> 24) & 0xff;
            if (
                party >= partyCount || (meta >> 16) & 0xff > 1 || flags > 15 || flags & 5 == 5 || flags & 10 == 10
                    || (meta >> 32) & 0xffffffff >= nodes.length || limit >> 128 != 0
            ) {
                revert MalformedOrder(i);
            }
            address account = address(uint160(PartyTable.get(table, party, PartyTable.ACCOUNT)));
            bytes32 node;
            assembly ("memory-safe") {
                // In range: checked above.
                node := calldataload(add(nodes.offset, shl(5, and(shr(32, meta), 0xffffffff))))
            }
            bytes32 id = _orderDigest(separator, account, c.interval, meta, limit, node);
            if (id <= previous) revert OrdersNotAscending(i);
            previous = id;
            uint256 filled;
            if (flags & (ORDER_CONTINUED | ORDER_UNPARKED) != 0) {
                uint256 spare;
                assembly ("memory-safe") {
                    filled := calldataload(add(w, 64))
                    spare := calldataload(add(w, 96))
                }
                if (flags & ORDER_UNPARKED != 0) {
                    if (filled != 0) revert MalformedOrder(i);
                    filled = _openFills[c.interval][id];
                    if (filled == 0) revert OrderNotOpen(i, id);
                    _openFills[c.interval][id] = 0;
                    unchecked {
                        --filled;
                    }
                } else {
                    continued = TradeChain.foldOpen(continued, id, filled);
                }
                if (spare != 0 || filled >> 64 != 0) revert MalformedOrder(i);
            } else {
                _checkOrderSigner(account, id, w, i);
                partyFlags[party] |= uint256(1) << (uint256(id) % FRESH_BITS);
            }
            ids[i] = id;
            assembly ("memory-safe") {
                let o := add(ot, mul(i, 96))
                mstore(o, filled)
                mstore(add(o, 32), limit)
                mstore(add(o, 64), meta)
            }
            unchecked {
                w += ORDER_WORDS * 32;
                ++i;
            }
        }
        if (continued != c.openOrders) revert OpenOrdersMismatch(c.interval);
    }

    /// @dev The EIP-712 digest of an Order whose fields are the first order word `meta`, the
    ///      limit price, the party `account`, the interval and `node` (keccak256 of the node id,
    ///      as EIP-712 encodes a string).
    function _orderDigest(bytes32 separator, address account, uint256 t, uint256 meta, uint256 limit, bytes32 node)
        private
        pure
        returns (bytes32 digest)
    {
        bytes32 typeHash = ORDER_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typeHash)
            mstore(add(m, 32), account)
            mstore(add(m, 64), t)
            mstore(add(m, 96), and(shr(16, meta), 0xff))
            mstore(add(m, 128), and(shr(64, meta), 0xffffffffffffffff))
            mstore(add(m, 160), limit)
            mstore(add(m, 192), and(shr(128, meta), 0xffffffffffffffff))
            mstore(add(m, 224), shr(192, meta))
            mstore(add(m, 256), node)
            let structHash := keccak256(m, 288)
            mstore(m, 0x1901)
            mstore(add(m, 32), separator)
            mstore(add(m, 64), structHash)
            digest := keccak256(add(m, 30), 66)
        }
    }

    /// @dev Reverts BadOrderSignature unless the compact signature (r, vs) at calldata offset
    ///      `w + 64` over `id` is `account`'s: an ECDSA signature of its key, or one its
    ///      ERC-1271 `isValidSignature` accepts when `account` is a contract.
    function _checkOrderSigner(address account, bytes32 id, uint256 w, uint256 i) private view {
        bytes32 r;
        bytes32 vs;
        assembly ("memory-safe") {
            r := calldataload(add(w, 64))
            vs := calldataload(add(w, 96))
        }
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(id, r, vs);
        if (err == ECDSA.RecoverError.NoError && signer == account) return;
        if (account.code.length != 0 && _acceptsERC1271(account, id, r, vs)) return;
        revert BadOrderSignature(i, account);
    }

    /// @dev Whether contract account `account` accepts the compact signature (r, vs) over `id`
    ///      (ERC-1271 isValidSignature returns its selector), given at most ERC1271_GAS gas and
    ///      reading at most one word of its answer: a hostile account can refuse its own order,
    ///      but not burn the commit's gas or return a memory bomb.
    function _acceptsERC1271(address account, bytes32 id, bytes32 r, bytes32 vs) private view returns (bool ok) {
        bytes4 magic = IERC1271.isValidSignature.selector;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, magic)
            mstore(add(m, 4), id)
            mstore(add(m, 36), 0x40)
            mstore(add(m, 68), 64)
            mstore(add(m, 100), r)
            mstore(add(m, 132), vs)
            let success := staticcall(ERC1271_GAS, account, m, 164, m, 32)
            ok := and(success, and(gt(returndatasize(), 31), eq(mload(m), magic)))
        }
    }

    /// @dev Forward pass in commit order: checks each trade word against its two orders (sides,
    ///      parties, limit prices), adds its quantity to both orders' fills, nets each party's
    ///      lock, adds to each seller's sold total, and continues the order-id fold.
    function _tallyTrades(
        CommitContext memory c,
        uint256 table,
        uint256 ot,
        bytes32[] memory ids,
        uint256[] calldata trades
    ) private pure returns (bytes32 ordersDigest) {
        ordersDigest = c.ordersDigest;
        uint256 n = trades.length;
        uint256 orderCount = ids.length;
        uint256 penaltyPrice = c.penaltyPrice;
        for (uint256 k; k < n;) {
            uint256 word = trades[k];
            uint256 bo = (word >> 32) & 0xffff;
            uint256 so = (word >> 48) & 0xffff;
            if (bo >= orderCount || so >= orderCount) revert TradeOrderMismatch(k);
            _matchOrders(ot, word, k);
            ordersDigest = TradeChain.foldOrders(ordersDigest, ids[bo], ids[so]);
            uint256 buyer = word & 0xffff;
            uint256 seller = (word >> 16) & 0xffff;
            if (buyer == seller) revert SelfTrade(k, _accountAt(table, buyer));
            uint256 q = (word >> 64) & 0xffffffffffffffff;
            if (_tally(table, buyer, seller, q, word >> 128, penaltyPrice)) {
                revert SoldQuantityOverflow(_accountAt(table, seller));
            }
            unchecked {
                ++k;
            }
        }
    }

    /// @dev Checks trade word `word` (trade `k` of the chunk) against its buy and sell orders and
    ///      adds its quantity to their fills.
    function _matchOrders(uint256 ot, uint256 word, uint256 k) private pure {
        uint256 buyer = word & 0xffff;
        uint256 seller = (word >> 16) & 0xffff;
        uint256 q = (word >> 64) & 0xffffffffffffffff;
        uint256 price = word >> 128;
        uint256 bidMeta;
        uint256 bidLimit;
        uint256 askMeta;
        uint256 askLimit;
        assembly ("memory-safe") {
            let b := add(ot, mul(and(shr(32, word), 0xffff), 96))
            let s := add(ot, mul(and(shr(48, word), 0xffff), 96))
            mstore(b, add(mload(b), q))
            mstore(s, add(mload(s), q))
            bidLimit := mload(add(b, 32))
            bidMeta := mload(add(b, 64))
            askLimit := mload(add(s, 32))
            askMeta := mload(add(s, 64))
        }
        // The order's party (bits 0-15) and side (bits 16-23) against the trade's.
        if ((bidMeta & 0xffffff) != buyer || (askMeta & 0xffffff) != (seller | (1 << 16))) {
            revert TradeOrderMismatch(k);
        }
        if (q == 0) revert ZeroQuantity(k);
        if (price == 0) revert ZeroPrice(k);
        if (price > bidLimit || price < askLimit) revert PriceOutsideLimit(k, price, bidLimit, askLimit);
    }

    /// @dev Checks every order's fill against its quantity and folds the (digest, fill) of each
    ///      order the chunk leaves open into `c.openOrders`, which the next chunk's continued
    ///      orders must reproduce exactly; the last chunk leaves none open.
    function _closeOrders(CommitContext memory c, uint256 ot, bytes32[] memory ids) private {
        uint256 n = ids.length;
        bytes32 open;
        for (uint256 i; i < n;) {
            uint256 filled;
            uint256 meta;
            assembly ("memory-safe") {
                let o := add(ot, mul(i, 96))
                filled := mload(o)
                meta := mload(add(o, 64))
            }
            uint256 quantity = (meta >> 64) & 0xffffffffffffffff;
            if (filled > quantity) revert OrderOverfilled(ids[i], filled, quantity);
            uint256 flags = (meta >> 24) & 0xff;
            if (flags & (ORDER_OPEN | ORDER_PARKED) != 0) {
                if (c.last) revert OrderLeftOpen(ids[i]);
                if (flags & ORDER_OPEN != 0) {
                    open = TradeChain.foldOpen(open, ids[i], filled);
                } else {
                    unchecked {
                        _openFills[c.interval][ids[i]] = filled + 1;
                    }
                }
            }
            unchecked {
                ++i;
            }
        }
        c.openOrders = open;
    }

    /// @dev Commits over several chunks keep, per party, a lane of 16 bits (sixteen parties per
    ///      word): bit (digest mod 15) of each of its fresh orders so far, and whether it sold in
    ///      an earlier chunk (bit 15). A fresh order whose bit is already set is refused, so no order is
    ///      fresh twice (an order that spans chunks is continued from its open record instead;
    ///      two orders of a party sharing a bit must both come fresh in one chunk); a seller
    ///      sells in one chunk only (its sold total, in the chain's links, is then complete).
    ///      The last chunk only checks.
    function _checkLanes(CommitContext memory c, uint256 table, uint256 partyCount, uint256[] memory partyFlags)
        private
    {
        mapping(uint256 => uint256) storage lanes = _commitLanes[c.interval];
        uint256 cachedWord = NO_WORD;
        uint256 bits = 0;
        bool dirty = false;
        for (uint256 i; i < partyCount;) {
            uint256 index = PartyTable.get(table, i, PartyTable.PARTICIPANT_INDEX);
            uint256 wordKey = index >> 4;
            if (wordKey != cachedWord) {
                if (dirty) lanes[cachedWord] = bits;
                cachedWord = wordKey;
                bits = lanes[wordKey];
                dirty = false;
            }
            uint256 shift = (index & 15) << 4;
            uint256 lane = (bits >> shift) & 0xffff;
            uint256 fresh = partyFlags[i];
            if (lane & fresh != 0) revert OrderAlreadyFresh(_accountAt(table, i), uint32(lane & fresh));
            uint256 soldBefore = lane >> FRESH_BITS;
            bool sold = PartyTable.get(table, i, PartyTable.SOLD) != 0;
            if (sold && soldBefore != 0) revert SellerSpansChunks(_accountAt(table, i), uint16(soldBefore));
            if (!c.last) {
                uint256 updated = lane | fresh | (sold ? 1 << FRESH_BITS : 0);
                if (updated != lane) {
                    bits = (bits & ~(uint256(0xffff) << shift)) | (updated << shift);
                    dirty = true;
                }
            }
            unchecked {
                ++i;
            }
        }
        if (dirty) lanes[cachedWord] = bits;
    }

    /// @dev Adds q * price to the buyer's lock and q * penaltyPrice to the seller's, and q to the
    ///      seller's sold total; returns whether that total passed 2^64 - 1. With q < 2^64 and
    ///      prices < 2^128 each term is below 2^192, so no sum of fewer than 2^63 terms wraps.
    function _tally(uint256 table, uint256 buyer, uint256 seller, uint256 q, uint256 price, uint256 penaltyPrice)
        private
        pure
        returns (bool overflow)
    {
        assembly ("memory-safe") {
            let b := add(table, mul(buyer, 192))
            let s := add(table, mul(seller, 192))
            mstore(add(b, 64), add(mload(add(b, 64)), mul(q, price)))
            mstore(add(s, 64), add(mload(add(s, 64)), mul(q, penaltyPrice)))
            let sold := add(mload(add(s, 96)), q)
            overflow := gt(sold, 0xffffffffffffffff)
            mstore(add(s, 96), sold)
        }
    }

    /// @dev Each seller's total S is its sold Wh after the tally (a seller sells in one chunk).
    function _fixSoldTotals(uint256 table, uint256 partyCount) private pure {
        for (uint256 i; i < partyCount;) {
            PartyTable.set(table, i, PartyTable.SOLD_TOTAL, PartyTable.get(table, i, PartyTable.SOLD));
            unchecked {
                ++i;
            }
        }
    }

    /// @dev Backward pass over the chunk's trade words, from `tail` (the chain head after its
    ///      last trade) to the head at its first. B_k, the seller's quantity in earlier trades of
    ///      the interval, is its sold total minus its quantity from trade k to the end of the
    ///      chunk, which this pass accumulates. _tallyTrades range-checked the positions.
    function _chainCommitted(uint256 table, uint256[] calldata trades, uint256[] calldata sellPrices, bytes32 tail)
        private
        pure
        returns (bytes32 head)
    {
        uint256 link = TradeChain.newLink();
        head = tail;
        bool grid = sellPrices.length != 0;
        for (uint256 i = trades.length; i > 0;) {
            unchecked {
                --i;
            }
            uint256 word = trades[i];
            uint256 priceWord = word >> 128;
            // The link's price word: price | (price - sellPrice) << 128 (_openGrid checked the range).
            if (grid) {
                unchecked {
                    priceWord |= (priceWord - _sellPrice(sellPrices, i)) << 128;
                }
            }
            assembly ("memory-safe") {
                let s := add(table, mul(and(shr(16, word), 0xffff), 192))
                let q := and(shr(64, word), 0xffffffffffffffff)
                let fromHere := add(mload(add(s, 128)), q)
                mstore(add(s, 128), fromHere)
                mstore(link, mload(add(table, mul(and(word, 0xffff), 192))))
                mstore(add(link, 32), mload(s))
                mstore(add(link, 64), mload(add(s, 32)))
                mstore(add(link, 96), q)
                mstore(add(link, 128), priceWord)
                mstore(add(link, 160), mload(add(s, 160)))
                mstore(add(link, 192), sub(mload(add(s, 96)), fromHere))
            }
            head = TradeChain.seal(link, head);
        }
    }

    function _lockCollateral(uint64 t, uint256 table, uint256 partyCount) private {
        address[] memory accounts = new address[](partyCount);
        uint256[] memory amounts = new uint256[](partyCount);
        for (uint256 i; i < partyCount;) {
            uint256 amount = PartyTable.get(table, i, PartyTable.LOCK);
            address account = address(uint160(PartyTable.get(table, i, PartyTable.ACCOUNT)));
            accounts[i] = account;
            if (amount != 0) {
                (uint256 slot, uint256 free, uint256 locked) = _balanceSlot(account);
                if (amount > free) revert InsufficientCollateral(account, amount, free);
                locked += amount;
                if (locked > MAX_BALANCE) revert BalanceOverflow(account, locked);
                _storeBalance(slot, free - amount, locked);
                amounts[i] = amount;
            }
            unchecked {
                ++i;
            }
        }
        emit CollateralLocked(t, accounts, amounts);
    }

    // ---------------------------------------------------------------- readings

    /// @inheritdoc IEnergyMarket
    function submitReadings(uint64 t, MeterReading[] calldata readings) external {
        IntervalRecord storage rec = _intervals[t];
        if (rec.status == IntervalStatus.None) revert IntervalNotCommitted(t);
        (, uint256 end) = _window(t);
        if (block.timestamp < end) revert IntervalNotEnded(t, end, block.timestamp);
        uint256 deadline = rec.deadline;
        if (block.timestamp >= deadline) revert ReadingWindowClosed(t, deadline, block.timestamp);
        ReadingBatch memory batch = ReadingBatch({
            interval: t,
            commitSeq: rec.commitSeq,
            flagWord: NO_WORD,
            flagBits: 0,
            laneWord: NO_WORD,
            laneBits: 0
        });
        uint256 w;
        assembly ("memory-safe") {
            w := readings.offset
        }
        uint256 n = readings.length;
        for (uint256 i; i < n;) {
            unchecked {
                _acceptReading(batch, w + i * 192);
                ++i;
            }
        }
        _flushFlags(batch);
        _flushLanes(batch);
    }

    /// @dev Accepts the MeterReading at calldata offset `w` (six ABI words).
    function _acceptReading(ReadingBatch memory batch, uint256 w) private {
        (address participant, uint256 importedWh, uint256 exportedWh) = _readingFields(batch.interval, w);
        bytes32 r;
        bytes32 vs;
        assembly ("memory-safe") {
            r := calldataload(add(w, 128))
            vs := calldataload(add(w, 160))
        }
        uint256 index = _checkMeter(
            participant, batch.commitSeq, _readingDigest(participant, batch.interval, importedWh, exportedWh), r, vs
        );
        _markRead(batch, participant, index, exportedWh);
        bytes32 topic = ReadingSubmitted.selector;
        uint256 t = batch.interval;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, importedWh)
            mstore(add(m, 32), exportedWh)
            log3(m, 64, topic, t, participant)
        }
    }

    /// @dev A reading's participant and energies, with the ABI decoder's range checks; reverts
    ///      ReadingIntervalMismatch when it names another interval than `t`.
    function _readingFields(uint64 t, uint256 w)
        private
        pure
        returns (address participant, uint256 importedWh, uint256 exportedWh)
    {
        uint256 account;
        uint256 interval;
        assembly ("memory-safe") {
            account := calldataload(w)
            interval := calldataload(add(w, 32))
            importedWh := calldataload(add(w, 64))
            exportedWh := calldataload(add(w, 96))
        }
        if ((account >> 160) | (interval >> 64) | (importedWh >> 64) | (exportedWh >> 64) != 0) revert();
        if (interval != t) revert ReadingIntervalMismatch(t, uint64(interval));
        participant = address(uint160(account));
    }

    /// @dev Checks that `participant` was registered when the interval was committed (state
    ///      sequence `commitSeq`) and that (r, vs) over `digest` recovers to the meter key in
    ///      force then; returns its participant index. A later rotation or deregistration does
    ///      not change which key counts.
    function _checkMeter(address participant, uint256 commitSeq, bytes32 digest, bytes32 r, bytes32 vs)
        private
        view
        returns (uint256 index)
    {
        uint256 word = _participantWord(participant);
        address meter = address(uint160(word));
        bool registered = _isRegistered(word);
        if (commitSeq < (word >> 200) & 0xffffffffffff) {
            meter = _meterBefore[participant];
            registered = meter != address(0);
        }
        if (!registered) revert ParticipantNotRegistered(participant);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, r, vs);
        if (err != ECDSA.RecoverError.NoError || signer != meter) {
            revert InvalidMeterSignature(participant, signer);
        }
        return _indexOf(word);
    }

    /// @dev Sets the participant's "read" bit and, for a non-zero export, its export lane, in the
    ///      batch's cached words (ReadingSlots); a word is written back when the batch moves on.
    function _markRead(ReadingBatch memory batch, address participant, uint256 index, uint256 exportedWh)
        private
    {
        (uint256 flagWord, uint256 mask) = ReadingSlots.flagPosition(index);
        if (flagWord != batch.flagWord) {
            _flushFlags(batch);
            batch.flagWord = flagWord;
            batch.flagBits = _readingFlags[batch.interval][flagWord];
        }
        if (batch.flagBits & mask != 0) revert ReadingAlreadySubmitted(batch.interval, participant);
        batch.flagBits |= mask;
        if (exportedWh != 0) {
            (uint256 laneWord, uint256 shift) = ReadingSlots.lanePosition(index);
            if (laneWord != batch.laneWord) {
                _flushLanes(batch);
                batch.laneWord = laneWord;
                batch.laneBits = _exportedLanes[batch.interval][laneWord];
            }
            uint32 lane = ReadingSlots.FULL_LANE;
            if (exportedWh < lane) lane = uint32(exportedWh);
            else _largeExports[batch.interval][index] = exportedWh;
            batch.laneBits = ReadingSlots.writeLane(batch.laneBits, shift, lane);
        }
    }

    function _flushFlags(ReadingBatch memory batch) private {
        if (batch.flagWord != NO_WORD) _readingFlags[batch.interval][batch.flagWord] = batch.flagBits;
    }

    function _flushLanes(ReadingBatch memory batch) private {
        if (batch.laneWord != NO_WORD) _exportedLanes[batch.interval][batch.laneWord] = batch.laneBits;
    }

    function _readingDigest(address participant, uint256 t, uint256 importedWh, uint256 exportedWh)
        private
        view
        returns (bytes32)
    {
        bytes32 typeHash = METER_READING_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typeHash)
            mstore(add(m, 32), participant)
            mstore(add(m, 64), t)
            mstore(add(m, 96), importedWh)
            mstore(add(m, 128), exportedWh)
            structHash := keccak256(m, 160)
        }
        return _hashTypedDataV4(structHash);
    }

    // ---------------------------------------------------------------- settle

    /// @inheritdoc IEnergyMarket
    function settle(
        uint64 t,
        uint256 firstIndex,
        SettleParty[] calldata parties,
        SettleTrade[] calldata trades,
        bytes32 tailHash
    ) external {
        IntervalRecord storage rec = _intervals[t];
        uint256 end = _checkChunk(rec, t, firstIndex, trades.length);
        bool last = end == rec.tradeCount;
        uint256 table = _loadSettleParties(parties);
        // The chain ends at zero, or, for a commit left unfinished, where its last chunk left it.
        if (
            _chainSettled(table, parties.length, trades, tailHash) != rec.remainingHash
                || (last && tailHash != rec.expectedHead)
        ) {
            revert TradesMismatch(t, firstIndex);
        }
        rec.remainingHash = tailHash;
        rec.cursor = uint64(end);
        if (last) rec.status = IntervalStatus.Settled;
        SettleContext memory c = SettleContext({
            interval: t,
            firstIndex: firstIndex,
            penaltyPrice: rec.penaltyPricePerWh,
            toleranceBps: rec.toleranceBps,
            table: table,
            gridRevenue: 0
        });
        _settleTrades(c, trades);
        _applySettlement(t, table, parties.length);
        if (c.gridRevenue != 0) _creditGrid(t, c.gridRevenue);
        if (last) emit IntervalSettled(t);
    }

    function _checkChunk(IntervalRecord storage rec, uint64 t, uint256 firstIndex, uint256 length)
        private
        view
        returns (uint256 end)
    {
        IntervalStatus status = rec.status;
        if (status == IntervalStatus.None) revert IntervalNotCommitted(t);
        if (status == IntervalStatus.Settled) revert IntervalAlreadySettled(t);
        uint256 deadline = rec.deadline;
        if (block.timestamp < deadline) revert ReadingWindowOpen(t, deadline, block.timestamp);
        uint256 cursor = rec.cursor;
        if (firstIndex != cursor) revert ChunkNotAtCursor(t, cursor, firstIndex);
        uint256 count = rec.tradeCount;
        end = cursor + length;
        if ((length == 0 && cursor < count) || end > count) revert ChunkOutOfRange(t, cursor, length, count);
    }

    /// @dev Checks the chunk's party table is strictly ascending and copies it into a PartyTable.
    ///      Addresses and indices are not range-checked here: a party that a trade names is bound
    ///      by the trade's chain link, and a party no trade names is never touched.
    function _loadSettleParties(SettleParty[] calldata parties) private pure returns (uint256 table) {
        uint256 n = parties.length;
        table = PartyTable.create(n);
        uint256 previous = 0; // read only from position 1 on
        for (uint256 i; i < n;) {
            uint256 account;
            uint256 index;
            assembly ("memory-safe") {
                let w := add(parties.offset, mul(i, 64))
                account := calldataload(w)
                index := calldataload(add(w, 32))
            }
            if (i > 0 && account <= previous) revert PartiesNotAscending(i);
            PartyTable.set(table, i, PartyTable.ACCOUNT, account);
            PartyTable.set(table, i, PartyTable.PARTICIPANT_INDEX, index);
            previous = account;
            unchecked {
                ++i;
            }
        }
    }

    /// @dev Recomputes the chain head at the chunk's start (backward, from `tailHash`); also
    ///      range-checks every party position. SettleTrade's quantity, price, sold and
    ///      sold-before words are the link's fields 3..6 in the same order.
    function _chainSettled(uint256 table, uint256 partyCount, SettleTrade[] calldata trades, bytes32 tailHash)
        private
        pure
        returns (bytes32 head)
    {
        uint256 link = TradeChain.newLink();
        head = tailHash;
        for (uint256 i = trades.length; i > 0;) {
            unchecked {
                --i;
            }
            uint256 buyer;
            uint256 seller;
            assembly ("memory-safe") {
                let w := add(trades.offset, mul(i, 192))
                buyer := calldataload(w)
                seller := calldataload(add(w, 32))
            }
            if (buyer >= partyCount) revert PartyIndexOutOfRange(i, buyer, partyCount);
            if (seller >= partyCount) revert PartyIndexOutOfRange(i, seller, partyCount);
            assembly ("memory-safe") {
                let w := add(trades.offset, mul(i, 192))
                let s := add(table, mul(seller, 192))
                mstore(link, mload(add(table, mul(buyer, 192))))
                mstore(add(link, 32), mload(s))
                mstore(add(link, 64), mload(add(s, 32)))
                calldatacopy(add(link, 96), add(w, 64), 128)
            }
            head = TradeChain.seal(link, head);
        }
    }

    /// @dev Applies DESIGN section 5 to each trade (SettlementMath), nets the results into the
    ///      party table and emits TradeSettled. The trades are the committed ones (the chain
    ///      matched), so their fields are in range: q, sold < 2^64, price < 2^128.
    function _settleTrades(SettleContext memory c, SettleTrade[] calldata trades) private {
        uint256 w;
        assembly ("memory-safe") {
            w := trades.offset
        }
        uint256 index = c.firstIndex;
        uint256 end = index + trades.length;
        for (; index < end;) {
            _settleTrade(c, w, index);
            unchecked {
                w += 192;
                ++index;
            }
        }
    }

    /// @dev Settles the SettleTrade at calldata offset `w`, the interval's trade number `index`.
    function _settleTrade(SettleContext memory c, uint256 w, uint256 index) private {
        uint256 q;
        uint256 sold;
        uint256 before;
        uint256 seller;
        uint256 exportedPlusOne;
        uint256 table = c.table;
        assembly ("memory-safe") {
            seller := add(table, mul(calldataload(add(w, 32)), 192))
            q := calldataload(add(w, 64))
            sold := calldataload(add(w, 128))
            before := calldataload(add(w, 160))
            exportedPlusOne := mload(add(seller, 128))
        }
        if (exportedPlusOne == 0) exportedPlusOne = _readExport(c.interval, seller);
        uint256 delivered;
        unchecked {
            delivered = SettlementMath.deliveredWh(q, before, sold, exportedPlusOne - 1);
        }
        uint256 penalty = SettlementMath.penalty(q, delivered, c.toleranceBps, c.penaltyPrice);
        _book(c, w, q, delivered, penalty, index);
    }

    /// @dev Reads the exported Wh of the party whose PartyTable record is at `record` from its
    ///      reading lane (0 without a reading) and caches it there, plus one, for the chunk.
    function _readExport(uint256 t, uint256 record) private view returns (uint256 exportedPlusOne) {
        uint256 index;
        assembly ("memory-safe") {
            index := mload(add(record, 32))
        }
        (uint256 word, uint256 shift) = ReadingSlots.lanePosition(index);
        uint256 exported = ReadingSlots.readLane(_exportedLanes[uint64(t)][word], shift);
        if (exported == ReadingSlots.FULL_LANE) exported = _largeExports[uint64(t)][index];
        unchecked {
            exportedPlusOne = exported + 1;
        }
        assembly ("memory-safe") {
            mstore(add(record, 128), exportedPlusOne)
        }
    }

    /// @dev Nets one trade's outcome into its buyer's and seller's records and emits TradeSettled.
    ///      The price word is price | fee << 128 with fee = price - sellPrice (zero off a grid).
    ///      payment = delivered * price (what the buyer pays), refund = (q - delivered) * price,
    ///      bond = q * penaltyPrice; the buyer's whole lock q * price is released, refund +
    ///      penalty credited; the seller's bond is released, payment - delivered * fee + bond -
    ///      penalty credited (penalty <= bond); delivered * fee goes to the chunk's grid revenue.
    function _book(SettleContext memory c, uint256 w, uint256 q, uint256 delivered, uint256 penalty, uint256 index)
        private
    {
        uint256 table = c.table;
        uint256 bond;
        unchecked {
            bond = q * c.penaltyPrice;
        }
        uint256 interval = c.interval;
        bytes32 topic = TradeSettled.selector;
        uint256 gridShare;
        assembly ("memory-safe") {
            let priceWord := calldataload(add(w, 96))
            let price := and(priceWord, 0xffffffffffffffffffffffffffffffff)
            gridShare := mul(delivered, shr(128, priceWord))
            let b := add(table, mul(calldataload(w), 192))
            let s := add(table, mul(calldataload(add(w, 32)), 192))
            let payment := mul(delivered, price)
            let refund := mul(sub(q, delivered), price)
            mstore(add(b, 64), add(mload(add(b, 64)), add(payment, refund)))
            mstore(add(b, 96), add(mload(add(b, 96)), add(refund, penalty)))
            mstore(add(s, 64), add(mload(add(s, 64)), bond))
            mstore(add(s, 96), add(mload(add(s, 96)), sub(sub(add(payment, bond), penalty), gridShare)))
            let m := mload(0x40)
            mstore(m, index)
            mstore(add(m, 32), delivered)
            mstore(add(m, 64), payment)
            mstore(add(m, 96), refund)
            mstore(add(m, 128), penalty)
            log2(m, 160, topic, interval)
        }
        if (gridShare != 0) {
            unchecked {
                c.gridRevenue += gridShare; // each share < 2^192, a chunk < 2^63 trades
            }
        }
    }

    /// @dev Credits a settled chunk's grid revenue to the interval's grid operator's free
    ///      balance. The buyers' released locks paid it, so the escrow total does not change.
    function _creditGrid(uint64 t, uint256 amount) private {
        address operator = _grids[t].operator;
        (uint256 slot, uint256 free, uint256 locked) = _balanceSlot(operator);
        free += amount;
        if (free > MAX_BALANCE) revert BalanceOverflow(operator, free);
        _storeBalance(slot, free, locked);
        emit GridRevenueCredited(t, operator, amount);
    }

    function _applySettlement(uint64 t, uint256 table, uint256 partyCount) private {
        address[] memory accounts = new address[](partyCount);
        uint256[] memory released = new uint256[](partyCount);
        uint256[] memory credited = new uint256[](partyCount);
        for (uint256 i; i < partyCount;) {
            uint256 out = PartyTable.get(table, i, PartyTable.RELEASED);
            uint256 into = PartyTable.get(table, i, PartyTable.CREDITED);
            address account = address(uint160(PartyTable.get(table, i, PartyTable.ACCOUNT)));
            accounts[i] = account;
            if (out != 0 || into != 0) {
                (uint256 slot, uint256 free, uint256 locked) = _balanceSlot(account);
                free += into;
                if (free > MAX_BALANCE) revert BalanceOverflow(account, free);
                // `out` never exceeds `locked`: the hash chain proves these trades locked it at commit.
                _storeBalance(slot, free, locked - out);
                released[i] = out;
                credited[i] = into;
            }
            unchecked {
                ++i;
            }
        }
        emit ParticipantSettled(t, accounts, released, credited);
    }

    // ---------------------------------------------------------------- storage words

    /// @dev The packed Participant slot of `account`: meter (bits 0-159), index (160-191),
    ///      registered (192-199). One SLOAD where a memory copy of the struct would take three.
    function _participantWord(address account) private view returns (uint256 word) {
        assembly ("memory-safe") {
            mstore(0, account)
            mstore(32, _participants.slot)
            word := sload(keccak256(0, 64))
        }
    }

    function _accountAt(uint256 table, uint256 position) private pure returns (address) {
        return address(uint160(PartyTable.get(table, position, PartyTable.ACCOUNT)));
    }

    function _isRegistered(uint256 participantWord) private pure returns (bool) {
        return (participantWord >> 192) & 0xff != 0;
    }

    function _indexOf(uint256 participantWord) private pure returns (uint256) {
        return (participantWord >> 160) & 0xffffffff;
    }

    /// @dev The Balance slot of `account` and its two halves (free: low 128 bits, locked: high).
    function _balanceSlot(address account) private view returns (uint256 slot, uint256 free, uint256 locked) {
        uint256 packed;
        assembly ("memory-safe") {
            mstore(0, account)
            mstore(32, _balances.slot)
            slot := keccak256(0, 64)
            packed := sload(slot)
        }
        free = packed & MAX_BALANCE;
        locked = packed >> 128;
    }

    /// @dev Both values are at most MAX_BALANCE (checked by every caller).
    function _storeBalance(uint256 slot, uint256 free, uint256 locked) private {
        assembly ("memory-safe") {
            sstore(slot, or(free, shl(128, locked)))
        }
    }

    // ---------------------------------------------------------------- admin

    /// @inheritdoc IEnergyMarket
    function setTerms(Terms calldata newTerms) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _checkTerms(newTerms);
        uint256 from = _nextFrom;
        if (from != 0) {
            // Every interval that started before `from` has ended: none can still be committed
            // under the terms `from` ends.
            if (block.timestamp < from + _intervalSeconds) revert TermsChangePending(uint64(from));
            _terms = _nextTerms;
        }
        from = block.timestamp + TERMS_NOTICE_SECONDS;
        _nextTerms = newTerms;
        _nextFrom = uint64(from);
        emit TermsChanged(newTerms.penaltyPricePerWh, newTerms.toleranceBps, newTerms.readingWindowSeconds, uint64(from));
    }

    /// @inheritdoc IEnergyMarket
    function setGridOperator(address operator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _gridOperator = operator;
        emit GridOperatorChanged(operator);
    }

    /// @inheritdoc IEnergyMarket
    function recordNode(address participant, bytes32 node) external onlyRole(REGISTRAR_ROLE) {
        if (!_participants[participant].registered) revert ParticipantNotRegistered(participant);
        emit NodeRecorded(participant, node);
    }

    /// @inheritdoc IEnergyMarket
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @inheritdoc IEnergyMarket
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    function _checkTerms(Terms memory newTerms) private pure {
        if (
            newTerms.toleranceBps > SettlementMath.BPS || newTerms.readingWindowSeconds == 0
                || newTerms.readingWindowSeconds > MAX_READING_WINDOW_SECONDS
        ) {
            revert InvalidTerms(newTerms.penaltyPricePerWh, newTerms.toleranceBps, newTerms.readingWindowSeconds);
        }
    }

    /// @dev The terms of the interval that starts at `start`: the scheduled ones from their
    ///      first start on, the current ones before.
    function _termsAt(uint256 start) private view returns (Terms memory) {
        uint256 from = _nextFrom;
        return from != 0 && start >= from ? _nextTerms : _terms;
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IEnergyMarket
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @inheritdoc IEnergyMarket
    function terms() external view returns (Terms memory) {
        return _termsAt(block.timestamp);
    }

    /// @inheritdoc IEnergyMarket
    function termsFor(uint64 t) external view returns (Terms memory) {
        (uint256 start,) = _window(t);
        return _termsAt(start);
    }

    /// @inheritdoc IEnergyMarket
    function scheduledTerms() external view returns (Terms memory next, uint64 from) {
        return (_nextTerms, _nextFrom);
    }

    /// @inheritdoc IEnergyMarket
    function gridOperator() external view returns (address) {
        return _gridOperator;
    }

    /// @inheritdoc IEnergyMarket
    function acceptsSignature(address account, bytes32 id, bytes32 r, bytes32 vs) external view returns (bool) {
        return account.code.length != 0 && _acceptsERC1271(account, id, r, vs);
    }

    /// @inheritdoc IEnergyMarket
    function gridOf(uint64 t) external view returns (bytes32 root, address operator) {
        Grid storage g = _grids[t];
        return (g.root, g.operator);
    }

    /// @inheritdoc IEnergyMarket
    function epoch() external view returns (uint64) {
        return _epoch;
    }

    /// @inheritdoc IEnergyMarket
    function intervalSeconds() external view returns (uint64) {
        return _intervalSeconds;
    }

    /// @inheritdoc IEnergyMarket
    function intervalWindow(uint64 t) external view returns (uint256 start, uint256 end) {
        return _window(t);
    }

    /// @inheritdoc IEnergyMarket
    function intervalInfo(uint64 t) external view returns (IntervalInfo memory) {
        IntervalRecord storage rec = _intervals[t];
        return IntervalInfo({
            status: rec.status,
            tradeCount: rec.tradeCount,
            cursor: rec.cursor,
            deadline: rec.deadline,
            toleranceBps: rec.toleranceBps,
            penaltyPricePerWh: rec.penaltyPricePerWh,
            bookRoot: rec.bookRoot,
            remainingHash: rec.remainingHash
        });
    }

    /// @inheritdoc IEnergyMarket
    function balanceOf(address participant) external view returns (uint256 free, uint256 locked) {
        Balance memory b = _balances[participant];
        return (b.free, b.locked);
    }

    /// @inheritdoc IEnergyMarket
    function balancesOf(address[] calldata participants)
        external
        view
        returns (uint256[] memory free, uint256[] memory locked)
    {
        // Writes the ABI answer (two offsets, then each array's length and words) and returns
        // it from assembly: one word in and two out per address. Solidity's loop with its bounds
        // checks and its encoder's copy of both arrays take five times the EVM steps, and steps
        // are what an eth-tester chain (py-evm) spends its time on. The address check is the one
        // Solidity's decoder makes for an `address` element.
        assembly ("memory-safe") {
            let n := participants.length
            let size := shl(5, n)
            let out := mload(0x40)
            mstore(out, 0x40)
            mstore(add(out, 0x20), add(0x60, size))
            mstore(add(out, 0x40), n)
            mstore(add(out, add(0x60, size)), n)
            let f := add(out, 0x60)
            let l := add(out, add(0x80, size))
            let src := participants.offset
            let end := add(src, size)
            mstore(0x20, _balances.slot)
            for {} lt(src, end) { src := add(src, 0x20) } {
                let account := calldataload(src)
                if shr(160, account) { revert(0, 0) }
                mstore(0, account)
                let packed := sload(keccak256(0, 0x40))
                mstore(f, shr(128, shl(128, packed)))
                mstore(l, shr(128, packed))
                f := add(f, 0x20)
                l := add(l, 0x20)
            }
            return(out, add(0x80, shl(1, size)))
        }
    }

    /// @inheritdoc IEnergyMarket
    function totalEscrowed() external view returns (uint256) {
        return _totalEscrowed;
    }

    /// @inheritdoc IEnergyMarket
    function participantInfo(address participant)
        external
        view
        returns (address meter, uint32 participantIndex, bool registered)
    {
        Participant memory p = _participants[participant];
        return (p.meter, p.index, p.registered);
    }

    /// @inheritdoc IEnergyMarket
    function meterFor(uint64 t, address participant) external view returns (address meter, bool registered) {
        Participant memory p = _participants[participant];
        meter = p.meter;
        registered = p.registered;
        IntervalRecord storage rec = _intervals[t];
        if (rec.status != IntervalStatus.None && rec.commitSeq < p.changeSeq) {
            meter = _meterBefore[participant];
            registered = meter != address(0);
        }
    }

    /// @inheritdoc IEnergyMarket
    function participantCount() external view returns (uint32) {
        return _participantCount;
    }

    /// @inheritdoc IEnergyMarket
    function readingOf(uint64 t, address participant) external view returns (bool submitted, uint64 exportedWh) {
        Participant memory p = _participants[participant];
        if (p.meter == address(0)) return (false, 0);
        (uint256 word, uint256 mask) = ReadingSlots.flagPosition(p.index);
        submitted = _readingFlags[t][word] & mask != 0;
        (uint256 laneWord, uint256 shift) = ReadingSlots.lanePosition(p.index);
        exportedWh = ReadingSlots.readLane(_exportedLanes[t][laneWord], shift);
        if (exportedWh == ReadingSlots.FULL_LANE) exportedWh = uint64(_largeExports[t][p.index]);
    }

    /// @inheritdoc IEnergyMarket
    function readingDigest(address participant, uint64 interval, uint64 importedWh, uint64 exportedWh)
        external
        view
        returns (bytes32)
    {
        return _readingDigest(participant, interval, importedWh, exportedWh);
    }

    function _window(uint64 t) private view returns (uint256 start, uint256 end) {
        start = uint256(_epoch) + uint256(t) * _intervalSeconds;
        end = start + _intervalSeconds;
    }
}
