// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PartyTable: a commit's or settle chunk's parties as fixed-size records in memory
/// @notice Commit and settle net every trade into its parties' records and write each balance
///         once. A record is six words at `table + position * RECORD_BYTES`, so the per-trade
///         loops reach a field with one multiply-add instead of a bounds-checked array access:
///
///           offset  commit                              settle
///           0       account                             account
///           32      participant index                   participant index
///           64      collateral to lock                  released from locked
///           96      seller's sold Wh so far (B)         credited to free
///           128     seller's Wh from the current        seller's exported Wh + 1 (0: not read yet)
///                   trade to the end of the calldata
///           160     seller's total sold Wh (S)          -
///
///         Assembly in EnergyMarket uses these offsets as literals; the constants name them.
library PartyTable {
    uint256 internal constant RECORD_BYTES = 192;
    uint256 internal constant ACCOUNT = 0;
    uint256 internal constant PARTICIPANT_INDEX = 32;
    uint256 internal constant LOCK = 64;
    uint256 internal constant RELEASED = 64;
    uint256 internal constant SOLD = 96;
    uint256 internal constant CREDITED = 96;
    uint256 internal constant SOLD_FROM_HERE = 128;
    uint256 internal constant EXPORTED_PLUS_ONE = 128;
    uint256 internal constant SOLD_TOTAL = 160;

    /// @notice Allocates a zeroed table of `count` records.
    /// @return table Memory address of record 0.
    function create(uint256 count) internal pure returns (uint256 table) {
        assembly ("memory-safe") {
            table := mload(0x40)
            let size := mul(count, RECORD_BYTES)
            // Memory past the free pointer may hold scratch data: zero it (calldatacopy from
            // past the end of calldata writes zeros).
            calldatacopy(table, calldatasize(), size)
            mstore(0x40, add(table, size))
        }
    }

    /// @notice Memory address of a record's field.
    function at(uint256 table, uint256 position, uint256 field) internal pure returns (uint256) {
        unchecked {
            return table + position * RECORD_BYTES + field;
        }
    }

    /// @notice Reads one word of a record.
    function get(uint256 table, uint256 position, uint256 field) internal pure returns (uint256 value) {
        uint256 p = at(table, position, field);
        assembly ("memory-safe") {
            value := mload(p)
        }
    }

    /// @notice Writes one word of a record.
    function set(uint256 table, uint256 position, uint256 field, uint256 value) internal pure {
        uint256 p = at(table, position, field);
        assembly ("memory-safe") {
            mstore(p, value)
        }
    }
}
