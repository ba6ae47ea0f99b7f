// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ReadingSlots: packed per-interval storage of meter readings
/// @notice A fresh storage slot costs 22.1k gas, so readings share slots by participant index:
///         one bit per participant marks "reading accepted" (256 per word), and exported energy
///         takes a 64-bit lane (4 per word). A batch sorted by participant index writes each word
///         once. Imported energy is for reporting only and lives in the ReadingSubmitted event.
library ReadingSlots {
    uint256 private constant LANE_MASK = 0xffffffffffffffff;

    /// @notice Word key and bit mask of a participant's "submitted" flag.
    function flagPosition(uint256 participantIndex) internal pure returns (uint256 word, uint256 mask) {
        return (participantIndex >> 8, uint256(1) << (participantIndex & 0xff));
    }

    /// @notice Word key and bit shift of a participant's exported-energy lane.
    function lanePosition(uint256 participantIndex) internal pure returns (uint256 word, uint256 shift) {
        return (participantIndex >> 2, (participantIndex & 3) << 6);
    }

    /// @notice Reads a 64-bit lane from a packed word.
    function readLane(uint256 packed, uint256 shift) internal pure returns (uint64) {
        return uint64((packed >> shift) & LANE_MASK);
    }

    /// @notice Writes a 64-bit lane into a packed word whose lane is still zero.
    function writeLane(uint256 packed, uint256 shift, uint64 value) internal pure returns (uint256) {
        return packed | (uint256(value) << shift);
    }
}
