// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TradeChain: the hash commitment that lets settlement replay trades as calldata
/// @notice A committed interval stores one 32-byte head instead of its trades (a stored trade
///         costs about 22k gas, a replayed one about 1k). The chain runs backwards:
///           h_n = 0,  h_k = keccak256(abi.encode(buyer, seller, sellerIndex, quantityWh,
///                                                 pricePerWh, sellerSoldWh, sellerSoldBeforeWh, h_{k+1}))
///         so the stored head h_0 commits to every trade, and after settling trades [c, c+m) the
///         contract keeps h_{c+m}: each chunk is checked before any balance moves. A link is
///         LINK_BYTES of memory holding those eight words in that order (the abi.encode layout);
///         callers fill words 0..6 and `seal` writes h_{k+1} and hashes.
library TradeChain {
    uint256 internal constant LINK_BYTES = 256;

    /// @notice Allocates the memory of one link, reused for a whole chain.
    /// @return link Memory address of the link's first word.
    function newLink() internal pure returns (uint256 link) {
        assembly ("memory-safe") {
            link := mload(0x40)
            mstore(0x40, add(link, LINK_BYTES))
        }
    }

    /// @notice h_k from a link whose words 0..6 are filled and h_{k+1} = `next`.
    /// @return h The link h_k.
    function seal(uint256 link, bytes32 next) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore(add(link, 224), next)
            h := keccak256(link, LINK_BYTES)
        }
    }

    /// @notice Folds one trade's order ids into the interval's orders digest (commit order).
    /// @dev digest_0 = 0, digest_{k+1} = keccak256(abi.encode(digest_k, buyOrderId_k, sellOrderId_k)).
    /// @return h The next digest.
    function foldOrders(bytes32 digest, bytes32 buyOrderId, bytes32 sellOrderId) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, digest)
            mstore(add(p, 0x20), buyOrderId)
            mstore(add(p, 0x40), sellOrderId)
            h := keccak256(p, 0x60)
        }
    }

    /// @notice Folds one open order into a chunk's open-orders digest (ascending by order id).
    /// @dev open_0 = 0, open_{k+1} = keccak256(abi.encode(open_k, orderId_k, filledWh_k)); zero
    ///      exactly when no order is open.
    /// @return h The next digest.
    function foldOpen(bytes32 open, bytes32 orderId, uint256 filledWh) internal pure returns (bytes32 h) {
        return foldOrders(open, orderId, bytes32(filledWh));
    }
}
