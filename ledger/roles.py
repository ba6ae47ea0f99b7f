"""The EnergyMarket's AccessControl roles: ``keccak256`` of each name; the admin role is zero."""

from __future__ import annotations

from eth_utils.crypto import keccak

OPERATOR_ROLE = keccak(text="OPERATOR_ROLE")
"""Commits cleared intervals."""

REGISTRAR_ROLE = keccak(text="REGISTRAR_ROLE")
"""Registers participants and their meter keys."""

GUARDIAN_ROLE = keccak(text="GUARDIAN_ROLE")
"""Can pause the market."""

DEFAULT_ADMIN_ROLE = bytes(32)
"""Grants and revokes the other roles, sets terms, lifts a pause."""

__all__ = ["DEFAULT_ADMIN_ROLE", "GUARDIAN_ROLE", "OPERATOR_ROLE", "REGISTRAR_ROLE"]
