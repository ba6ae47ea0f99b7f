// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title FlakyAccount (test only)
/// @notice A hostile ERC-1271 contract account: it accepts its owner's signatures (64-byte
///         EIP-2098 or 65-byte) until its owner flips it. Mode 0 accepts; mode 1 refuses
///         every signature; mode 2 accepts, but only after burning about 150,000 gas, more
///         than the market's ERC1271_GAS, so that an uncapped call accepts and the market's
///         capped one runs out of gas.
contract FlakyAccount is IERC1271 {
    address public immutable owner;
    uint8 public mode;

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice Sets how isValidSignature answers from now on (owner only).
    function setMode(uint8 mode_) external {
        require(msg.sender == owner, "owner only");
        mode = mode_;
    }

    /// @notice ERC-1271: the magic value when `owner` signed `hash` and the mode accepts.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        uint8 m = mode;
        if (m == 1) return 0xffffffff;
        if (m == 2) {
            bytes32 x = hash;
            for (uint256 i; i < 1_500; ++i) {
                x = keccak256(abi.encode(x, i));
            }
            if (x == bytes32(0)) return 0xffffffff;
        }
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        if (err == ECDSA.RecoverError.NoError && signer == owner) return IERC1271.isValidSignature.selector;
        if (signature.length == 64) {
            (signer, err,) = ECDSA.tryRecover(hash, bytes32(signature[0:32]), bytes32(signature[32:64]));
            if (err == ECDSA.RecoverError.NoError && signer == owner) return IERC1271.isValidSignature.selector;
        }
        return 0xffffffff;
    }

    /// @notice Approves `market` for `amount` of `token` and deposits it there (owner only).
    function deposit(IERC20 token, address market, uint256 amount) external {
        require(msg.sender == owner, "owner only");
        token.approve(market, amount);
        (bool ok,) = market.call(abi.encodeWithSignature("deposit(uint256)", amount));
        require(ok, "deposit failed");
    }
}
