// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken (test only)
/// @notice An ERC-20 that, once armed, calls back into a target during every transfer: the
///         attack a malicious settlement token would try against the market's escrow.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public callbackData;
    bool public armed;

    /// @notice Deploys the token with no supply.
    constructor() ERC20("Reentrant Token", "REENT") {}

    /// @notice Mints `amount` to `to` (anyone may mint: test token).
    /// @param to Receiver.
    /// @param amount Amount in base units.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms the callback: each later transfer calls `target` with `data` first.
    /// @param newTarget Contract to call back.
    /// @param data Calldata of the callback.
    function arm(address newTarget, bytes calldata data) external {
        target = newTarget;
        callbackData = data;
        armed = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (armed) {
            armed = false;
            (bool ok, bytes memory ret) = target.call(callbackData);
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(ret, 0x20), mload(ret))
                }
            }
        }
        super._update(from, to, value);
    }
}
