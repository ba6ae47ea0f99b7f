// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title SettlementMath: the delivery, payment and penalty rules of one trade (DESIGN section 5)
/// @notice Pure integer rules, mirrored line by line by settlement/model.py. Callers pass
///         committed values (quantity and sold totals below 2^64, delivery at most the quantity,
///         prices below 2^128), so the arithmetic is unchecked; each function states its bound.
library SettlementMath {
    uint256 internal constant BPS = 10_000;

    /// @notice Energy allocated to one trade of a seller, in Wh.
    /// @dev The seller delivers D = min(sold, exported). D is split over the seller's trades
    ///      pro-rata to quantity with floor division on the *cumulative* quantity in commit order:
    ///        delivered_k = floor((B_k + q_k) * D / S) - floor(B_k * D / S)
    ///      where S is the seller's sold total and B_k the quantity of its earlier trades. Each
    ///      trade gets floor(q_k * D / S) or one Wh more; the floor remainders carry forward in
    ///      commit order and each whole Wh goes to the trade at which it completes. The shares
    ///      add up to exactly D, and each needs only (q_k, B_k, S, D), so any chunking settles alike.
    /// @param quantityWh The trade's quantity q_k.
    /// @param soldBeforeWh B_k, the seller's quantity in earlier trades of the interval.
    /// @param soldWh S, the seller's total sold in the interval (> 0).
    /// @param exportedWh The seller's metered export (0 without a reading).
    /// @return The delivered Wh of the trade.
    function deliveredWh(uint256 quantityWh, uint256 soldBeforeWh, uint256 soldWh, uint256 exportedWh)
        internal
        pure
        returns (uint256)
    {
        if (exportedWh >= soldWh) return quantityWh;
        // B + q <= S < 2^64 and D < S here, so no product reaches 2^128 and the first floor is
        // at least the second; S > 0 because the seller sold q > 0.
        unchecked {
            return ((soldBeforeWh + quantityWh) * exportedWh) / soldWh - (soldBeforeWh * exportedWh) / soldWh;
        }
    }

    /// @notice Shortfall tolerated without penalty: floor(toleranceBps * quantity / 10,000) Wh.
    /// @param quantityWh Trade quantity, Wh.
    /// @param toleranceBps Tolerance, basis points.
    /// @return Tolerated shortfall, Wh (rounded down, in the buyer's favour).
    function toleranceWh(uint256 quantityWh, uint256 toleranceBps) internal pure returns (uint256) {
        unchecked {
            return (quantityWh * toleranceBps) / BPS; // q < 2^64, toleranceBps <= 10,000
        }
    }

    /// @notice Penalty a seller pays the buyer from its bond, in base units.
    /// @dev Literal reading of DESIGN: a shortfall *beyond* the tolerance costs the *whole*
    ///      shortfall * penaltyPrice; a shortfall at or below the tolerance costs nothing.
    ///      Never exceeds the bond quantity * penaltyPrice.
    /// @param quantityWh Trade quantity, Wh.
    /// @param delivered Delivered energy, Wh (<= quantityWh).
    /// @param toleranceBps Snapshotted tolerance, basis points.
    /// @param penaltyPricePerWh Snapshotted penalty rate, base units per Wh.
    /// @return Penalty in base units.
    function penalty(uint256 quantityWh, uint256 delivered, uint256 toleranceBps, uint256 penaltyPricePerWh)
        internal
        pure
        returns (uint256)
    {
        unchecked {
            // delivered <= q < 2^64 and the penalty price < 2^128: no wrap.
            uint256 shortfall = quantityWh - delivered;
            if (shortfall > toleranceWh(quantityWh, toleranceBps)) return shortfall * penaltyPricePerWh;
            return 0;
        }
    }
}
