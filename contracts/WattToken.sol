// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title WattToken
/// @notice The settlement token of a wattledger testnet: an ERC-20 with 18 decimals whose
///         supply is created by holders of MINTER_ROLE (a faucet on test networks).
/// @dev The market works with any ERC-20; this one exists so a local chain has a token.
contract WattToken is ERC20, AccessControl {
    /// @notice Role allowed to mint new tokens.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @notice Deploys the token and gives `admin` the admin and minter roles.
    /// @param admin Account that receives DEFAULT_ADMIN_ROLE and MINTER_ROLE.
    constructor(address admin) ERC20("Watt Settlement Token", "WATT") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Creates `amount` base units for `to`.
    /// @dev Reverts with AccessControlUnauthorizedAccount if the caller lacks MINTER_ROLE.
    /// @param to Receiver of the new tokens.
    /// @param amount Amount in base units (18 decimals).
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
