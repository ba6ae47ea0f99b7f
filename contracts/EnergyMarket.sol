// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
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

    /// @notice Latest start, after the commit's block time, of an interval that may be committed
    ///         (seconds): with MAX_READING_WINDOW_SECONDS it bounds how long a commit locks funds.
    uint256 public constant MAX_COMMIT_LEAD_SECONDS = 2 days;
    /// @notice Longest reading window the terms may set (seconds).
    uint64 public constant MAX_READING_WINDOW_SECONDS = 7 days;

    uint256 private constant MAX_BALANCE = type(uint128).max;
    /// @dev "No word cached yet" in a ReadingBatch (word keys are participant index >> 2 or >> 8).
    uint256 private constant NO_WORD = type(uint256).max;

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
    }

    IERC20 private immutable _token;
    uint64 private immutable _epoch;
    uint64 private immutable _intervalSeconds;

    Terms private _terms;
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
        _setTerms(initialTerms);
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
    function commitInterval(uint64 t, bytes32 bookRoot, address[] calldata parties, CommitTrade[] calldata trades)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        IntervalRecord storage rec = _intervals[t];
        if (rec.status != IntervalStatus.None) revert IntervalAlreadyCommitted(t);
        uint64 deadline = _commitDeadline(t);
        uint128 penaltyPrice = _terms.penaltyPricePerWh;
        uint256 table = _loadParties(parties);
        bytes32 ordersDigest = _tallyTrades(table, parties.length, trades, penaltyPrice, 0);
        _fixSoldTotals(table, parties.length);
        bytes32 head = _chainCommitted(table, trades, 0);
        _lockCollateral(t, table, parties.length);

        uint16 toleranceBps = _terms.toleranceBps;
        rec.remainingHash = head;
        rec.bookRoot = bookRoot;
        rec.tradeCount = uint64(trades.length);
        rec.deadline = deadline;
        rec.status = IntervalStatus.Committed;
        rec.toleranceBps = toleranceBps;
        rec.penaltyPricePerWh = penaltyPrice;
        rec.commitSeq = ++_stateSeq;
        emit IntervalCommitted(
            t, bookRoot, head, ordersDigest, uint64(trades.length), deadline, penaltyPrice, toleranceBps
        );
    }

    function _commitDeadline(uint64 t) private view returns (uint64) {
        (uint256 start, uint256 end) = _window(t);
        if (block.timestamp >= end) revert IntervalAlreadyEnded(t, end, block.timestamp);
        if (start > block.timestamp + MAX_COMMIT_LEAD_SECONDS) {
            revert IntervalTooFarAhead(t, start, block.timestamp + MAX_COMMIT_LEAD_SECONDS);
        }
        uint256 deadline = end + _terms.readingWindowSeconds;
        if (deadline > type(uint64).max) revert IntervalOutOfRange(t);
        return uint64(deadline);
    }

    /// @dev Checks that the party table is strictly ascending and registered; copies each party's
    ///      address and participant index into a PartyTable.
    function _loadParties(address[] calldata parties) private view returns (uint256 table) {
        uint256 n = parties.length;
        table = PartyTable.create(n);
        address previous = address(0); // read only from position 1 on
        for (uint256 i; i < n;) {
            address account = parties[i];
            if (i > 0 && account <= previous) revert PartiesNotAscending(i);
            uint256 word = _participantWord(account);
            if (!_isRegistered(word)) revert ParticipantNotRegistered(account);
            PartyTable.set(table, i, PartyTable.ACCOUNT, uint160(account));
            PartyTable.set(table, i, PartyTable.PARTICIPANT_INDEX, _indexOf(word));
            previous = account;
            unchecked {
                ++i;
            }
        }
    }

    /// @dev Forward pass in commit order: checks each trade, nets each party's lock, adds to each
    ///      seller's sold total, and continues the order-id fold `ordersDigest`.
    function _tallyTrades(
        uint256 table,
        uint256 partyCount,
        CommitTrade[] calldata trades,
        uint256 penaltyPrice,
        bytes32 ordersDigest
    ) private pure returns (bytes32) {
        uint256 w;
        assembly ("memory-safe") {
            w := trades.offset
        }
        uint256 n = trades.length;
        for (uint256 i; i < n;) {
            bytes32 buyOrderId;
            bytes32 sellOrderId;
            assembly ("memory-safe") {
                buyOrderId := calldataload(add(w, 128))
                sellOrderId := calldataload(add(w, 160))
            }
            ordersDigest = TradeChain.foldOrders(ordersDigest, buyOrderId, sellOrderId);
            _tallyTrade(table, partyCount, w, i, penaltyPrice);
            unchecked {
                w += 192;
                ++i;
            }
        }
        return ordersDigest;
    }

    /// @dev Checks the CommitTrade at calldata offset `w` (trade `i` of the list) and tallies it.
    function _tallyTrade(uint256 table, uint256 partyCount, uint256 w, uint256 i, uint256 penaltyPrice) private pure {
        uint256 buyer;
        uint256 seller;
        uint256 q;
        uint256 price;
        assembly ("memory-safe") {
            buyer := calldataload(w)
            seller := calldataload(add(w, 32))
            q := calldataload(add(w, 64))
            price := calldataload(add(w, 96))
        }
        if (buyer >= partyCount) revert PartyIndexOutOfRange(i, buyer, partyCount);
        if (seller >= partyCount) revert PartyIndexOutOfRange(i, seller, partyCount);
        if (buyer == seller) revert SelfTrade(i, _accountAt(table, buyer));
        if (q == 0) revert ZeroQuantity(i);
        if (price == 0) revert ZeroPrice(i);
        // The ABI ranges of uint64 and uint128, which Solidity's decoder would enforce.
        if ((q >> 64) | (price >> 128) != 0) revert();
        if (_tally(table, buyer, seller, q, price, penaltyPrice)) revert SoldQuantityOverflow(_accountAt(table, seller));
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

    /// @dev A whole interval in one call: each seller's total S is its sold Wh after the tally.
    function _fixSoldTotals(uint256 table, uint256 partyCount) private pure {
        for (uint256 i; i < partyCount;) {
            PartyTable.set(table, i, PartyTable.SOLD_TOTAL, PartyTable.get(table, i, PartyTable.SOLD));
            unchecked {
                ++i;
            }
        }
    }

    /// @dev Backward pass over the calldata's trades, from `tail` (the chain head after its last
    ///      trade) to the head at its first. B_k, the seller's quantity in earlier trades of the
    ///      interval, is its sold total after the tally minus its quantity from trade k to the end
    ///      of the calldata, which this pass accumulates. _tallyTrades range-checked the positions.
    function _chainCommitted(uint256 table, CommitTrade[] calldata trades, bytes32 tail)
        private
        pure
        returns (bytes32 head)
    {
        uint256 link = TradeChain.newLink();
        head = tail;
        uint256 w;
        assembly ("memory-safe") {
            w := add(trades.offset, mul(trades.length, 192))
        }
        for (uint256 i = trades.length; i > 0;) {
            assembly ("memory-safe") {
                w := sub(w, 192)
                let s := add(table, mul(calldataload(add(w, 32)), 192))
                let q := calldataload(add(w, 64))
                let fromHere := add(mload(add(s, 128)), q)
                mstore(add(s, 128), fromHere)
                mstore(link, mload(add(table, mul(calldataload(w), 192))))
                mstore(add(link, 32), mload(s))
                mstore(add(link, 64), mload(add(s, 32)))
                mstore(add(link, 96), q)
                mstore(add(link, 128), calldataload(add(w, 96)))
                mstore(add(link, 160), mload(add(s, 160)))
                mstore(add(link, 192), sub(mload(add(s, 96)), fromHere))
            }
            head = TradeChain.seal(link, head);
            unchecked {
                --i;
            }
        }
    }

    function _lockCollateral(uint64 t, uint256 table, uint256 partyCount) private {
        for (uint256 i; i < partyCount;) {
            uint256 amount = PartyTable.get(table, i, PartyTable.LOCK);
            if (amount != 0) {
                address account = address(uint160(PartyTable.get(table, i, PartyTable.ACCOUNT)));
                (uint256 slot, uint256 free, uint256 locked) = _balanceSlot(account);
                if (amount > free) revert InsufficientCollateral(account, amount, free);
                locked += amount;
                if (locked > MAX_BALANCE) revert BalanceOverflow(account, locked);
                _storeBalance(slot, free - amount, locked);
                emit CollateralLocked(t, account, amount);
            }
            unchecked {
                ++i;
            }
        }
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
            batch.laneBits = ReadingSlots.writeLane(batch.laneBits, shift, uint64(exportedWh));
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
        if (_chainSettled(table, parties.length, trades, tailHash) != rec.remainingHash || (last && tailHash != 0)) {
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
            table: table
        });
        _settleTrades(c, trades);
        _applySettlement(t, table, parties.length);
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
        unchecked {
            exportedPlusOne = uint256(ReadingSlots.readLane(_exportedLanes[uint64(t)][word], shift)) + 1;
        }
        assembly ("memory-safe") {
            mstore(add(record, 128), exportedPlusOne)
        }
    }

    /// @dev Nets one trade's outcome into its buyer's and seller's records and emits TradeSettled.
    ///      payment = delivered * price, refund = (q - delivered) * price, bond = q * penaltyPrice;
    ///      the buyer's whole lock q * price is released, refund + penalty credited; the seller's
    ///      bond is released, payment + bond - penalty credited (penalty <= bond).
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
        assembly ("memory-safe") {
            let price := calldataload(add(w, 96))
            let b := add(table, mul(calldataload(w), 192))
            let s := add(table, mul(calldataload(add(w, 32)), 192))
            let payment := mul(delivered, price)
            let refund := mul(sub(q, delivered), price)
            mstore(add(b, 64), add(mload(add(b, 64)), add(payment, refund)))
            mstore(add(b, 96), add(mload(add(b, 96)), add(refund, penalty)))
            mstore(add(s, 64), add(mload(add(s, 64)), bond))
            mstore(add(s, 96), add(mload(add(s, 96)), sub(add(payment, bond), penalty)))
            let m := mload(0x40)
            mstore(m, index)
            mstore(add(m, 32), delivered)
            mstore(add(m, 64), payment)
            mstore(add(m, 96), refund)
            mstore(add(m, 128), penalty)
            log2(m, 160, topic, interval)
        }
    }

    function _applySettlement(uint64 t, uint256 table, uint256 partyCount) private {
        for (uint256 i; i < partyCount;) {
            uint256 out = PartyTable.get(table, i, PartyTable.RELEASED);
            uint256 into = PartyTable.get(table, i, PartyTable.CREDITED);
            if (out != 0 || into != 0) {
                address account = address(uint160(PartyTable.get(table, i, PartyTable.ACCOUNT)));
                (uint256 slot, uint256 free, uint256 locked) = _balanceSlot(account);
                free += into;
                if (free > MAX_BALANCE) revert BalanceOverflow(account, free);
                // `out` never exceeds `locked`: the hash chain proves these trades locked it at commit.
                _storeBalance(slot, free, locked - out);
                emit ParticipantSettled(t, account, out, into);
            }
            unchecked {
                ++i;
            }
        }
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
        _setTerms(newTerms);
    }

    /// @inheritdoc IEnergyMarket
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    /// @inheritdoc IEnergyMarket
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    function _setTerms(Terms memory newTerms) private {
        if (
            newTerms.toleranceBps > SettlementMath.BPS || newTerms.readingWindowSeconds == 0
                || newTerms.readingWindowSeconds > MAX_READING_WINDOW_SECONDS
        ) {
            revert InvalidTerms(newTerms.penaltyPricePerWh, newTerms.toleranceBps, newTerms.readingWindowSeconds);
        }
        _terms = newTerms;
        emit TermsChanged(newTerms.penaltyPricePerWh, newTerms.toleranceBps, newTerms.readingWindowSeconds);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IEnergyMarket
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @inheritdoc IEnergyMarket
    function terms() external view returns (Terms memory) {
        return _terms;
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
