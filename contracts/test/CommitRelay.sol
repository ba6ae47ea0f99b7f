// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title CommitRelay (test only)
/// @notice Forwards calldata to a target, as a multisig or a relayer does: the market sees the
///         relay as the caller, and the commit's calldata is inside this contract's own.
contract CommitRelay {
    /// @notice Calls `target` with `data`; bubbles a revert up unchanged.
    function forward(address target, bytes calldata data) external {
        (bool ok, bytes memory answer) = target.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(answer, 32), mload(answer))
            }
        }
    }
}
