// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title SmartAccount (test only)
/// @notice A minimal ERC-1271 contract account: a signature is valid when its owner key made
///         it (65-byte r, s, v or 64-byte EIP-2098). Its owner moves its tokens into escrow.
contract SmartAccount is IERC1271 {
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice ERC-1271: the magic value when `owner` signed `hash`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        if (err == ECDSA.RecoverError.NoError && signer == owner) return IERC1271.isValidSignature.selector;
        if (signature.length == 64) {
            (signer, err,) = ECDSA.tryRecover(hash, bytes32(signature[0:32]), bytes32(signature[32:64]));
            if (err == ECDSA.RecoverError.NoError && signer == owner) return IERC1271.isValidSignature.selector;
        }
        return 0xffffffff;
    }

    /// @notice Approves `market` for `amount` of `token` and deposits it there.
    function deposit(IERC20 token, address market, uint256 amount) external {
        require(msg.sender == owner, "owner only");
        token.approve(market, amount);
        (bool ok,) = market.call(abi.encodeWithSignature("deposit(uint256)", amount));
        require(ok, "deposit failed");
    }
}
