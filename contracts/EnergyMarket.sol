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

    uint256 private constant MAX_BALANCE = type(uint128).max;

    struct Balance {
        uint128 free;
        uint128 locked;
    }

    struct Participant {
        address meter;
        uint32 index;
        bool registered;
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
    }

    /// @dev One trade's settlement, reused across the loop to keep the stack shallow.
    struct TradeOutcome {
        uint64 interval;
        uint256 index;
        uint256 penaltyPrice;
        uint256 toleranceBps;
        uint256 delivered;
        uint256 payment;
        uint256 refund;
        uint256 penalty;
        uint256 bond;
    }

    /// @dev Per-party work arrays of a commit, kept in memory to keep the stack shallow.
    struct CommitWork {
        uint32[] participantIndex;
        uint256[] lock;
        uint256[] sold;
        uint256[] soldBefore;
    }

    IERC20 private immutable _token;
    uint64 private immutable _epoch;
    uint64 private immutable _intervalSeconds;

    Terms private _terms;
    uint32 private _participantCount;
    uint256 private _totalEscrowed;
    mapping(address participant => Balance) private _balances;
    mapping(address participant => Participant) private _participants;
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
        uint32 index = p.meter == address(0) ? _participantCount++ : p.index;
        _participants[participant] = Participant({meter: meter, index: index, registered: true});
        emit ParticipantRegistered(participant, meter, index);
    }

    /// @inheritdoc IEnergyMarket
    function rotateMeter(address participant, address newMeter) external onlyRole(REGISTRAR_ROLE) {
        if (newMeter == address(0)) revert ZeroAddress();
        Participant storage p = _participants[participant];
        if (!p.registered) revert ParticipantNotRegistered(participant);
        address oldMeter = p.meter;
        p.meter = newMeter;
        emit MeterRotated(participant, oldMeter, newMeter);
    }

    /// @inheritdoc IEnergyMarket
    function deregisterParticipant(address participant) external onlyRole(REGISTRAR_ROLE) {
        Participant storage p = _participants[participant];
        if (!p.registered) revert ParticipantNotRegistered(participant);
        p.registered = false;
        emit ParticipantDeregistered(participant);
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
        CommitWork memory work = _loadParties(parties);
        uint128 penaltyPrice = _terms.penaltyPricePerWh;
        _tallyTrades(work, parties, trades, penaltyPrice);
        (bytes32 head, bytes32 ordersDigest) = _chainCommitted(work, parties, trades);
        _lockCollateral(t, parties, work.lock);

        uint16 toleranceBps = _terms.toleranceBps;
        rec.remainingHash = head;
        rec.bookRoot = bookRoot;
        rec.tradeCount = uint64(trades.length);
        rec.deadline = deadline;
        rec.status = IntervalStatus.Committed;
        rec.toleranceBps = toleranceBps;
        rec.penaltyPricePerWh = penaltyPrice;
        emit IntervalCommitted(
            t, bookRoot, head, ordersDigest, uint64(trades.length), deadline, penaltyPrice, toleranceBps
        );
    }

    function _commitDeadline(uint64 t) private view returns (uint64) {
        (, uint256 end) = _window(t);
        if (block.timestamp >= end) revert IntervalAlreadyEnded(t, end, block.timestamp);
        uint256 deadline = end + _terms.readingWindowSeconds;
        if (deadline > type(uint64).max) revert IntervalOutOfRange(t);
        return uint64(deadline);
    }

    function _loadParties(address[] calldata parties) private view returns (CommitWork memory work) {
        uint256 n = parties.length;
        work.participantIndex = new uint32[](n);
        work.lock = new uint256[](n);
        work.sold = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            address account = parties[i];
            if (i > 0 && account <= parties[i - 1]) revert PartiesNotAscending(i);
            Participant storage p = _participants[account];
            if (!p.registered) revert ParticipantNotRegistered(account);
            work.participantIndex[i] = p.index;
        }
    }

    /// @dev Checks each trade; nets locks per party; records each seller's running sold total.
    function _tallyTrades(
        CommitWork memory work,
        address[] calldata parties,
        CommitTrade[] calldata trades,
        uint256 penaltyPrice
    ) private pure {
        uint256 n = trades.length;
        uint256 partyCount = parties.length;
        work.soldBefore = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            CommitTrade calldata tr = trades[i];
            uint256 buyer = tr.buyer;
            uint256 seller = tr.seller;
            if (buyer >= partyCount) revert PartyIndexOutOfRange(i, buyer, partyCount);
            if (seller >= partyCount) revert PartyIndexOutOfRange(i, seller, partyCount);
            if (buyer == seller) revert SelfTrade(i, parties[buyer]);
            uint256 q = tr.quantityWh;
            if (q == 0) revert ZeroQuantity(i);
            if (tr.pricePerWh == 0) revert ZeroPrice(i);
            uint256 before = work.sold[seller];
            if (before + q > type(uint64).max) revert SoldQuantityOverflow(parties[seller]);
            work.soldBefore[i] = before;
            work.sold[seller] = before + q;
            work.lock[buyer] += q * tr.pricePerWh;
            work.lock[seller] += q * penaltyPrice;
        }
    }

    /// @dev Builds the trade hash chain backwards and folds the order ids forwards.
    function _chainCommitted(CommitWork memory work, address[] calldata parties, CommitTrade[] calldata trades)
        private
        pure
        returns (bytes32 head, bytes32 ordersDigest)
    {
        TradeChain.Link memory l;
        for (uint256 i = trades.length; i > 0;) {
            --i;
            CommitTrade calldata tr = trades[i];
            uint256 seller = tr.seller;
            l.buyer = parties[tr.buyer];
            l.seller = parties[seller];
            l.sellerIndex = work.participantIndex[seller];
            l.quantityWh = tr.quantityWh;
            l.pricePerWh = tr.pricePerWh;
            l.sellerSoldWh = work.sold[seller];
            l.sellerSoldBeforeWh = work.soldBefore[i];
            l.next = TradeChain.hash(l);
        }
        head = l.next;
        for (uint256 i; i < trades.length; ++i) {
            ordersDigest = TradeChain.foldOrders(ordersDigest, trades[i].buyOrderId, trades[i].sellOrderId);
        }
    }

    function _lockCollateral(uint64 t, address[] calldata parties, uint256[] memory lock) private {
        for (uint256 i; i < parties.length; ++i) {
            uint256 amount = lock[i];
            if (amount == 0) continue;
            address account = parties[i];
            Balance memory b = _balances[account];
            if (amount > b.free) revert InsufficientCollateral(account, amount, b.free);
            uint256 locked = uint256(b.locked) + amount;
            if (locked > MAX_BALANCE) revert BalanceOverflow(account, locked);
            _balances[account] = Balance({free: uint128(b.free - amount), locked: uint128(locked)});
            emit CollateralLocked(t, account, amount);
        }
    }

    // ---------------------------------------------------------------- readings

    /// @inheritdoc IEnergyMarket
    function submitReadings(uint64 t, MeterReading[] calldata readings) external whenNotPaused {
        IntervalRecord storage rec = _intervals[t];
        if (rec.status == IntervalStatus.None) revert IntervalNotCommitted(t);
        (, uint256 end) = _window(t);
        if (block.timestamp < end) revert IntervalNotEnded(t, end, block.timestamp);
        uint256 deadline = rec.deadline;
        if (block.timestamp >= deadline) revert ReadingWindowClosed(t, deadline, block.timestamp);
        for (uint256 i; i < readings.length; ++i) {
            _acceptReading(t, readings[i]);
        }
    }

    function _acceptReading(uint64 t, MeterReading calldata reading) private {
        address participant = reading.participant;
        if (reading.interval != t) revert ReadingIntervalMismatch(t, reading.interval);
        Participant memory p = _participants[participant];
        if (!p.registered) revert ParticipantNotRegistered(participant);
        bytes32 digest = _readingDigest(participant, t, reading.importedWh, reading.exportedWh);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, reading.r, reading.vs);
        if (err != ECDSA.RecoverError.NoError || signer != p.meter) {
            revert InvalidMeterSignature(participant, signer);
        }
        (uint256 word, uint256 mask) = ReadingSlots.flagPosition(p.index);
        uint256 flags = _readingFlags[t][word];
        if (flags & mask != 0) revert ReadingAlreadySubmitted(t, participant);
        _readingFlags[t][word] = flags | mask;
        if (reading.exportedWh != 0) {
            (uint256 laneWord, uint256 shift) = ReadingSlots.lanePosition(p.index);
            mapping(uint256 => uint256) storage lanes = _exportedLanes[t];
            lanes[laneWord] = ReadingSlots.writeLane(lanes[laneWord], shift, reading.exportedWh);
        }
        emit ReadingSubmitted(t, participant, reading.importedWh, reading.exportedWh);
    }

    function _readingDigest(address participant, uint64 t, uint64 importedWh, uint64 exportedWh)
        private
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(METER_READING_TYPEHASH, participant, t, importedWh, exportedWh))
        );
    }

    // ---------------------------------------------------------------- settle

    /// @inheritdoc IEnergyMarket
    function settle(
        uint64 t,
        uint256 firstIndex,
        SettleParty[] calldata parties,
        SettleTrade[] calldata trades,
        bytes32 tailHash
    ) external whenNotPaused {
        IntervalRecord storage rec = _intervals[t];
        uint256 end = _checkChunk(rec, t, firstIndex, trades.length);
        bool last = end == rec.tradeCount;
        if (_chainSettled(parties, trades, tailHash) != rec.remainingHash || (last && tailHash != 0)) {
            revert TradesMismatch(t, firstIndex);
        }
        rec.remainingHash = tailHash;
        rec.cursor = uint64(end);
        if (last) rec.status = IntervalStatus.Settled;
        _settleChunk(rec, t, firstIndex, parties, trades);
        if (last) emit IntervalSettled(t);
    }

    function _settleChunk(
        IntervalRecord storage rec,
        uint64 t,
        uint256 firstIndex,
        SettleParty[] calldata parties,
        SettleTrade[] calldata trades
    ) private {
        TradeOutcome memory o;
        o.interval = t;
        o.index = firstIndex;
        o.penaltyPrice = rec.penaltyPricePerWh;
        o.toleranceBps = rec.toleranceBps;
        (uint256[] memory released, uint256[] memory credited) = _settleTrades(o, _exportedLanes[t], parties, trades);
        _applySettlement(t, parties, released, credited);
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

    /// @dev Recomputes the chain head at the chunk's start; also range-checks party positions.
    function _chainSettled(SettleParty[] calldata parties, SettleTrade[] calldata trades, bytes32 tailHash)
        private
        pure
        returns (bytes32 head)
    {
        uint256 partyCount = parties.length;
        for (uint256 i = 1; i < partyCount; ++i) {
            if (parties[i].account <= parties[i - 1].account) revert PartiesNotAscending(i);
        }
        TradeChain.Link memory l;
        l.next = tailHash;
        for (uint256 i = trades.length; i > 0;) {
            --i;
            SettleTrade calldata tr = trades[i];
            uint256 buyer = tr.buyer;
            uint256 seller = tr.seller;
            if (buyer >= partyCount) revert PartyIndexOutOfRange(i, buyer, partyCount);
            if (seller >= partyCount) revert PartyIndexOutOfRange(i, seller, partyCount);
            l.buyer = parties[buyer].account;
            l.seller = parties[seller].account;
            l.sellerIndex = parties[seller].participantIndex;
            l.quantityWh = tr.quantityWh;
            l.pricePerWh = tr.pricePerWh;
            l.sellerSoldWh = tr.sellerSoldWh;
            l.sellerSoldBeforeWh = tr.sellerSoldBeforeWh;
            l.next = TradeChain.hash(l);
        }
        head = l.next;
    }

    /// @dev Applies DESIGN section 5 to each trade and nets the results per party in memory.
    function _settleTrades(
        TradeOutcome memory o,
        mapping(uint256 => uint256) storage lanes,
        SettleParty[] calldata parties,
        SettleTrade[] calldata trades
    ) private returns (uint256[] memory released, uint256[] memory credited) {
        released = new uint256[](parties.length);
        credited = new uint256[](parties.length);
        for (uint256 i; i < trades.length; ++i) {
            SettleTrade calldata tr = trades[i];
            (uint256 word, uint256 shift) = ReadingSlots.lanePosition(parties[tr.seller].participantIndex);
            _outcome(o, tr, ReadingSlots.readLane(lanes[word], shift));
            released[tr.buyer] += o.payment + o.refund;
            credited[tr.buyer] += o.refund + o.penalty;
            released[tr.seller] += o.bond;
            credited[tr.seller] += o.payment + o.bond - o.penalty;
            _emitTradeSettled(o);
        }
    }

    function _emitTradeSettled(TradeOutcome memory o) private {
        emit TradeSettled(o.interval, o.index++, uint64(o.delivered), o.payment, o.refund, o.penalty);
    }

    /// @dev One trade's outcome: delivered Wh, payment and refund from the buyer's lock,
    ///      penalty from the seller's bond (which is quantity * penaltyPrice).
    function _outcome(TradeOutcome memory o, SettleTrade calldata tr, uint256 exportedWh) private pure {
        uint256 q = tr.quantityWh;
        uint256 delivered = SettlementMath.deliveredWh(q, tr.sellerSoldBeforeWh, tr.sellerSoldWh, exportedWh);
        o.delivered = delivered;
        o.payment = delivered * tr.pricePerWh;
        o.refund = (q - delivered) * tr.pricePerWh;
        o.penalty = SettlementMath.penalty(q, delivered, o.toleranceBps, o.penaltyPrice);
        o.bond = q * o.penaltyPrice;
    }

    function _applySettlement(
        uint64 t,
        SettleParty[] calldata parties,
        uint256[] memory released,
        uint256[] memory credited
    ) private {
        for (uint256 i; i < parties.length; ++i) {
            uint256 out = released[i];
            uint256 into = credited[i];
            if (out == 0 && into == 0) continue;
            address account = parties[i].account;
            Balance memory b = _balances[account];
            uint256 free = uint256(b.free) + into;
            if (free > MAX_BALANCE) revert BalanceOverflow(account, free);
            // `out` never exceeds `locked`: the hash chain proves these trades locked it at commit.
            _balances[account] = Balance({free: uint128(free), locked: uint128(b.locked - out)});
            emit ParticipantSettled(t, account, out, into);
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
        if (newTerms.toleranceBps > SettlementMath.BPS || newTerms.readingWindowSeconds == 0) {
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
