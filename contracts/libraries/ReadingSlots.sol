// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ReadingSlots: packed per-interval storage of meter readings
/// @notice A fresh storage slot costs 22.1k gas, so readings share slots by participant index:
///         one bit per participant marks "reading accepted" (256 per word), and exported energy
///         takes a 32-bit lane (8 per word; an export of 2^32 - 1 Wh or more marks its lane full
///         and is stored whole beside it). A batch sorted by participant index writes each word
///         once. Imported energy is for reporting only and lives in the ReadingSubmitted event.
library ReadingSlots {
    uint256 private constant LANE_MASK = 0xffffffff;
    /// @notice A lane holding this value stands for an export stored whole elsewhere.
    uint32 internal constant FULL_LANE = type(uint32).max;

    /// @notice Word key and bit mask of a participant's "submitted" flag.
    function flagPosition(uint256 participantIndex) internal pure returns (uint256 word, uint256 mask) {
        return (participantIndex >> 8, uint256(1) << (participantIndex & 0xff));
    }

    /// @notice Word key and bit shift of a participant's exported-energy lane.
    function lanePosition(uint256 participantIndex) internal pure returns (uint256 word, uint256 shift) {
        return (participantIndex >> 3, (participantIndex & 7) << 5);
    }

    /// @notice Reads a 32-bit lane from a packed word.
    function readLane(uint256 packed, uint256 shift) internal pure returns (uint32) {
        return uint32((packed >> shift) & LANE_MASK);
    }

    /// @notice Writes a 32-bit lane into a packed word whose lane is still zero.
    function writeLane(uint256 packed, uint256 shift, uint32 value) internal pure returns (uint256) {
        return packed | (uint256(value) << shift);
    }
}
