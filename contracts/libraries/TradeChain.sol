// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TradeChain: the hash commitment that lets settlement replay trades as calldata
/// @notice A committed interval stores one 32-byte head instead of its trades (a stored trade
///         costs about 22k gas, a replayed one about 1k). The chain runs backwards:
///           h_n = 0,  h_k = keccak256(abi.encode(buyer, seller, sellerIndex, quantityWh,
///                                                 pricePerWh, sellerSoldWh, sellerSoldBeforeWh, h_{k+1}))
///         so the stored head h_0 commits to every trade, and after settling trades [c, c+m) the
///         contract keeps h_{c+m}: each chunk is checked before any balance moves.
library TradeChain {
    /// @notice The fields of one link, in hashing order. A caller reuses one instance for a
    ///         whole chain so that nothing is allocated per trade.
    struct Link {
        address buyer;
        address seller;
        uint256 sellerIndex;
        uint256 quantityWh;
        uint256 pricePerWh;
        uint256 sellerSoldWh;
        uint256 sellerSoldBeforeWh;
        bytes32 next;
    }

    /// @notice h_k = keccak256(abi.encode(link fields)); `l.next` holds h_{k+1}.
    /// @dev A memory struct of static fields is eight consecutive words, exactly abi.encode's layout.
    /// @return h The link h_k.
    function hash(Link memory l) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            h := keccak256(l, 0x100)
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
}
